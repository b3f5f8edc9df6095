"""Rollout workers and env actors on a Ray cluster.

The in-process path (:func:`plyground.rollout.collect_sync`) stays the default; this module is for
when one machine is not enough. Nothing here imports ``ray`` until it is used
(``pip install 'plyground[scale]'``).

* :class:`RolloutWorker` (an actor): builds one backend from a *backend spec* and a registered env,
  and plays the episode specs it is given (the usual collector, so batching, token tracking and
  error handling are the same as in-process). Weights are pushed to it with ``update_weights``.
* :class:`EnvActor` (an actor): one :class:`~plyground.envs.core.TextEnv` driven remotely
  (``reset``/``step``/``snapshot``/``restore``), for search and tree rollouts.
* :class:`RolloutPool`: N workers; ``collect`` spreads episode specs over them, ``evaluate``
  summarises, ``push_weights`` sends a state dict (once, through the object store) to all.
* :class:`RayGRPOTrainer`: :class:`~plyground.trainers.grpo.GRPOTrainer` whose rollouts run on a
  pool (weights pushed before each rollout batch when they changed).

Backend specs are plain dicts, so they travel to the cluster: ``{"name": "scripted", "policy":
"module:function"}``, ``{"name": "hf", "model": "tiny"}``, ``{"name": "openai", "model": ...,
"base_url": ...}``, ``{"name": "vllm", ...}`` -- ``name`` picks a registered backend and the rest
are its keyword arguments.

Connecting: :func:`init_ray` (``address=None`` starts a local Ray; ``"auto"`` or
``"ray://host:10001"`` joins a cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Callable, Sequence
from typing import Any

from plyground.rollout.collector import EpisodeSpec, RolloutConfig, collect
from plyground.types import Trajectory

__all__ = [
    "EnvActor",
    "RayGRPOTrainer",
    "RolloutPool",
    "RolloutWorker",
    "backend_from_spec",
    "init_ray",
]


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plyground.scale needs ray: pip install 'plyground[scale]'") from exc
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs: Any) -> Any:
    """``ray.init`` with plyground's defaults (no dashboard); a no-op when Ray is already up."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    options: dict[str, Any] = {"include_dashboard": False, "ignore_reinit_error": True, "log_to_driver": False}
    options.update(kwargs)
    if address is not None:
        options["address"] = address
    elif num_cpus is not None:
        options["num_cpus"] = num_cpus
    ray.init(**options)
    return ray


def _resolve(ref: Any) -> Any:
    if isinstance(ref, str) and ":" in ref:
        module, _, attr = ref.partition(":")
        return getattr(importlib.import_module(module), attr)
    return ref


def backend_from_spec(spec: dict[str, Any]) -> Any:
    """A backend from a JSON-able spec (see the module docstring)."""
    spec = dict(spec)
    name = spec.pop("name")
    if name == "scripted":
        from plyground.inference.scripted import scripted_backend

        tokenizer = spec.pop("tokenizer", None)
        if tokenizer == "default":
            from plyground.inference.models import default_tokenizer

            tokenizer = default_tokenizer()
        return scripted_backend(_resolve(spec.pop("policy")), tokenizer)
    from plyground.inference.base import make_backend

    return make_backend(name, **spec)


