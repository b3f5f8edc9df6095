"""The ``plyground`` command: ``envs``, ``eval``, ``bench``, ``report``, ``serve``, ``serve-envs``,
``search`` and ``train`` (``plyground <command> --help`` for each).

Exit codes: 0 success, 1 unexpected failure, 2 bad usage (unknown env, bad option),
3 backend failure (server down, model missing). Every failure prints one clear line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from plyground.errors import BackendError, PlygroundError, UnknownNameError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_BACKEND = 0, 1, 2, 3


def _parse_kv(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse (numbers, booleans, lists)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _fmt_range(r: tuple[float, float]) -> str:
    return f"[{r[0]:g}, {r[1]:g}]"


# -- plyground envs ------------------------------------------------------------------------------
def cmd_envs(args: argparse.Namespace, out: Console) -> int:
    from plyground.envs import list_envs

    specs = list_envs()
    if args.json:
        out.print_json(
            data=[
                {
                    "id": s.id,
                    "kind": s.kind,
                    "max_turns": s.max_turns,
                    "reward_range": list(s.reward_range),
                    "components": list(s.components),
                    "description": s.description,
                }
                for s in specs
            ]
        )
        return EXIT_OK
    # Descriptions only where they fit: a squeezed column helps nobody (`--json` has them all).
    show_description = out.width >= 110
    table = Table(title="plyground environments", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("id", "kind", "horizon", "reward range"):
        table.add_column(col, no_wrap=True)
    table.add_column("needs", overflow="fold")
    if show_description:
        table.add_column("description", ratio=1)
    for s in specs:
        row = [s.id, s.kind, str(s.max_turns or "-"), _fmt_range(s.reward_range), ", ".join(s.components) or "-"]
        table.add_row(*row, *([s.description] if show_description else []))
    out.print(table)
    return EXIT_OK


# -- plyground eval ------------------------------------------------------------------------------
def make_cli_backend(args: argparse.Namespace) -> Any:
    from plyground.inference import make_backend

    if args.backend == "scripted":  # --model is a "module:function" chat policy
        from plyground.scale.ray_workers import backend_from_spec

        return backend_from_spec(cli_backend_spec(args))
    if args.backend == "hf":
        return make_backend("hf", model=args.model, device=args.device)
    if args.backend == "openai":
        kwargs: dict[str, Any] = {"model": args.model, "base_url": args.base_url, "timeout_s": args.timeout}
        if args.api_key:
            kwargs["api_key"] = args.api_key
        return make_backend("openai", **kwargs)
    return make_backend(args.backend, **_server_backend_kwargs(args))


def _server_backend_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``--model``/``--device`` for the backends that launch a server: ``plyground-server`` runs
    on the device it is given; vLLM and SGLang pick their GPUs themselves (``CUDA_VISIBLE_DEVICES``),
    so a ``--device`` for them is refused rather than ignored."""
    kwargs: dict[str, Any] = {"model": args.model}
    device = getattr(args, "device", None)
    if device:
        if args.backend != "plyground-server":
            raise ValueError(
                f"--device applies to the hf and plyground-server backends; {args.backend} chooses its GPUs "
                "itself (set CUDA_VISIBLE_DEVICES)"
            )
        kwargs["device"] = device
    return kwargs


