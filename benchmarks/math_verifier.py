"""plyground's MathVerifier side by side with math-verify on the same answer pairs, in one run.

    .venv/bin/python benchmarks/math_verifier.py [PATH] [--limit N] [--out benchmarks/results/math_verifier.json]

PATH is a MATH-500 jsonl (default ``../shared/data/math500/test.jsonl`` relative to the repo).
Each gold answer is paired with rewrites of it, generated deterministically:

- ``identity``: the gold answer itself;
- ``equivalent``: the same value written differently (``\\dfrac``, ``a/b``, a terminating decimal,
  ``n.0``, thousands separators, spacing, ``^\\circ`` dropped, ``\\left( \\right)``), meant equal;
- ``perturbed``: a changed value (``n + 1``, a flipped fraction, a changed digit), meant unequal.

Both verifiers see the same response text ("The answer is $\\boxed{pred}$.") and gold
(``$\\boxed{gold}$``): plyground through ``MathVerifier.verify`` (extraction, exact rationals,
then the symbolic check in its worker pool), math-verify through ``parse`` + ``verify`` in process
(its default extraction configs). Reported: answers checked per second (after a warm-up on the
first 20 pairs), the agreement rate of the two verdicts, and each verifier's accuracy against the
intended label (the labels are by construction; a rewrite can be wrong, so agreement is the
robust number), by kind. Timings depend on the machine; compare the two columns of one run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "math500" / "test.jsonl"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "math_verifier.json"

_INT_RE = re.compile(r"-?\d+")
_FRAC_RE = re.compile(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}")


def equivalent_rewrites(gold: str) -> list[str]:
    """Up to two rewrites of ``gold`` with the same value."""
    out: list[str] = []
    if _INT_RE.fullmatch(gold):
        n = int(gold)
        out.append(f"{n}.0")
        out.append(f"{n:,}" if abs(n) >= 1000 else f"\\frac{{{2 * n}}}{{2}}")
        return out
    frac = _FRAC_RE.fullmatch(gold)
    if frac:
        sign, a, b = frac.group(1), int(frac.group(2)), int(frac.group(3))
        out.append(f"{sign}{a}/{b}")
        value = Fraction(int(sign + str(a)), b)
        decimal = _terminating_decimal(value)
        out.append(decimal if decimal is not None else f"{sign}\\dfrac{{{2 * a}}}{{{2 * b}}}")
        return out
    if "^\\circ" in gold or "^{\\circ}" in gold:
        out.append(gold.replace("^\\circ", "").replace("^{\\circ}", ""))
    if "\\frac" in gold:
        out.append(gold.replace("\\frac", "\\dfrac"))
    # Commas between items (not thousands separators such as "10,\\!080"): respace them.
    if "," in gold and "\\begin" not in gold and not re.search(r"\d,\s*(?:\\!)?\s*\d{3}", gold):
        spaced = re.sub(r",\s*", ", ", gold)
        if "\\left" not in gold:
            spaced = spaced.replace("(", "\\left(").replace(")", "\\right)")
        out.append(spaced)
    if not out:
        out.append(re.sub(r"([+\-=])", r" \1 ", gold).strip())
    return out[:2]


def _terminating_decimal(value: Fraction) -> str | None:
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1:
        return None
    text = f"{float(value):.10f}".rstrip("0").rstrip(".")
    return text if Fraction(text) == value else None


def perturbed(gold: str) -> str:
    """A rewrite of ``gold`` with another value."""
    if _INT_RE.fullmatch(gold):
        return str(int(gold) + 1)
    frac = _FRAC_RE.fullmatch(gold)
    if frac and frac.group(2) != frac.group(3):
        return f"{frac.group(1)}\\frac{{{frac.group(3)}}}{{{frac.group(2)}}}"
    digit = re.search(r"\d", gold)
    if digit:
        d = int(digit.group(0))
        return gold[: digit.start()] + str((d + 1) % 10 if d != 9 else 7) + gold[digit.end() :]
    return gold + "+1"


def make_pairs(golds: list[str]) -> list[dict[str, Any]]:
    pairs = []
    for index, gold in enumerate(golds):
        pairs.append({"gold": gold, "pred": gold, "kind": "identity", "label": True, "row": index})
        for rewrite in equivalent_rewrites(gold):
            if rewrite != gold:
                pairs.append({"gold": gold, "pred": rewrite, "kind": "equivalent", "label": True, "row": index})
        pairs.append({"gold": gold, "pred": perturbed(gold), "kind": "perturbed", "label": False, "row": index})
    return pairs


def run_plyground(pairs: list[dict[str, Any]]) -> tuple[list[bool], float, int]:
    from plyground.types import Task
    from plyground.verifiers.math import MathVerifier

    verifier = MathVerifier(timeout_s=5.0)
    check: Callable[[dict[str, Any]], Any] = lambda p: verifier.verify(  # noqa: E731
        Task("bench", "", p["gold"]), f"The answer is $\\boxed{{{p['pred']}}}$."
    )
    for pair in pairs[:20]:
        check(pair)  # warm-up: worker start, imports
    out, errors = [], 0
    start = time.perf_counter()
    for pair in pairs:
        verdict = check(pair)
        out.append(bool(verdict.correct))
        errors += verdict.error is not None and "timeout" in (verdict.error or "")
    return out, time.perf_counter() - start, errors


def run_math_verify(pairs: list[dict[str, Any]]) -> tuple[list[bool], float, int]:
    from math_verify import parse, verify

    def check(pair: dict[str, Any]) -> bool:
        try:
            gold = parse(f"$\\boxed{{{pair['gold']}}}$")
            pred = parse(f"The answer is $\\boxed{{{pair['pred']}}}$.")
            return bool(verify(gold, pred))
        except Exception:
            return False

    for pair in pairs[:20]:
        check(pair)
    start = time.perf_counter()
    out = [check(pair) for pair in pairs]
    return out, time.perf_counter() - start, 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT_DATA), help="MATH-500 jsonl")
    parser.add_argument("--limit", type=int, default=None, help="use the first N problems")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)

    rows = [json.loads(line) for line in Path(args.path).read_text(encoding="utf-8").splitlines() if line.strip()]
    golds = [str(r["answer"]) for r in rows][: args.limit]
    pairs = make_pairs(golds)

    ours, ours_s, ours_timeouts = run_plyground(pairs)
    theirs, theirs_s, _ = run_math_verify(pairs)

    from rich.console import Console
    from rich.table import Table

    kinds = ["identity", "equivalent", "perturbed", "all"]
    results: dict[str, Any] = {
        "data": str(args.path),
        "problems": len(golds),
        "pairs": len(pairs),
        "plyground": {"seconds": ours_s, "answers_per_s": len(pairs) / ours_s, "timeouts": ours_timeouts},
        "math_verify": {"seconds": theirs_s, "answers_per_s": len(pairs) / theirs_s},
        "by_kind": {},
    }
    table = Table(title=f"MathVerifier vs math-verify: {len(pairs)} pairs from {len(golds)} MATH-500 answers")
    for col in ("kind", "pairs", "agree", "plyground acc", "math-verify acc"):
        table.add_column(col, justify="right")
    for kind in kinds:
        idx = [i for i, p in enumerate(pairs) if kind == "all" or p["kind"] == kind]
        agree = sum(ours[i] == theirs[i] for i in idx) / len(idx)
        acc_ours = sum(ours[i] == pairs[i]["label"] for i in idx) / len(idx)
        acc_theirs = sum(theirs[i] == pairs[i]["label"] for i in idx) / len(idx)
        results["by_kind"][kind] = {
            "pairs": len(idx), "agreement": agree, "plyground_accuracy": acc_ours, "math_verify_accuracy": acc_theirs
        }  # fmt: skip
        table.add_row(kind, str(len(idx)), f"{agree:.1%}", f"{acc_ours:.1%}", f"{acc_theirs:.1%}")
    results["agreement"] = results["by_kind"]["all"]["agreement"]
    results["disagreements"] = [
        {**pairs[i], "plyground": ours[i], "math_verify": theirs[i]} for i in range(len(pairs)) if ours[i] != theirs[i]
    ][:50]
    speed = Table(title="Throughput (answers checked per second, after warm-up)")
    for col in ("verifier", "seconds", "answers/s"):
        speed.add_column(col, justify="right")
    speed.add_row("plyground MathVerifier", f"{ours_s:.2f}", f"{len(pairs) / ours_s:,.0f}")
    speed.add_row("math-verify 0.9 (parse+verify)", f"{theirs_s:.2f}", f"{len(pairs) / theirs_s:,.0f}")
    console = Console()
    console.print(speed)
    console.print(table)
    for d in results["disagreements"][:10]:
        console.print(f"  {d['kind']}: gold {d['gold']!r} pred {d['pred']!r} -> plyground {d['plyground']}, math-verify {d['math_verify']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