class _RolloutWorker:
    """The body of :class:`RolloutWorker` (a plain class, usable without Ray in tests)."""

    def __init__(self, env_id: str, backend_spec: dict[str, Any], env_kwargs: dict[str, Any] | None = None) -> None:
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.backend_spec = dict(backend_spec)
        self.backend = backend_from_spec(backend_spec)
        self.version = 0
        self.episodes_played = 0

    def collect(self, specs: Sequence[EpisodeSpec], config: RolloutConfig | None = None) -> list[Trajectory]:
        import plyground

        trajs = asyncio.run(
            collect(lambda: plyground.make(self.env_id, **self.env_kwargs), self.backend, list(specs), config, self.env_id)
        )
        for traj in trajs:
            traj.metadata.setdefault("policy_version", self.version)
        self.episodes_played += len(trajs)
        return trajs

    def update_weights(self, weights: Any, version: int) -> int:
        """A state dict (loaded into a local ``hf`` model) or anything the backend's own
        ``update_weights`` takes (a checkpoint path for vLLM/SGLang)."""
        model = getattr(self.backend, "model", None)
        if isinstance(weights, dict) and model is not None and hasattr(model, "load_state_dict"):
            missing, unexpected = model.load_state_dict(weights, strict=False)
            # A tensor tied to a loaded one (a tied lm_head) may be left out; nothing else may.
            own = model.state_dict()
            loaded = {own[k].data_ptr() for k in weights if k in own}
            untied = [k for k in missing if own[k].data_ptr() not in loaded]
            if unexpected or untied:
                raise ValueError(f"weights do not fit the worker's model: missing {untied}, unexpected {unexpected}")
        elif callable(getattr(self.backend, "update_weights", None)):
            self.backend.update_weights(weights, version)
        else:
            raise TypeError(f"cannot push weights to a {type(self.backend).__name__} backend")
        self.version = int(version)
        return self.version

    def info(self) -> dict[str, Any]:
        import os

        return {"pid": os.getpid(), "version": self.version, "episodes": self.episodes_played, "env_id": self.env_id}

    def close(self) -> None:
        self.backend.close()