def cli_backend_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The backend of ``--backend``/``--model``/... as a plain dict that Ray workers rebuild it from."""
    if args.backend == "scripted":
        return {"name": "scripted", "policy": args.model, "tokenizer": "default"}
    if args.backend == "hf":
        return {"name": "hf", "model": args.model, "device": args.device}
    if args.backend == "openai":
        spec: dict[str, Any] = {"name": "openai", "model": args.model, "base_url": args.base_url, "timeout_s": args.timeout}
        if args.api_key:
            spec["api_key"] = args.api_key
        return spec
    return {"name": args.backend, **_server_backend_kwargs(args)}


def _connect_ray(address: str, err: Console) -> None:
    """``--ray local`` starts a Ray on this machine; anything else is an address to join."""
    import os

    from plyground.scale import init_ray

    root = str(Path(__file__).resolve().parents[1])
    env_vars = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    if (Path(root) / "plyground").is_dir():  # a source checkout: workers import this plyground
        env_vars["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    with err.status(f"connecting to Ray ({address})", spinner="dots"):
        init_ray(None if address == "local" else address, runtime_env={"env_vars": env_vars})


def cmd_eval(args: argparse.Namespace, out: Console) -> int:
    from plyground.evaluation import EvalConfig, EvalSummary, evaluate
    from plyground.types import SamplingParams

    sampling = SamplingParams(
        max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed
    )
    env_kwargs = _parse_kv(args.env_arg)
    configs = [
        EvalConfig(
            env_id=env_id,
            episodes=args.episodes,
            samples=args.samples,
            concurrency=args.concurrency,
            seed=args.seed,
            sampling=sampling,
            max_turns=args.max_turns,
            env_kwargs=env_kwargs,
            out_dir=str(Path(args.out) / env_id) if args.out and len(args.env) > 1 else args.out,
        )
        for env_id in args.env
    ]  # built first so that an unknown env fails before the model loads
    err = Console(stderr=True)
    summaries: list[EvalSummary] = []
    if getattr(args, "ray", None):
        from plyground.scale import RolloutPool

        _connect_ray(args.ray, err)
        spec = cli_backend_spec(args)
        for config in configs:
            with err.status(f"starting {args.ray_workers} Ray rollout workers ({spec['name']})", spinner="dots"):
                pool = RolloutPool(config.env_id, spec, num_workers=args.ray_workers, env_kwargs=config.env_kwargs)
            try:
                summaries.append(
                    evaluate(config, pool, model_name=args.model, console=err, progress=not args.no_progress)
                )
            finally:
                pool.close()
    else:
        with err.status(f"loading {args.backend} backend ({args.model})", spinner="dots"):
            backend = make_cli_backend(args)
        try:
            for config in configs:
                summaries.append(
                    evaluate(config, backend, model_name=args.model, console=err, progress=not args.no_progress)
                )
        finally:
            backend.close()
    if args.json:
        out.print_json(data=[s.to_dict() for s in summaries])
    else:
        out.print(summary_table(summaries))
    if args.out:
        err.print(f"[dim]wrote {args.out}[/dim]")
    if args.report:
        from plyground.evaluation.report import render_report

        if not args.out:
            raise ValueError("--report needs --out (the report is written there)")
        dirs = [c.out_dir for c in configs if c.out_dir]
        path = render_report(dirs, Path(args.out) / "report.html")
        err.print(f"[dim]report: {path}[/dim]")
    return EXIT_OK


# -- plyground report ----------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace, out: Console) -> int:
    from plyground.evaluation.report import render_report

    path = render_report(args.runs, args.output)
    out.print(str(path))
    return EXIT_OK


def summary_table(summaries: Sequence[Any]) -> Table:
    """The rich table ``plyground eval`` prints (narrow enough for an 80-column terminal)."""
    table = Table(title="evaluation summary", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    table.add_column("env", no_wrap=True, min_width=14)
    for col in ("n x K", "success", "reward", "turns", "pass@K", "tokens", "errors", "secs"):
        table.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    for s in summaries:
        top_k = list(s.pass_at_k.items())[-1] if s.pass_at_k else ("", 0.0)
        table.add_row(
            s.env_id,
            f"{s.episodes} x {s.samples}",
            f"{s.success_rate:.0%}",
            f"{s.mean_reward:.2f}",
            f"{s.mean_turns:.1f}",
            f"{top_k[1]:.2f}",
            f"{s.prompt_tokens + s.completion_tokens:,}",
            str(s.errors),
            f"{s.wall_s:.0f}",
        )
    return table


# -- plyground serve -----------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace, out: Console) -> int:
    from plyground.inference.server import serve

    Console(stderr=True).print(
        f"[dim]serving {args.model} at http://{args.host}:{args.port}/v1 (OpenAI-compatible)[/dim]"
    )
    serve(args.model, host=args.host, port=args.port, model_name=args.served_name, device=args.device)
    return EXIT_OK


# -- plyground search -----------------------------------------------------------------------------
def cmd_search(args: argparse.Namespace, out: Console) -> int:
    """Search each episode with one algorithm; write results.jsonl, pairs.jsonl, sft.jsonl and
    summary.json to ``--out`` (schemas: ``plyground.search.pairs``)."""
    import dataclasses
    import time

    from plyground.envs import make
    from plyground.search import (
        PairConfig,
        RandomProposer,
        agentq_pairs,
        bfs_pairs,
        sft_examples,
        write_records,
    )
    from plyground.search.critics import Critic, load_archer_critic
    from plyground.search.evaluate import default_config, run_search, summarize
    from plyground.search.mcts import MCTSConfig
    from plyground.search.proposer import Proposer, SelfCritic
    from plyground.types import SamplingParams

    env_kwargs = _parse_kv(args.env_arg)
    make(args.env, **env_kwargs).close()  # an unknown env or bad argument fails before the model loads
    if args.budget < 1 or args.episodes < 1:
        raise ValueError("--budget and --episodes must be >= 1")
    if args.critic is not None and args.critic != "self" and not args.critic.startswith("archer:"):
        raise ValueError(f"--critic takes self or archer:PATH (an ArCHer checkpoint), got {args.critic!r}")
    if args.critic == "self" and args.backend == "random":
        raise ValueError("--critic asks the model to rank actions; the random backend has no model (pick --backend)")
    critic_range = None
    if args.critic_range is not None:
        lo, sep, hi = args.critic_range.partition(",")
        try:
            critic_range = (float(lo), float(hi))
        except ValueError:
            sep = ""
        if not sep or not args.critic or not args.critic.startswith("archer:"):
            raise ValueError(f"--critic-range takes LO,HI with --critic archer:PATH, got {args.critic_range!r}")
    err = Console(stderr=True)
    backend: Any = None
    critic: Critic | None = None
    if args.critic is not None and args.critic.startswith("archer:"):
        critic = load_archer_critic(args.critic.removeprefix("archer:"), device=args.device, value_range=critic_range)
    if args.backend != "random":
        with err.status(f"loading {args.backend} backend ({args.model})", spinner="dots"):
            backend = make_cli_backend(args)
    sampling = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    if backend is not None and args.critic == "self":
        critic = SelfCritic(backend)
    config = default_config(args.algo, args.budget, args.seed)
    if isinstance(config, MCTSConfig):
        config = dataclasses.replace(
            config, k=args.k, c_exp=args.c_exp, selection=args.selection, rollout=args.rollout or config.rollout
        )
    elif hasattr(config, "width"):
        config = dataclasses.replace(config, width=args.k)
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    results, pairs, sft = [], [], []
    start = time.perf_counter()
    try:
        for episode in range(args.episodes):
            seed = args.seed + episode
            proposer: Any = RandomProposer(seed) if backend is None else Proposer(backend, sampling)
            result = run_search(
                args.algo, lambda: make(args.env, **env_kwargs), proposer, args.budget, seed,
                config=config, critic=critic, env_id=args.env,
            )
            results.append(result)
            if args.algo == "mcts":
                pairs.extend(agentq_pairs(result, PairConfig(theta=args.theta)))
            else:
                pairs.extend(bfs_pairs(result))
            sft.extend(sft_examples(result))
            err.print(
                f"[dim]episode {episode} seed {seed}: {'solved' if result.success else 'unsolved'}, "
                f"{result.stats.proposer_calls} proposer calls, {result.stats.nodes_expanded} nodes[/dim]"
            )
    finally:
        if backend is not None:
            backend.close()
    point = summarize(args.algo, args.budget, results)
    summary = {
        "env_id": args.env,
        "algo": args.algo,
        "backend": args.backend,
        "model": args.model if backend is not None else None,
        "critic": args.critic,
        "config": dataclasses.asdict(config),
        **point.to_dict(),
        "solved": sum(r.success for r in results),
        "pairs": len(pairs),
        "sft": len(sft),
        "wall_s": round(time.perf_counter() - start, 3),
    }
    if out_dir is not None:
        write_records(str(out_dir / "results.jsonl"), (r.to_dict() for r in results))
        write_records(str(out_dir / "pairs.jsonl"), pairs)
        write_records(str(out_dir / "sft.jsonl"), sft)
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        out.print_json(data=summary)
    else:
        table = Table(title=f"search: {args.algo} on {args.env}", box=box.SIMPLE_HEAD)
        columns = ("episodes", "budget", "success", "calls", "generations", "tokens", "nodes", "pairs", "sft", "secs")
        for col in columns:
            table.add_column(col, justify="right")
        table.add_row(
            str(point.episodes), str(args.budget), f"{point.success_rate:.0%}", f"{point.mean_proposer_calls:.1f}",
            f"{point.mean_generations:.1f}", f"{point.mean_tokens:.0f}", f"{point.mean_nodes_expanded:.1f}",
            str(len(pairs)), str(len(sft)), f"{summary['wall_s']:.1f}",
        )
        out.print(table)
    if out_dir is not None:
        err.print(f"[dim]wrote {out_dir}[/dim]")
    return EXIT_OK


# -- plyground bench -----------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace, out: Console) -> int:
    """Rollout throughput of ``--backend`` on each env at each ``--concurrency`` level."""
    from plyground.envs import make
    from plyground.evaluation.bench import ThroughputPoint, measure_throughput
    from plyground.types import SamplingParams

    env_kwargs = _parse_kv(args.env_arg)
    for env_id in args.env:
        make(env_id, **env_kwargs).close()  # an unknown env or bad argument fails before the model loads
    err = Console(stderr=True)
    with err.status(f"loading {args.backend} backend ({args.model})", spinner="dots"):
        backend = make_cli_backend(args)
    sampling = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    points: list[ThroughputPoint] = []
    try:
        for env_id in args.env:
            err.print(f"[dim]{env_id}: warm-up, then {args.episodes} episodes at concurrency {args.concurrency}[/dim]")
            points += measure_throughput(
                env_id, backend, args.concurrency, args.episodes, sampling, args.max_turns, env_kwargs,
                progress=lambda p: err.print(f"[dim]  concurrency {p.concurrency}: {p.turns_per_s:.2f} turns/s[/dim]"),
            )  # fmt: skip
    finally:
        backend.close()
    records = [p.to_dict() for p in points]
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"backend": args.backend, "model": args.model, "points": records}, indent=2) + "\n")
    if args.json:
        out.print_json(data=records)
        return EXIT_OK
    table = Table(title=f"rollout throughput: {args.backend} ({args.model})", box=box.SIMPLE_HEAD)
    for col in ("env", "concurrency", "episodes/s", "turns/s", "tokens/s", "speed-up", "errors", "secs"):
        table.add_column(col, justify="left" if col == "env" else "right")
    for p in points:
        table.add_row(
            p.env_id, str(p.concurrency), f"{p.episodes_per_s:.2f}", f"{p.turns_per_s:.2f}", f"{p.tokens_per_s:.1f}",
            f"{p.speedup:.2f}x", str(p.errors), f"{p.wall_s:.1f}",
        )  # fmt: skip
    out.print(table)
    return EXIT_OK


# -- plyground serve-envs ------------------------------------------------------------------------
def cmd_serve_envs(args: argparse.Namespace, out: Console) -> int:
    from plyground.bridges.env_server import serve_envs

    Console(stderr=True).print(
        f"[dim]serving every registered env at http://{args.host}:{args.port}/v1/instances "
        f"(AgentGym routes under /agentgym/<env_id>)[/dim]"
    )
    serve_envs(host=args.host, port=args.port, idle_ttl_s=args.idle_ttl)
    return EXIT_OK


# -- plyground train -----------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace, out: Console) -> int:
    """Train with one algorithm: the YAML config (flat: field -> value), then ``--env``/``--model``/
    ``--out``, then ``--set key=value`` (values read as YAML) fill the algorithm's config dataclass."""
    import dataclasses
    import difflib

    import yaml

    from plyground.trainers import TRAINERS

    if args.algo not in TRAINERS:
        raise UnknownNameError("training algorithm", args.algo, TRAINERS)
    config_cls, trainer_cls = TRAINERS[args.algo]
    values: dict[str, Any] = {}
    if args.config:
        loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: a trainer config is a flat mapping of field: value")
        values.update(loaded)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    for flag, name in ((args.env, "env_id"), (args.model, "model"), (args.out, "out_dir")):
        if flag is not None:
            if name not in fields:
                raise ValueError(f"{args.algo} has no {name} setting (--{name.split('_')[0]})")
            values[name] = flag
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        values[key] = yaml.safe_load(raw)
    unknown = sorted(set(values) - fields)
    if unknown:
        hint = difflib.get_close_matches(unknown[0], fields, n=1)
        raise ValueError(
            f"unknown {args.algo} setting {unknown[0]!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
        )
    types = {f.name: str(f.type) for f in dataclasses.fields(config_cls)}
    for key, value in values.items():
        # YAML 1.1 reads "1e-4" as a string; a float field takes it as the number it means.
        if isinstance(value, str) and types[key].startswith("float"):
            try:
                values[key] = float(value)
            except ValueError as exc:
                raise ValueError(f"{key} must be a number, got {value!r}") from exc
    values.setdefault("live_table", sys.stderr.isatty())
    config = config_cls(**values)
    err = Console(stderr=True)
    pool = None
    if getattr(args, "ray", None):
        from plyground.scale import RayGRPOTrainer, RolloutPool
        from plyground.trainers.grpo import GRPOConfig, rollout_backend_spec

        if args.algo != "grpo" or not isinstance(config, GRPOConfig):
            raise ValueError(f"--ray runs grpo's rollouts on Ray workers; {args.algo} has no Ray path yet")
        # Each worker builds its own backend from the config's rollout backend (a server backend:
        # each worker launches its own servers); the trainer pushes its weights to every worker.
        spec = rollout_backend_spec(config)
        _connect_ray(args.ray, err)
        workers = f"{args.ray_workers} Ray rollout workers ({spec['name']}: {spec['model']})"
        with err.status(f"starting {workers}", spinner="dots"):
            pool = RolloutPool(config.env_id, spec, num_workers=args.ray_workers, env_kwargs=config.env_kwargs)
    trainer = None
    try:
        with err.status(f"loading {config.model} and preparing {args.algo}", spinner="dots"):
            trainer = trainer_cls(config) if pool is None else RayGRPOTrainer(config, pool=pool)
        history = _run_training(trainer, args, err)
    finally:
        if trainer is not None:
            trainer.close()  # a rollout server the trainer launched
        if pool is not None:
            pool.close()
    last = history[-1] if history else {"step": trainer.step}
    if args.json:
        out.print_json(data=last)
    else:
        table = Table(title=f"train {args.algo}: step {last.get('step')}", box=box.SIMPLE_HEAD)
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key in sorted(k for k in last if k != "step"):
            value = last[key]
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        out.print(table)
    err.print(f"[dim]wrote {config.out_dir} (metrics.jsonl, checkpoints/)[/dim]")
    return EXIT_OK


