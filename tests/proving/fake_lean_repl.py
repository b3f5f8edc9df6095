"""A stand-in for the Lean REPL that answers from recorded transcripts.

    python fake_lean_repl.py CASE.in [CASE.in ...]

It reads requests from stdin as the REPL does (lines up to a blank line, joined without their
line breaks), checks each against the next recorded request of the transcripts and writes the
recorded answer, pretty-printed over several lines and followed by a blank line. A request that
differs from the recording is answered ``{"message": "stand-in: unexpected request ..."}``.

Control requests for the tests of time limits and crashes (never in a transcript):
``{"cmd": "__sleep__"}`` hangs, ``{"cmd": "__exit__"}`` exits with code 3, and
``{"cmd": "__alloc__", "mb": N}`` allocates N MiB (fails under a memory limit).
Standard library only: it must start fast.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def blocks(text: str, join_lines: bool) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.strip():
            current.append(line.rstrip("\r\n") if join_lines else line)
        elif current:
            out.append("".join(current))
            current = []
    if current:
        out.append("".join(current))
    return out


def load(paths: list[str]) -> list[tuple[object, object]]:
    pairs: list[tuple[object, object]] = []
    for name in paths:
        p = Path(name)
        expected = p.with_name(p.name[: -len(".in")] + ".expected.out")
        requests = [json.loads(b) for b in blocks(p.read_text(encoding="utf-8"), True)]
        answers = [json.loads(b) for b in blocks(expected.read_text(encoding="utf-8"), False)]
        pairs += list(zip(requests, answers, strict=True))
    return pairs


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
    pairs = load(sys.argv[1:])
    index = 0
    while True:
        text = read_request()
        if text is None:
            return 0
        try:
            request = json.loads(text)
        except json.JSONDecodeError as exc:
            answer({"message": f"Could not parse JSON: {exc}"})
            continue
        cmd = request.get("cmd") if isinstance(request, dict) else None
        if cmd == "__sleep__":
            time.sleep(3600)
        elif cmd == "__exit__":
            return 3
        elif cmd == "__alloc__":
            block = bytearray(int(request.get("mb", 1)) * 1024 * 1024)
            answer({"allocated_mb": len(block) // (1024 * 1024)})
            continue
        if index < len(pairs) and request == pairs[index][0]:
            answer(pairs[index][1])
            index += 1
        else:
            answer({"message": f"stand-in: unexpected request {text[:200]}"})


if __name__ == "__main__":
    sys.exit(main())