class _EnvActor:
    """The body of :class:`EnvActor`."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None) -> None:
        import plyground

        self.env = plyground.make(env_id, **(env_kwargs or {}))

    def instructions(self) -> str:
        return str(self.env.instructions)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        return self.env.reset(seed=seed, options=options)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return self.env.step(action)

    def snapshot(self) -> Any:
        return self.env.snapshot()

    def restore(self, state: Any) -> str:
        return self.env.restore(state)

    def close(self) -> None:
        self.env.close()


def RolloutWorker(num_cpus: float = 1.0, **options: Any) -> Any:
    """The Ray actor class for :class:`_RolloutWorker`: ``RolloutWorker().remote(env_id, spec)``."""
    return _ray().remote(num_cpus=num_cpus, **options)(_RolloutWorker)


def EnvActor(num_cpus: float = 0.25, **options: Any) -> Any:
    """The Ray actor class for :class:`_EnvActor`: ``EnvActor().remote("GuessNumber-v0")``."""
    return _ray().remote(num_cpus=num_cpus, **options)(_EnvActor)


class RolloutPool:
    """``num_workers`` rollout workers on the cluster (``init_ray`` first)."""

    def __init__(
        self,
        env_id: str,
        backend_spec: dict[str, Any],
        num_workers: int = 2,
        env_kwargs: dict[str, Any] | None = None,
        worker_cpus: float = 1.0,
        worker_options: dict[str, Any] | None = None,
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.ray = _ray()
        if not self.ray.is_initialized():
            raise RuntimeError("call plyground.scale.init_ray(...) before making a RolloutPool")
        self.env_id = env_id
        self.name = f"ray[{backend_spec.get('name', '?')}]"
        actor = RolloutWorker(num_cpus=worker_cpus, **(worker_options or {}))
        self.workers = [actor.remote(env_id, backend_spec, env_kwargs) for _ in range(num_workers)]
        self.version = 0

    def collect(
        self,
        specs: Sequence[EpisodeSpec],
        config: RolloutConfig | None = None,
        on_trajectory: Callable[[Trajectory], None] | None = None,
        chunk_size: int | None = None,
    ) -> list[Trajectory]:
        """Play ``specs`` spread over the workers (the samples of one episode stay on one worker,
        so its prefix cache serves them); returns them in the order of ``specs``.

        Each worker's share goes out in chunks of ``chunk_size`` specs (default: the rollout's
        concurrency), and ``on_trajectory`` gets each chunk's trajectories as soon as it is back,
        so a caller can save progress while the rest is still playing."""
        specs = list(specs)
        size = max(1, chunk_size or (config.concurrency if config is not None else 8))
        shards: list[list[int]] = [[] for _ in self.workers]
        for i, spec in enumerate(specs):
            shards[spec.episode % len(self.workers)].append(i)
        refs = [
            worker.collect.remote([specs[i] for i in shard[start : start + size]], config)
            for worker, shard in zip(self.workers, shards, strict=True)
            for start in range(0, len(shard), size)
        ]
        results: list[list[Trajectory]] = []
        pending = list(refs)
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=1)
            for trajs in self.ray.get(ready):
                results.append(trajs)
                if on_trajectory is not None:
                    for traj in trajs:
                        on_trajectory(traj)
        by_key: dict[tuple[int, int, int], list[Trajectory]] = {}
        for trajs in results:
            for traj in trajs:
                key = (int(traj.seed or 0), int(traj.metadata.get("episode", 0)), int(traj.metadata.get("sample", 0)))
                by_key.setdefault(key, []).append(traj)
        ordered = []
        for spec in specs:
            bucket = by_key.get((spec.seed, spec.episode, spec.sample))
            if bucket:
                ordered.append(bucket.pop(0))
        if len(ordered) != len(specs):
            raise RuntimeError(f"{len(specs)} episodes sent, {len(ordered)} came back")
        return ordered

    def evaluate(self, num_episodes: int, samples: int = 1, base_seed: int = 0, config: RolloutConfig | None = None) -> Any:
        """Collect and summarise (an :class:`~plyground.evaluation.metrics.EvalSummary`)."""
        from plyground.evaluation.metrics import summarize
        from plyground.rollout.collector import episode_specs

        trajs = self.collect(episode_specs(num_episodes, samples, base_seed), config)
        return summarize(trajs, self.env_id, backend="ray")

    def push_weights(self, weights: Any, version: int) -> None:
        """Send ``weights`` (a CPU state dict, or a checkpoint path) to every worker; the object
        goes into the object store once."""
        ref = self.ray.put(weights)
        self.ray.get([w.update_weights.remote(ref, version) for w in self.workers])
        self.version = int(version)

    def info(self) -> list[dict[str, Any]]:
        return list(self.ray.get([w.info.remote() for w in self.workers]))

    def close(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(Exception):  # shutting down: a dead worker is not an error
                self.ray.get(worker.close.remote(), timeout=30)
            self.ray.kill(worker)
        self.workers = []


def _make_ray_grpo() -> type:
    from plyground.trainers.grpo import GRPOTrainer
    from plyground.types import SamplingParams

    class _RayGRPOTrainer(GRPOTrainer):  # type: ignore[misc,valid-type]
        """GRPO whose rollouts run on a :class:`RolloutPool` of ``hf`` workers; the trainer's
        weights are pushed (a CPU state dict through the object store) before each rollout batch
        in which they changed."""

        def __init__(self, config: Any, model: Any = None, tokenizer: Any = None, *, pool: RolloutPool, **kwargs: Any):
            super().__init__(config, model, tokenizer, **kwargs)
            self.pool = pool
            self.pushed_version = -1

        def sample(self, rollout_index: int) -> list[Trajectory]:
            c = self.config
            if self.pushed_version != self.step:
                # The workers hold plain models: a LoRA run sends the merged weights.
                state = {k: v.detach().cpu() for k, v in self.full_state_dict().items()}
                self.pool.push_weights(state, self.step)
                self.pushed_version = self.step
            first = c.seed * 1_000_003 + rollout_index * c.tasks_per_step
            specs = [
                EpisodeSpec(seed=first + i, episode=i, sample=j)
                for i in range(c.tasks_per_step)
                for j in range(c.group_size)
            ]
            sampling = SamplingParams(
                max_tokens=c.max_tokens, temperature=c.temperature, top_p=c.top_p,
                seed=(c.seed * 7919 + rollout_index) % 2**31,
            )  # fmt: skip
            rollout = RolloutConfig(sampling=sampling, concurrency=c.concurrency, max_turns=c.max_turns, track_tokens=True)
            trajs = self.pool.collect(specs, rollout)
            return sorted(trajs, key=lambda t: (t.metadata.get("episode", 0), t.metadata.get("sample", 0)))

    return _RayGRPOTrainer


def RayGRPOTrainer(*args: Any, **kwargs: Any) -> Any:
    """``RayGRPOTrainer(config, model, tokenizer, pool=pool)``: see :func:`_make_ray_grpo`."""
    return _make_ray_grpo()(*args, **kwargs)
