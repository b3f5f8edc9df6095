"""A scripted stand-in for the Lean REPL, for the tests of ``Prove-v0`` with ``backend="lean"``.

It speaks the REPL's framing (requests up to a blank line, answers pretty-printed JSON and a blank
line) and proves one kind of goal: ``intro x`` opens ``x : Nat ⊢ x + 0 = x``; ``simp``, ``rfl``
or ``omega`` close it; ``sleep`` hangs (time limits); anything else is a Lean error. A whole proof
sent as a command is accepted when its last tactic closes the goal; ``#print axioms`` answers
``propext`` only. Standard library only.
"""

from __future__ import annotations

import json
import sys
import time

CLOSERS = ("simp", "rfl", "omega")


def read_request() -> str | None:
    lines: list[str] = []
    while True:
        line = sys.stdin.readline()
        if not line:
            return "".join(lines) if lines else None
        if line.strip():
            lines.append(line.rstrip("\r\n"))
        elif lines:
            return "".join(lines)


def answer(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=1, ensure_ascii=False) + "\n\n")
    sys.stdout.flush()


def main() -> int:
    envs = 0
    states: dict[int, list[str]] = {}
    while True:
        text = read_request()
        if text is None:
            return 0
        req = json.loads(text)
        if "tactic" in req:
            ps, tactic = req["proofState"], req["tactic"].strip()
            if ps not in states:
                answer({"message": "Unknown proof state."})
            elif tactic == "sleep":
                time.sleep(3600)
            elif tactic.startswith("intro") and states[ps] and "∀" in states[ps][0]:
                states[len(states)] = ["x : Nat\n⊢ x + 0 = x"]
                answer({"proofState": len(states) - 1, "goals": states[len(states) - 1], "proofStatus": "Incomplete: open goals remain"})
            elif tactic in CLOSERS and states[ps] and "∀" not in states[ps][0]:
                states[len(states)] = []
                answer({"proofState": len(states) - 1, "goals": [], "proofStatus": "Completed"})
            else:
                answer({"messages": [{"severity": "error", "pos": {"line": 1, "column": 0}, "data": f"tactic '{tactic}' failed"}],
                        "proofState": len(states), "goals": states[ps]})
            continue
        cmd = req.get("cmd", "")
        envs += 1
        if cmd.startswith("#print axioms"):
            name = cmd.split()[-1]
            answer({"env": envs, "messages": [{"severity": "info", "data": f"'{name}' depends on axioms: [propext]"}]})
        elif cmd.startswith("import"):
            answer({"env": envs})
        elif cmd.endswith("by sorry"):
            states[len(states)] = ["⊢ ∀ (x : Nat), x + 0 = x"]
            answer({"env": envs, "sorries": [{"proofState": len(states) - 1, "goal": states[len(states) - 1][0]}],
                    "messages": [{"severity": "warning", "data": "declaration uses 'sorry'"}]})
        elif cmd.rstrip().split()[-1] in CLOSERS:
            answer({"env": envs})
        else:
            answer({"env": envs, "messages": [{"severity": "error", "data": "unsolved goals"}]})


if __name__ == "__main__":
    sys.exit(main())
