"""The evaluation harness: a backend x an env x N episodes x K samples -> trajectories + summary.

Output folder layout (one folder per env)::

    OUT/run.json            what was asked (env, model, sampling, episodes, samples, seed)
    OUT/trajectories.jsonl  one Trajectory per line, appended as each episode finishes
    OUT/summary.json        EvalSummary over every trajectory in the file

A run that is interrupted (Ctrl-C, a crash, a server that went down) keeps every finished
trajectory; running the same command again plays only the episodes that are missing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from plyground.envs import make, spec
from plyground.evaluation.metrics import EvalSummary, summarize
from plyground.inference.base import Backend
from plyground.rollout.collector import EpisodeSpec, RolloutConfig, collect_sync, episode_specs
from plyground.types import SamplingParams, Trajectory, read_trajectories


@dataclass
class EvalConfig:
    """What to evaluate and how."""

    env_id: str
    """A registered env id, e.g. ``GuessNumber-v0``."""
    episodes: int = 10
    """Distinct episodes (env seeds ``seed .. seed + episodes - 1``)."""
    samples: int = 1
    """Attempts per episode (K), for pass@k."""
    concurrency: int = 8
    """Episodes in flight at once."""
    seed: int = 0
    """First env seed."""
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=64, temperature=0.7))
    """Sampling for every model turn."""
    max_turns: int | None = None
    """Cap on turns per episode (default: the env's horizon)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Constructor arguments for the env."""
    out_dir: str | None = None
    """Where to write run.json, trajectories.jsonl and summary.json (None: keep in memory)."""

    def __post_init__(self) -> None:
        spec(self.env_id)  # fail now, with a "did you mean", on an unknown id
        if self.episodes < 1 or self.samples < 1:
            raise ValueError("episodes and samples must be >= 1")

    def identity(self) -> dict[str, Any]:
        """The fields that must match for a run to resume another."""
        return {
            "env_id": self.env_id,
            "seed": self.seed,
            "env_kwargs": self.env_kwargs,
            "sampling": asdict(self.sampling),
            "max_turns": self.max_turns,
        }


class ResumeMismatchError(ValueError):
    """The output folder holds a run with different settings."""


@runtime_checkable
class EpisodeRunner(Protocol):
    """Something that plays episode specs elsewhere and streams back trajectories, in place of a
    backend: :class:`plyground.scale.RolloutPool` (Ray workers, each with its own backend)."""

    name: str

    def collect(
        self,
        specs: Sequence[EpisodeSpec],
        config: RolloutConfig | None = None,
        on_trajectory: Callable[[Trajectory], None] | None = None,
    ) -> list[Trajectory]: ...


def evaluate(
    config: EvalConfig,
    backend: Backend | EpisodeRunner,
    model_name: str = "",
    console: Console | None = None,
    progress: bool = True,
) -> EvalSummary:
    """Run (or resume) an evaluation; returns its summary and writes files if ``out_dir`` is set.

    ``backend`` is a backend (episodes are played here, by the rollout collector) or an
    :class:`EpisodeRunner` such as a Ray :class:`~plyground.scale.RolloutPool` (played by its
    workers); files, resume and the summary are the same either way."""
    console = console or Console(stderr=True)
    out = Path(config.out_dir) if config.out_dir else None
    done: list[Trajectory] = []
    traj_path = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        traj_path = out / "trajectories.jsonl"
        _check_or_write_run(out / "run.json", config, model_name, backend.name)
        if traj_path.exists():
            done = read_trajectories(str(traj_path))
            _repair_torn_tail(traj_path, done)
    finished = {(t.metadata.get("episode"), t.metadata.get("sample")) for t in done}
    todo = [
        s
        for s in episode_specs(config.episodes, config.samples, config.seed)
        if (s.episode, s.sample) not in finished
    ]
    if done and todo:
        console.print(f"[dim]{config.env_id}: resuming, {len(done)} trajectories already in {traj_path}[/dim]")
    new: list[Trajectory] = []
    start = time.perf_counter()
    rollout = RolloutConfig(
        sampling=config.sampling, concurrency=config.concurrency, max_turns=config.max_turns
    )
    bar = Progress(
        TextColumn("[bold]{task.fields[env]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("success {task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
        transient=False,
    )
    total = config.episodes * config.samples
    with bar:
        task_id = bar.add_task("eval", total=total, completed=len(done), env=config.env_id, rate=_rate(done))
        fh = open(traj_path, "a", encoding="utf-8") if traj_path else None  # noqa: SIM115 - closed below
        try:

            def on_trajectory(traj: Trajectory) -> None:
                traj.metadata.setdefault("model", model_name)
                new.append(traj)
                if fh is not None:
                    fh.write(traj.to_json() + "\n")
                    fh.flush()
                bar.update(task_id, advance=1, rate=_rate(done + new))

            if todo and isinstance(backend, EpisodeRunner):
                backend.collect(todo, rollout, on_trajectory=on_trajectory)
            elif todo:
                collect_sync(
                    lambda: make(config.env_id, **config.env_kwargs),
                    cast(Backend, backend),
                    todo,
                    rollout,
                    env_id=config.env_id,
                    on_trajectory=on_trajectory,
                )
        finally:
            if fh is not None:
                fh.close()
            summary = summarize(
                done + new, config.env_id, model_name, backend.name, time.perf_counter() - start
            )
            if out is not None:
                # Written even when the run is cut short, so the folder always describes itself.
                _write_json(out / "summary.json", summary.to_dict())
    return summary


def _rate(trajs: list[Trajectory]) -> str:
    return f"{sum(t.success for t in trajs) / len(trajs):.0%}" if trajs else "-"


def _check_or_write_run(path: Path, config: EvalConfig, model: str, backend: str) -> None:
    identity = {**config.identity(), "model": model, "backend": backend}
    if path.exists():
        previous = json.loads(path.read_text())
        prev_identity = previous.get("identity", {})
        diffs = sorted(k for k in identity if prev_identity.get(k) != identity[k])
        if diffs:
            raise ResumeMismatchError(
                f"{path.parent} holds a run with different settings ({', '.join(diffs)}); "
                "use another --out folder or delete it"
            )
    _write_json(path, {"identity": identity, "episodes": config.episodes, "samples": config.samples})


def _repair_torn_tail(path: Path, kept: list[Trajectory]) -> None:
    """A killed writer can leave a half line; rewrite the file with the complete records only."""
    with open(path, "rb") as fh:
        lines = [ln for ln in fh.read().split(b"\n") if ln.strip()]
    if len(lines) != len(kept):
        tmp = path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            for traj in kept:
                out.write(traj.to_json() + "\n")
        os.replace(tmp, path)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    os.replace(tmp, path)