def _run_training(trainer: Any, args: argparse.Namespace, err: Console) -> list[dict[str, Any]]:
    if args.resume:
        if trainer.resume():
            err.print(f"[dim]resumed from step {trainer.step}[/dim]")
        else:
            err.print("[dim]no checkpoint to resume from; starting at step 0[/dim]")
    history: list[dict[str, Any]] = trainer.train()
    return history


# -- wiring --------------------------------------------------------------------------------------
def _add_backend_args(p: argparse.ArgumentParser, default: str = "hf", first: str = "") -> None:
    """The model backend flags that ``eval``, ``bench`` and ``search`` share (read by
    :func:`make_cli_backend`)."""
    p.add_argument(
        "--backend", default=default,
        help=first + "an inference backend: hf (local), openai (a server), vllm, sglang, plyground-server, or "
        "scripted (--model module:function, a chat policy)",
    )  # fmt: skip
    p.add_argument("--model", default="default", help="hf: default | tiny | a local folder; openai: the served name")
    p.add_argument("--base-url", default=None, help="openai: server URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-key", default=None, help="openai: API key (default: $OPENAI_API_KEY or EMPTY)")
    p.add_argument("--timeout", type=float, default=120.0, help="openai: seconds per request")
    p.add_argument(
        "--device", default=None, help="hf, plyground-server: torch device (default: cuda if available, else cpu)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plyground", description="Train and evaluate LLM agents and reasoners with RL."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("envs", help="list registered environments")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_envs)

    p = sub.add_parser("eval", help="evaluate a model on one or more environments")
    p.add_argument("env", nargs="+", help="environment id(s), e.g. GuessNumber-v0")
    _add_backend_args(p)
    p.add_argument("--episodes", type=int, default=10, help="distinct episodes per env")
    p.add_argument("--samples", type=int, default=1, help="attempts per episode (K, for pass@k)")
    p.add_argument("--concurrency", type=int, default=8, help="episodes in flight at once")
    p.add_argument("--seed", type=int, default=0, help="first env seed (and the sampling seed)")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=64, help="tokens per model turn")
    p.add_argument("--max-turns", type=int, default=None, help="cap on turns (default: the env's horizon)")
    p.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE", help="env constructor argument")
    p.add_argument("--out", default=None, help="output folder (trajectories.jsonl, summary.json); resumes")
    p.add_argument("--json", action="store_true", help="print summaries as JSON")
    p.add_argument("--no-progress", action="store_true", help="no live progress bar")
    p.add_argument("--report", action="store_true", help="also write OUT/report.html (plots, summary)")
    p.add_argument("--ray", default=None, metavar="ADDRESS", help="play on Ray rollout workers: 'local' or a cluster address")
    p.add_argument("--ray-workers", type=int, default=2, help="with --ray: rollout workers (each loads the backend)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="rollout throughput of a backend on envs, at several concurrency levels")
    p.add_argument("env", nargs="+", help="environment id(s), e.g. GuessNumber-v0")
    _add_backend_args(p)
    p.add_argument("--episodes", type=int, default=16, help="episodes per concurrency level")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="levels to measure (default: 1 8)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=32, help="tokens per model turn")
    p.add_argument("--max-turns", type=int, default=None, help="cap on turns (default: the env's horizon)")
    p.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE", help="env constructor argument")
    p.add_argument("--out", default=None, help="write the points to this JSON file")
    p.add_argument("--json", action="store_true", help="print the points as JSON")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="HTML report (plots, summary table) of `eval --out` folders")
    p.add_argument("runs", nargs="+", help="folders written by plyground eval --out")
    p.add_argument("-o", "--output", default="report.html", help="the HTML file to write")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("serve", help="serve a local model over an OpenAI-compatible HTTP API")
    p.add_argument("--model", default="default", help="default | tiny | a local folder")
    p.add_argument("--served-name", default=None, help="model name clients use (default: --model)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("serve-envs", help="serve registered envs over HTTP (RemoteEnv, AgentGym clients)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--idle-ttl", type=float, default=600.0, help="seconds before an idle instance is closed")
    p.set_defaults(func=cmd_serve_envs)

    p = sub.add_parser("search", help="search episodes with MCTS, best-first, beam or best-of-N")
    p.add_argument("env", help="environment id, e.g. Maze-v0")
    p.add_argument("--algo", choices=["mcts", "bfs", "beam", "best-of-n"], default="mcts")
    p.add_argument("--budget", type=int, default=64, help="proposer calls (chats sent to the policy) per episode")
    p.add_argument("--episodes", type=int, default=4, help="episodes (env seeds seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=0, help="first env seed (and the sampling seed)")
    _add_backend_args(p, default="random", first="random (uniform admissible actions; no model), or ")
    p.add_argument("--k", type=int, default=4, help="actions sampled per expanded node (MCTS k, best-first/beam width)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=64, help="tokens per proposed action")
    p.add_argument("--selection", choices=["uct", "puct"], default="uct", help="mcts: selection rule")
    p.add_argument("--c-exp", type=float, default=1.0, help="mcts: exploration constant")
    p.add_argument("--rollout", choices=["policy", "random", "none"], default=None, help="mcts: leaf evaluation (default none)")
    p.add_argument(
        "--critic", nargs="?", const="self", default=None, metavar="self|archer:PATH",
        help="mcts: Qhat from self-critique with the same backend (self, the default; not with random), or from "
        "the critic of an ArCHer checkpoint (archer:PATH: a run folder, its checkpoints/ or a step_* folder)",
    )  # fmt: skip
    p.add_argument(
        "--critic-range", default=None, metavar="LO,HI",
        help="with --critic archer:PATH: the critic values mapped onto Qhat in [0, 1] (default: the env's return range)",
    )  # fmt: skip
    p.add_argument("--theta", type=float, default=0.1, help="mcts: least Q gap for a preference pair")
    p.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE", help="env constructor argument")
    p.add_argument("--out", default=None, help="output folder: results.jsonl, pairs.jsonl, sft.jsonl, summary.json")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("train", help="train a model with one of the registered algorithms (configs/*.yaml)")
    # No argparse choices: the list lives in plyground.trainers.TRAINERS, which imports torch; a test
    # checks that the help below names every algorithm there.
    p.add_argument(
        "algo",
        help="training algorithm: sft, grpo, dpo, ppo, guide, scaf-grpo, mrt, archer, score, agent-q, "
        "bfs-prover, filtered-bc, reinforce",
    )
    p.add_argument("--env", default=None, help="environment id (sets env_id), e.g. Arithmetic-v0")
    p.add_argument("--model", default=None, help="default | tiny | a local folder (sets model)")
    p.add_argument("--config", default=None, help="YAML file: a flat mapping onto the algorithm's config fields")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (YAML value)")
    p.add_argument("--out", default=None, help="output folder (sets out_dir): metrics.jsonl, checkpoints/")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the output folder")
    p.add_argument("--json", action="store_true", help="print the last metrics as JSON")
    p.add_argument("--ray", default=None, metavar="ADDRESS", help="grpo: rollouts on Ray workers: 'local' or a cluster address")
    p.add_argument("--ray-workers", type=int, default=2, help="with --ray: rollout workers (each holds a copy of the policy)")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``plyground`` console script."""
    args = build_parser().parse_args(argv)
    out = Console()
    err = Console(stderr=True, soft_wrap=True)  # one line per error, whatever the width
    try:
        return int(args.func(args, out))
    except UnknownNameError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return EXIT_USAGE
    except BackendError as exc:
        err.print(f"[red]backend error:[/red] {exc}", highlight=False)
        err.print("[dim]finished trajectories are kept; rerun the same command to resume[/dim]")
        return EXIT_BACKEND
    except (PlygroundError, ValueError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]: finished trajectories are kept; rerun to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
