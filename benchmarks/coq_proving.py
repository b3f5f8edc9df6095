"""Coq proving: tactic steps per second, proof-check latency, and the tactic portfolio's solve
rate on the project's theorem set, in one run.

    .venv/bin/python benchmarks/coq_proving.py [--check-samples 20] [--no-verify] [--limit N]

1. Tactic steps (``CoqSession``, one ``coqtop``): every sentence of every reference proof stepped
   in order (accepted steps), a failing tactic (``apply no_such_lemma``: an error answer), and a
   ``goto`` back to the root and forward again (``BackTo`` + replay), per call in ms and steps/s.
2. Proof-check latency: ``verify_proof`` (one ``coqc`` run per proof, with ``Print Assumptions``)
   on a sample of reference proofs, p50/p95; and ``check_theorem_file`` (one ``coqc`` for a whole
   topic, no ``Print Assumptions``) amortised per theorem.
3. The scripted portfolio (``plyground.proving.portfolio``) with best-first search through
   ``Prove-v0`` on the whole set: solved, by difficulty and topic, wall time, env steps; every
   proof found is re-checked with ``verify_proof``.

Writes benchmarks/results/coq_proving.json and .md. Timings depend on the machine (this one
has 2 cores shared with other work).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from plyground.envs import make
from plyground.proving.coq import (
    COQ_THEOREMS,
    TOPICS,
    CoqSession,
    check_theorem_file,
    verify_proof,
)
from plyground.proving.portfolio import PORTFOLIO, portfolio_config, prove_with_portfolio


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def sentences(proof: str) -> list[str]:
    return [s if s.endswith(".") else s + "." for s in proof.split(". ")]


def bench_steps() -> dict[str, float]:
    ok_ms: list[float] = []
    err_ms: list[float] = []
    goto_ms: list[float] = []
    with CoqSession(timeout_s=10.0) as session:
        start = time.perf_counter()
        for task in COQ_THEOREMS:
            session.begin(task.prompt)
            r = session.step("apply no_such_lemma")  # reaches Coq, which answers an error
            assert not r.ok and "no_such_lemma" in (r.error or ""), r.error
            err_ms.append(r.elapsed_s * 1000)
            tactics = sentences(task.answer or "")
            for tactic in tactics:
                r = session.step(tactic)
                assert r.ok, (task.id, tactic, r.error)
                ok_ms.append(r.elapsed_s * 1000)
            if len(tactics) > 2:
                t0 = time.perf_counter()
                session.goto([])
                session.goto(session_tactics(tactics))
                goto_ms.append((time.perf_counter() - t0) * 1000)
        total_s = time.perf_counter() - start
    return {
        "theorems": len(COQ_THEOREMS),
        "steps": len(ok_ms),
        "step_ms_mean": statistics.fmean(ok_ms),
        "step_ms_p50": pct(ok_ms, 0.5),
        "step_ms_p95": pct(ok_ms, 0.95),
        "steps_per_s": len(ok_ms) / (sum(ok_ms) / 1000),
        "error_step_ms_p50": pct(err_ms, 0.5),
        "goto_root_and_back_ms_p50": pct(goto_ms, 0.5),
        "wall_s": total_s,
    }


def session_tactics(tactics: list[str]) -> list[str]:
    return [" ".join(t.split()) for t in tactics]


def bench_checks(samples: int) -> dict[str, float]:
    sample = COQ_THEOREMS[:: max(1, len(COQ_THEOREMS) // samples)][:samples]
    ms = []
    for task in sample:
        v = verify_proof(task.prompt, task.answer or "")
        assert v.correct, (task.id, v)
        ms.append(v.elapsed_s * 1000)
    batch = {}
    for topic in TOPICS:
        tasks = [t for t in COQ_THEOREMS if t.metadata["topic"] == topic]
        t0 = time.perf_counter()
        assert check_theorem_file(tasks, check_assumptions=False) == {}
        batch[topic] = (time.perf_counter() - t0, len(tasks))
    batch_s = sum(s for s, _ in batch.values())
    return {
        "verify_samples": len(ms),
        "verify_ms_p50": pct(ms, 0.5),
        "verify_ms_p95": pct(ms, 0.95),
        "verify_ms_mean": statistics.fmean(ms),
        "batch_files": len(batch),
        "batch_theorems": sum(n for _, n in batch.values()),
        "batch_s": batch_s,
        "batch_ms_per_theorem": 1000 * batch_s / sum(n for _, n in batch.values()),
    }


def bench_portfolio(limit: int | None, verify: bool) -> dict[str, object]:
    tasks = COQ_THEOREMS[:limit] if limit else COQ_THEOREMS
    env = make("Prove-v0", timeout_s=5.0)
    config = portfolio_config()
    solved: list[dict[str, object]] = []
    failed: list[str] = []
    steps = 0
    start = time.perf_counter()
    try:
        for task in tasks:
            r = prove_with_portfolio(env, task, config=config, verify=False)
            steps += int(r.stats.get("env_steps", 0))
            if r.proof is None:
                failed.append(task.id)
            else:
                solved.append({"id": task.id, "difficulty": task.metadata["difficulty"], "topic": task.metadata["topic"],
                               "proof": r.proof, "search_s": round(r.search_s, 3)})
    finally:
        env.close()
    search_s = time.perf_counter() - start
    verify_s = 0.0
    rejected: list[str] = []
    if verify:
        t0 = time.perf_counter()
        by_id = {t.id: t for t in tasks}
        for row in solved:
            v = verify_proof(by_id[str(row["id"])].prompt, str(row["proof"]))
            row["verified"] = v.correct
            if not v.correct:
                rejected.append(str(row["id"]))
        verify_s = time.perf_counter() - t0
    all_diff = Counter(t.metadata["difficulty"] for t in tasks)
    all_topic = Counter(t.metadata["topic"] for t in tasks)
    got_diff = Counter(r["difficulty"] for r in solved)
    got_topic = Counter(r["topic"] for r in solved)
    return {
        "theorems": len(tasks),
        "solved": len(solved),
        "verified": len(solved) - len(rejected) if verify else None,
        "rejected_by_coqc": rejected,
        "search_wall_s": search_s,
        "verify_wall_s": verify_s,
        "env_steps": steps,
        "env_steps_per_s": steps / search_s if search_s else 0.0,
        "by_difficulty": {str(d): [got_diff.get(d, 0), all_diff[d]] for d in sorted(all_diff)},
        "by_topic": {k: [got_topic.get(k, 0), all_topic[k]] for k in TOPICS if k in all_topic},
        "portfolio": list(PORTFOLIO),
        "config": {"width": config.width, "max_nodes": config.max_nodes, "time_limit_s": config.time_limit_s},
        "failed": failed,
        "proofs": solved,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check-samples", type=int, default=20)
    parser.add_argument("--limit", type=int, default=None, help="portfolio on the first N theorems only")
    parser.add_argument("--no-verify", action="store_true", help="skip re-checking the portfolio's proofs with coqc")
    parser.add_argument("--out", default="benchmarks/results/coq_proving.json")
    args = parser.parse_args()
    console = Console()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    steps = bench_steps()
    table = Table(title=f"Coq tactic steps (coqtop), {steps['steps']} accepted steps over {steps['theorems']} reference proofs")
    for col in ("step ms p50", "step ms p95", "steps/s", "error step ms p50", "goto root+back ms p50"):
        table.add_column(col, justify="right")
    table.add_row(f"{steps['step_ms_p50']:.2f}", f"{steps['step_ms_p95']:.2f}", f"{steps['steps_per_s']:.0f}",
                  f"{steps['error_step_ms_p50']:.2f}", f"{steps['goto_root_and_back_ms_p50']:.1f}")
    console.print(table)

    checks = bench_checks(args.check_samples)
    table = Table(title="Proof-check latency (coqc)")
    for col in ("verify_proof p50 ms", "p95 ms", "samples", "batch file ms/theorem", "batch theorems"):
        table.add_column(col, justify="right")
    table.add_row(f"{checks['verify_ms_p50']:.0f}", f"{checks['verify_ms_p95']:.0f}", str(checks["verify_samples"]),
                  f"{checks['batch_ms_per_theorem']:.1f}", str(checks["batch_theorems"]))
    console.print(table)

    port = bench_portfolio(args.limit, not args.no_verify)
    table = Table(title=f"Tactic portfolio + best-first through Prove-v0 ({len(PORTFOLIO)} tactics, max_nodes {port['config']['max_nodes']})")  # type: ignore[index]
    for col in ("theorems", "solved", "verified by coqc", "search wall s", "verify wall s", "env steps/s"):
        table.add_column(col, justify="right")
    table.add_row(str(port["theorems"]), str(port["solved"]), str(port["verified"]), f"{port['search_wall_s']:.1f}",
                  f"{port['verify_wall_s']:.1f}", f"{port['env_steps_per_s']:.1f}")
    console.print(table)
    console.print("by difficulty (solved/total): " + ", ".join(f"{d}: {a}/{b}" for d, (a, b) in port["by_difficulty"].items()))  # type: ignore[attr-defined]
    console.print("by topic: " + ", ".join(f"{k}: {a}/{b}" for k, (a, b) in port["by_topic"].items()))  # type: ignore[attr-defined]

    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "note": "machine shared with other work"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"when": when, "machine": machine, "steps": steps, "checks": checks, "portfolio": port}, indent=2) + "\n")
    md = [
        f"Coq proving ({when}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, Coq 8.16, machine shared with other work).",
        "",
        "| tactic step p50 ms | p95 ms | steps/s | failing step p50 ms | goto root and back p50 ms |",
        "|---:|---:|---:|---:|---:|",
        f"| {steps['step_ms_p50']:.2f} | {steps['step_ms_p95']:.2f} | {steps['steps_per_s']:.0f} | {steps['error_step_ms_p50']:.2f} | {steps['goto_root_and_back_ms_p50']:.1f} |",
        "",
        f"Steps: every sentence of the {steps['theorems']} reference proofs ({steps['steps']} steps) in one `coqtop` (`CoqSession`).",
        "",
        "| verify_proof p50 ms | p95 ms | samples | one coqc per topic: ms/theorem |",
        "|---:|---:|---:|---:|",
        f"| {checks['verify_ms_p50']:.0f} | {checks['verify_ms_p95']:.0f} | {checks['verify_samples']} | {checks['batch_ms_per_theorem']:.1f} |",
        "",
        f"`verify_proof`: one `coqc` run per proof (loads Arith Lia List Bool, `Qed`, `Print Assumptions`). Batch: `check_theorem_file`, {checks['batch_theorems']} theorems in {checks['batch_files']} files, no `Print Assumptions`.",
        "",
        "| portfolio on the set | solved | verified by coqc | search wall s | verify wall s | env steps | env steps/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| {port['theorems']} theorems | {port['solved']} | {port['verified']} | {port['search_wall_s']:.1f} | {port['verify_wall_s']:.1f} | {port['env_steps']} | {port['env_steps_per_s']:.1f} |",
        "",
        "By difficulty (solved/total): " + ", ".join(f"{d}: {a}/{b}" for d, (a, b) in port["by_difficulty"].items()) + ".",  # type: ignore[attr-defined]
        "By topic: " + ", ".join(f"{k}: {a}/{b}" for k, (a, b) in port["by_topic"].items()) + ".",  # type: ignore[attr-defined]
        "",
        f"Portfolio ({len(PORTFOLIO)} tactics, each proposed at every node, best-first width {port['config']['width']}, max_nodes {port['config']['max_nodes']}, 20 s per theorem): "  # type: ignore[index]
        + ", ".join(f"`{t}`" for t in PORTFOLIO) + ".",
        "",
        "Reproduce with:",
        "",
        "    .venv/bin/python benchmarks/coq_proving.py",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    console.print(f"[dim]wrote {out} and {out.with_suffix('.md')}[/dim]")


if __name__ == "__main__":
    main()
