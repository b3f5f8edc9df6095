"""An HTML report of evaluation runs: summary table and plots, one self-contained file.

``render_report(run_dirs, out_path)`` reads each folder's summary.json and trajectories.jsonl
(as ``plyground eval --out`` writes them) and draws: success rate by env, the reward
distribution by env, turns per episode, and success against search budget where a folder holds
a ``budget_curve.json`` (``{"algorithm": [[llm_calls, success_rate], ...]}``). Plots are PNGs
embedded as data URIs, so the report opens anywhere without its folder.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plyground.types import Trajectory, read_trajectories


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _load(run_dirs: Sequence[str | Path]) -> list[tuple[dict[str, Any], list[Trajectory], dict[str, Any]]]:
    runs = []
    for d in run_dirs:
        d = Path(d)
        summary_path, traj_path = d / "summary.json", d / "trajectories.jsonl"
        if not summary_path.exists():
            raise FileNotFoundError(f"{d} has no summary.json (is it a `plyground eval --out` folder?)")
        summary = json.loads(summary_path.read_text())
        trajs = read_trajectories(str(traj_path)) if traj_path.exists() else []
        curve_path = d / "budget_curve.json"
        curves = json.loads(curve_path.read_text()) if curve_path.exists() else {}
        runs.append((summary, trajs, curves))
    return runs


def render_report(run_dirs: Sequence[str | Path], out_path: str | Path, title: str = "plyground evaluation") -> Path:
    """Write the report for ``run_dirs`` to ``out_path`` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _load(run_dirs)
    labels = [f"{s['env_id']}\n{s.get('model', '')}" for s, _, _ in runs]
    figures: list[tuple[str, str]] = []

    fig, ax = plt.subplots(figsize=(max(4, 1.4 * len(runs)), 3))
    ax.bar(range(len(runs)), [s["success_rate"] for s, _, _ in runs], color="#4c72b0")
    ax.set_xticks(range(len(runs)), labels, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("success rate")
    figures.append(("Success by env", _png(fig)))

    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for (_, trajs, _), label in zip(runs, labels, strict=True):
        if trajs:
            axes[0].hist([t.total_reward for t in trajs], bins=20, alpha=0.6, label=label.replace("\n", " "))
            axes[1].hist([len(t.turns) for t in trajs], bins=20, alpha=0.6, label=label.replace("\n", " "))
    axes[0].set_xlabel("episode reward")
    axes[1].set_xlabel("turns per episode")
    for ax in axes:
        ax.set_ylabel("episodes")
    if any(trajs for _, trajs, _ in runs):
        axes[0].legend(fontsize=7)
    figures.append(("Reward and episode length", _png(fig)))

    curves = [(s["env_id"], c) for s, _, c in runs if c]
    if curves:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for env_id, by_algo in curves:
            for algo, points in by_algo.items():
                xs, ys = zip(*points, strict=True) if points else ((), ())
                ax.plot(xs, ys, marker="o", label=f"{env_id} {algo}")
        ax.set_xlabel("LLM calls (search budget)")
        ax.set_ylabel("success rate")
        ax.legend(fontsize=7)
        figures.append(("Success against search budget", _png(fig)))

    head = ["env", "model", "backend", "episodes x K", "success", "mean reward", "mean turns", "pass@k", "tokens", "errors", "wall s"]
    rows = []
    for s, _, _ in runs:
        passk = ", ".join(f"{k} {v:.2f}" for k, v in s.get("pass_at_k", {}).items())
        cells = [s["env_id"], s.get("model", ""), s.get("backend", ""), f"{s['episodes']} x {s['samples']}",
                 f"{s['success_rate']:.1%}", f"{s['mean_reward']:.3f}", f"{s['mean_turns']:.2f}", passk,
                 f"{s.get('prompt_tokens', 0) + s.get('completion_tokens', 0):,}", str(s.get("errors", 0)),
                 f"{s.get('wall_s', 0):.1f}"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    errors = sorted({e for s, _, _ in runs for e in s.get("error_examples", [])})
    body = [
        f"<h1>{html.escape(title)}</h1>",
        "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>",
        *(f'<h2>{html.escape(name)}</h2><img alt="{html.escape(name)}" src="{uri}">' for name, uri in figures),
    ]
    if errors:
        body.append("<h2>Errors</h2><ul>" + "".join(f"<li><code>{html.escape(e)}</code></li>" for e in errors) + "</ul>")
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>",
        encoding="utf-8",
    )
    return out
