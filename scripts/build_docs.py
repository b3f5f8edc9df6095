"""Build the documentation site: generate the pages that come from code, then run mkdocs.

    .venv/bin/python scripts/build_docs.py            # writes site/ (what `make docs` runs)
    .venv/bin/python scripts/build_docs.py --no-build # only the generated pages

Generated pages (written under docs/generated/, git-ignored):
- envs.md: the environment catalogue, from the registry: id, description, kind, horizon, reward
  range, real components, the instructions and the first observation of seed 0.
- benchmarks.md: every table under benchmarks/results/*.md, as measured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")  # a banner, not a warning about our docs
ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "docs" / "generated"
# Envs whose first observation needs a browser launch: described, not started, to keep builds fast.
NOT_STARTED = {"WebShop-Browser-v0"}


def _fence(text: str, limit: int = 1200) -> str:
    text = text if len(text) <= limit else text[:limit] + "\n[...]"
    return "```text\n" + text.replace("```", "'''") + "\n```"


def env_catalogue() -> str:
    import plyground

    lines = [
        "# Environment catalogue",
        "",
        "Generated from the registry by `scripts/build_docs.py` (every registered env, its spec, its",
        "instructions and the first observation of `reset(seed=0)`).",
        "",
        "| id | kind | horizon | reward range | needs |",
        "|---|---|---:|---|---|",
    ]
    specs = plyground.list_envs()
    for s in specs:
        needs = ", ".join(s.components) or "-"
        lines.append(f"| [{s.id}](#{s.id.lower()}) | {s.kind} | {s.max_turns or '-'} | "
                     f"[{s.reward_range[0]:g}, {s.reward_range[1]:g}] | {needs} |")
    for s in specs:
        lines += ["", f"## {s.id}", "", s.description or "(no description)", ""]
        lines.append(f"`plyground.make(\"{s.id}\")` or `gymnasium.make(\"plyground/{s.id}\")`; "
                     f"kind {s.kind}, horizon {s.max_turns}, reward range "
                     f"[{s.reward_range[0]:g}, {s.reward_range[1]:g}]"
                     + (f", needs {', '.join(s.components)}." if s.components else "."))
        if s.id in NOT_STARTED:
            lines += ["", "Same pages and text as its text-mode sibling, observed through headless Chromium."]
            continue
        try:
            env = plyground.make(s.id)
            try:
                obs, info = env.reset(seed=0)
                lines += ["", "**Instructions**", "", _fence(env.instructions), "", "**First observation (seed 0)**",
                          "", _fence(obs)]
                actions = info.get("admissible_actions")
                if actions:
                    shown = ", ".join(f"`{a}`" for a in list(actions)[:8])
                    lines += ["", f"**Admissible actions** (first of {len(actions)}): {shown}"]
            finally:
                env.close()
        except Exception as exc:  # a missing component: say so instead of failing the build
            lines += ["", f"*Not started here: {type(exc).__name__}: {exc}*"]
    return "\n".join(lines) + "\n"


def benchmark_page() -> str:
    parts = ["# Benchmarks", "", "Tables as measured, with the command that reproduces each (from `benchmarks/results/`).", ""]
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.md")):
        body = path.read_text().strip()
        # Demote headings so the page keeps one title.
        body = "\n".join("#" + ln if ln.startswith("#") else ln for ln in body.splitlines())
        parts += [f"## {path.stem.replace('_', ' ')}", "", body, ""]
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site-dir", default=str(ROOT / "site"))
    parser.add_argument("--no-build", action="store_true", help="write the generated pages only")
    args = parser.parse_args()
    GENERATED.mkdir(parents=True, exist_ok=True)
    (GENERATED / "envs.md").write_text(env_catalogue(), encoding="utf-8")
    (GENERATED / "benchmarks.md").write_text(benchmark_page(), encoding="utf-8")
    if args.no_build:
        return 0
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", args.site_dir, "-f", str(ROOT / "mkdocs.yml")]
    return subprocess.call(cmd, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
