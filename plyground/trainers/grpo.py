"""GRPO: group-relative policy optimisation (Shao et al. 2024), with the DAPO / Dr. GRPO options.

One optimizer step (``num_iterations`` steps reuse one rollout batch):

1. **sample** ``tasks_per_step`` env seeds x ``group_size`` episodes through
   :func:`plyground.rollout.collect_sync`, with an ``HFBackend`` that shares the policy's model
   object (so weight sync is free), or with an inference server (vLLM, SGLang, ``plyground-server``)
   that gets the trainer's weights through ``update_weights``: either one the trainer launches from
   ``config.rollout_backend`` (its weights are pushed before the first rollout and before each
   rollout batch after an update; see :class:`GRPOTrainer`), or one passed as ``rollout_backend=``
   (pushed after every update); trajectories keep token ids, loss mask and sampling logprobs;
2. **score** each trajectory (default: its total reward);
3. **advantages** per group: ``(r - mean) / (std + eps)`` (or ``r - mean``, Dr. GRPO), optionally
   dropping groups whose rewards are all equal (DAPO); each sequence's advantage is broadcast to its
   model tokens;
4. **update** with the PPO clipped surrogate against the stored behaviour logprobs (asymmetric clip
   with ``eps_high``), plus ``beta`` x k3 KL to a frozen reference and an entropy bonus when asked,
   aggregated per sequence, per token or by a constant (see ``core.losses.AGGREGATIONS``).

Extension points (how Guide, Scaf-GRPO and MRT plug in, each by overriding one method):

- :meth:`GRPOTrainer.sample` -- which episodes are played and with what prompt (Guide and Scaf-GRPO
  re-sample failed groups with hints);
- :meth:`GRPOTrainer.score` -- the reward of each trajectory (or pass ``reward_fn``);
- :meth:`GRPOTrainer.training_record` -- the tokens the update sees for a trajectory (Guide trains on
  the unhinted context while ``old_logprobs`` stay those sampled with the hint);
- :meth:`GRPOTrainer.group_ids` -- which trajectories are compared with each other;
- :meth:`GRPOTrainer.token_advantages` -- per-token weights from per-sequence advantages (MRT adds a
  per-episode progress bonus).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from plyground.errors import UnknownNameError
from plyground.inference.base import list_backends, make_backend
from plyground.trainers.core.logprobs import collate, token_logprobs
from plyground.trainers.core.loop import StepTotals, SyncWeights, TrainConfig, Trainer, hfield, split_micro
from plyground.trainers.core.losses import (
    AGGREGATIONS,
    aggregate,
    entropy_bonus,
    group_advantages,
    kl_estimate,
    masked_mean,
    nonzero_variance_groups,
    ppo_clip_loss,
)
from plyground.types import SamplingParams, TokenRecord, Trajectory

# Server backends of plyground's own registry; they take the trainer's tokenizer object (``tokenizer=``).
SERVER_BACKENDS = ("vllm", "sglang", "plyground-server")
# Model names only plyground's loader knows: a vLLM or SGLang server is given a folder instead.
PLYGROUND_MODEL_NAMES = ("default", "smollm2", "smollm2-135m-instruct", "tiny")
# What rollout_backend_args may set for ``hf``: the backend shares the trained model object.
HF_ROLLOUT_ARGS = ("max_batch_size",)


@dataclass
class GRPOConfig(TrainConfig):
    """GRPO on a plyground env. Defaults follow the GRPO paper; DAPO is ``loss_agg="token"``,
    ``eps_high=0.28``, ``drop_zero_variance=True``, ``beta=0``; Dr. GRPO is ``loss_agg="constant"``,
    ``scale_rewards=False``."""

    MIN_GROUP_SIZE: ClassVar[int] = 2  # group-relative advantages need at least two samples

    # environment and sampling
    env_id: str = hfield("Arithmetic-v0", "env to train on (plyground envs)")
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "env constructor arguments"})
    tasks_per_step: int = hfield(4, "distinct env seeds (prompts) per rollout batch")
    group_size: int = hfield(4, "episodes per env seed (G); advantages are relative within the group")
    max_tokens: int = hfield(64, "tokens per model turn")
    temperature: float = hfield(1.0, "sampling temperature (> 0: a greedy group has no variance)")
    top_p: float = hfield(1.0, "nucleus sampling")
    max_turns: int | None = hfield(None, "cap on turns per episode (default: the env's horizon)")
    concurrency: int = hfield(16, "episodes in flight during rollout")
    reproducible_rollouts: bool = hfield(
        False,
        "play episodes one at a time, so which prompts share a sampling batch does not depend on thread timing "
        "(per-request seeds already make batched HF sampling rerun alike up to float rounding); slow, for "
        "bit-exact reruns and resumes (implied by deterministic)",
    )
    # update
    num_iterations: int = hfield(1, "optimizer steps per rollout batch (mu); > 1 makes the clip bite")
    eps_low: float = hfield(0.2, "PPO clip: ratio >= 1 - eps_low")
    eps_high: float | None = hfield(None, "PPO clip: ratio <= 1 + eps_high (default eps_low; DAPO 0.28)")
    loss_agg: Literal["sequence", "token", "constant"] = hfield(
        "sequence", "sequence (GRPO), token (DAPO) or constant (Dr. GRPO) normalisation"
    )
    scale_rewards: bool = hfield(True, "divide advantages by the group std (False: Dr. GRPO)")
    adv_eps: float = hfield(1e-6, "epsilon in (r - mean) / (std + eps)")
    drop_zero_variance: bool = hfield(False, "drop groups whose rewards are all equal (DAPO dynamic sampling)")
    beta: float = hfield(0.0, "KL coefficient to a frozen reference (0: no reference model)")
    kl_estimator: Literal["k1", "k2", "k3"] = hfield("k3", "KL estimator (k3 as GRPO)")
    entropy_coef: float = hfield(0.0, "entropy bonus coefficient")
    lr: float = hfield(1e-6, "peak learning rate (AdamW)")
    # where rollouts are sampled
    rollout_backend: str = hfield(
        "hf",
        "rollout backend: hf (the trained model itself, in this process) or a registered server backend the "
        "trainer launches and pushes its weights to: vllm, sglang, plyground-server",
    )
    rollout_backend_args: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "keyword arguments of the rollout backend (make_backend), e.g. num_replicas, "
            "gpu_memory_utilization, dtype, startup_timeout_s, model (default: the trained model); "
            "hf: max_batch_size"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_rollout_backend()
        if self.tasks_per_step < 1:
            raise ValueError(f"tasks_per_step must be >= 1, got {self.tasks_per_step}")
        if self.group_size < self.MIN_GROUP_SIZE:
            raise ValueError(f"group_size must be >= {self.MIN_GROUP_SIZE}, got {self.group_size}")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0: greedy samples of a group are identical")
        if self.max_tokens < 1 or self.num_iterations < 1 or self.concurrency < 1:
            raise ValueError("max_tokens, num_iterations and concurrency must be >= 1")
        if not 0 < self.eps_low < 1:
            raise ValueError(f"eps_low must be in (0, 1), got {self.eps_low}")
        if self.eps_high is not None and self.eps_high <= 0:
            raise ValueError(f"eps_high must be > 0, got {self.eps_high}")
        if self.loss_agg not in AGGREGATIONS:
            raise ValueError(f"loss_agg must be one of {sorted(AGGREGATIONS)}, got {self.loss_agg!r}")
        if self.kl_estimator not in ("k1", "k2", "k3"):
            raise ValueError(f"kl_estimator must be k1, k2 or k3, got {self.kl_estimator!r}")
        if self.beta < 0 or self.entropy_coef < 0:
            raise ValueError("beta and entropy_coef must be >= 0")
        if self.drop_zero_variance and self.group_size < 2:
            raise ValueError("drop_zero_variance needs group_size >= 2")
        if self.loss_agg == "constant" and self.scale_rewards:
            warnings.warn("loss_agg=constant is Dr. GRPO, which also sets scale_rewards=False", stacklevel=2)

    def _check_rollout_backend(self) -> None:
        name, args = self.rollout_backend, self.rollout_backend_args
        if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
            raise ValueError(f"rollout_backend_args must be a mapping of argument: value, got {args!r}")
        if name not in list_backends():
            raise UnknownNameError("rollout backend", name, list_backends())
        if name == "openai":
            raise ValueError(
                "rollout_backend=openai cannot train: an OpenAI-compatible endpoint takes no new weights, so "
                "rollouts would stop coming from the policy being trained after the first update. Use vllm, "
                "sglang or plyground-server (the trainer launches the server and pushes weights to it), or "
                "pass a backend with update_weights() as GRPOTrainer(..., rollout_backend=...)"
            )
        if name == "hf":
            bad = sorted(set(args) - set(HF_ROLLOUT_ARGS))
            if bad:
                raise ValueError(
                    f"rollout_backend=hf samples from the trained model itself and takes only "
                    f"{', '.join(HF_ROLLOUT_ARGS)} in rollout_backend_args, got {bad}"
                )
        elif "model" in args and not isinstance(args["model"], str):
            raise ValueError(f"rollout_backend_args.model must be a model name or folder, got {args['model']!r}")


def rollout_backend_spec(config: GRPOConfig) -> dict[str, Any]:
    """``config``'s rollout backend as a JSON-able spec (``{"name": ..., **kwargs}``) for Ray rollout
    workers, each of which builds its own backend from it (:func:`plyground.scale.backend_from_spec`)."""
    args = dict(config.rollout_backend_args)
    model = args.pop("model", None) or config.model
    if args.get("base_urls"):
        raise ValueError(
            "rollout_backend_args.base_urls with Ray workers: every worker would push the same weights to the "
            "same servers. Run without --ray: the trainer attaches to the servers and pushes once per batch"
        )
    if config.rollout_backend in ("vllm", "sglang") and model.strip().lower() in PLYGROUND_MODEL_NAMES:
        raise ValueError(
            f"Ray workers launching {config.rollout_backend} servers need a model every node can load; "
            f"{model!r} is a name only plyground knows: set model (or rollout_backend_args.model) to a "
            "hub id or a folder present on every node"
        )
    return {"name": config.rollout_backend, "model": model, **args}


def merged_lora_state_dict(peft_model: Any) -> dict[str, torch.Tensor]:
    """The full weights a LoRA-wrapped model computes with, under the base model's own names
    (``W + scale * B @ A`` for every adapted layer, adapter tensors left out); the model is not
    changed. Tensors tied to another one (a tied ``lm_head``) appear once."""
    from peft.tuners.lora import LoraLayer

    base = peft_model.get_base_model()
    deltas: dict[str, torch.Tensor] = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer) and not module.merged:
            active = [a for a in module.active_adapters if a in module.lora_A]
            delta_of: Any = getattr(module, "get_delta_weight", None)
            if active and callable(delta_of):
                delta = delta_of(active[0])
                for adapter in active[1:]:
                    delta = delta + delta_of(adapter)
                deltas[f"{name}.weight"] = delta
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    with torch.no_grad():
        for key, value in base.state_dict().items():
            storage = (value.data_ptr(), tuple(value.shape))
            if ".lora_" in key or (value.numel() and storage in seen):
                continue
            seen.add(storage)
            key = key.replace(".base_layer.", ".")
            extra = deltas.get(key)
            out[key] = (value + extra.to(value.dtype) if extra is not None else value).detach()
    return out


class GRPOTrainer(Trainer):
    """GRPO: rollout groups, group-normalised advantages, PPO-clip update (see the module docstring)."""

    config: GRPOConfig

    def __init__(
        self,
        config: GRPOConfig,
        model: Any = None,
        tokenizer: Any = None,
        reward_fn: Callable[[Trajectory], float] | None = None,
        rollout_backend: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, model, tokenizer, **kwargs)
        import plyground
        from plyground.inference.hf import HFBackend

        probe = plyground.make(config.env_id, **config.env_kwargs)  # an unknown env fails here, early
        self.env_max_turns = int(min(probe.max_turns, config.max_turns or probe.max_turns))
        probe.close()
        self.reward_fn = reward_fn
        # The trainer step whose weights the rollout backend holds (None: not pushed yet).
        self.synced_version: int | None = None
        self.owns_backend = False
        self._backend: Any = None
        self._shared_backend = False
        self._closer: weakref.finalize | None = None
        self._exported_model: Path | None = None
        if rollout_backend is not None:
            # An inference server (vLLM, SGLang, plyground-server) passed in, assumed to hold the
            # trainer's initial weights: the full weights are pushed to it after every update (and
            # before the first rollout of a resumed run), so each rollout batch samples the policy.
            self._backend = rollout_backend
            self.synced_version = 0
            self.on_update.append(SyncWeights(push=lambda model, version: self._push_weights(version)))
        elif config.rollout_backend == "hf":
            # The backend samples from the very model object being trained: no copy, no sync needed.
            self._backend = HFBackend(model=self.base_model, tokenizer=self.tokenizer, **config.rollout_backend_args)
            self._shared_backend = True
            self.on_update.append(SyncWeights(self._backend))
        else:
            # A server this trainer launches (config.rollout_backend) and closes (close(), or the end of
            # the run). It starts on first use -- so a trainer whose rollouts run elsewhere (Ray workers)
            # launches nothing -- and each use after an update first pushes the current weights.
            self.owns_backend = True
        self.ref_model: Any = None
        if config.beta > 0 and not config.lora:
            self.ref_model = copy.deepcopy(self.base_model).eval().requires_grad_(False)
        self.buffer: dict[str, torch.Tensor] | None = None
        self.buffer_uses = 0
        self.rollout_index = 0
        self.last_trajectories: list[Trajectory] = []

    # -- the rollout backend -------------------------------------------------------------------------------
    @property
    def backend(self) -> Any:
        """The backend rollouts sample from, holding the trainer's current weights.

        A server backend of ``config.rollout_backend`` is launched on first use (and again after
        :meth:`close`); any server backend whose weights are older than the trainer's step gets the
        current ones pushed first (``update_weights(weights, step)``), so a fresh server, or a resumed
        run, samples exactly the trainer's policy."""
        if self._backend is None and self.owns_backend:
            self._launch_backend()
        if not self._shared_backend and self.synced_version != self.step:
            self._push_weights(self.step)
        return self._backend

    @backend.setter
    def backend(self, value: Any) -> None:
        """Sample from ``value`` from now on, taken to hold the current weights: one with
        ``update_weights`` gets the later ones pushed, one without is used as it is."""
        if value is not self._backend:
            self.close()
        self._backend = value
        self.owns_backend = False
        self._shared_backend = not callable(getattr(value, "update_weights", None))
        self.synced_version = self.step

    def _launch_backend(self) -> None:
        c = self.config
        kwargs = dict(c.rollout_backend_args)
        kwargs["model"] = self._served_model(kwargs.get("model") or c.model)
        if c.rollout_backend in SERVER_BACKENDS:
            # Rollouts are tokenised with the trainer's own tokenizer: token ids match the update's.
            kwargs.setdefault("tokenizer", self.tokenizer)
        exported, self._exported_model = self._exported_model, None
        try:
            backend = make_backend(c.rollout_backend, **kwargs)
        except BaseException:
            _close_backend(None, exported)
            raise
        if not callable(getattr(backend, "update_weights", None)):
            _close_backend(backend, exported)
            raise TypeError(
                f"rollout backend {c.rollout_backend!r} ({type(backend).__name__}) has no update_weights(): "
                "the trainer could not keep its rollouts on the current policy"
            )
        # Closed with the trainer, or at interpreter exit if nobody closed it: no orphan servers.
        self._closer = weakref.finalize(self, _close_backend, backend, exported)
        self._backend = backend
        # A server started from a folder of the current weights holds them already.
        self.synced_version = self.step if exported is not None else None

    def _served_model(self, model: str) -> str:
        """What the server loads: ``model``, or, for a vLLM/SGLang server and a name only plyground knows
        (``default``, ``tiny``), a folder holding the trainer's current weights and tokenizer."""
        if self.config.rollout_backend not in ("vllm", "sglang") or model.strip().lower() not in PLYGROUND_MODEL_NAMES:
            return model
        if self.config.rollout_backend_args.get("base_urls"):
            return model  # attached servers already run a model, under the name requests must use
        folder = Path(tempfile.mkdtemp(prefix="plyground-rollout-model-"))
        self._exported_model = folder
        self.base_model.save_pretrained(str(folder), state_dict=self.full_state_dict() if self.config.lora else None)
        self.tokenizer.save_pretrained(str(folder))
        return str(folder)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The policy's full weights under the base model's names (a LoRA run's merged), for
        anything that holds a plain copy of the model: a server, a rollout worker."""
        return merged_lora_state_dict(self.model) if self.config.lora else self.base_model.state_dict()

    def _policy_weights(self) -> Any:
        """What ``update_weights`` gets: the model (saved whole); with LoRA, its adapter for a vLLM
        server that hot-loads adapters (``weight_sync="lora"``), else the merged full weights."""
        if not self.config.lora:
            return self.base_model
        if getattr(self._backend, "weight_sync", None) == "lora":
            return self.model  # a PEFT model: save_pretrained writes the adapter
        return self.full_state_dict()

    def _push_weights(self, version: int) -> None:
        if self._backend is None:
            return
        started = time.perf_counter()
        self._backend.update_weights(self._policy_weights(), version)
        self.synced_version = version
        self.step_metrics["rollout/push_s"] = time.perf_counter() - started

    def close(self) -> None:
        """Shut down the server this trainer launched (from ``config.rollout_backend``); a backend
        passed as ``rollout_backend=`` is the caller's to close. Using :attr:`backend` afterwards
        launches a new one."""
        closer, self._closer = self._closer, None
        if self.owns_backend and closer is not None:
            self._backend = None
            self.synced_version = None
            closer()

    def train(self, max_steps: int | None = None) -> list[dict[str, Any]]:
        """:meth:`Trainer.train`; a server this trainer launched is closed when the run ends (its
        last step done, or an error) and kept between calls that stop early (``max_steps``)."""
        try:
            history = super().train(max_steps)
        except BaseException:
            self.close()
            raise
        if self.step >= self.config.total_steps:
            self.close()
        return history

    def _rollout_backend_metrics(self) -> dict[str, float]:
        """Which weights the rollout batch was sampled with, and how many requests the server
        backend has answered so far (server backends only)."""
        backend = self._backend
        if self._shared_backend or backend is None:
            return {}
        out: dict[str, float] = {}
        version = getattr(backend, "policy_version", None)
        if isinstance(version, int):
            out["rollout/policy_version"] = float(version)
        router = getattr(backend, "router", None)
        if router is not None:
            out["rollout/server_requests"] = float(sum(r.served for r in router.replicas))
        return out

    # -- ALGO LOGIC: sampling and scoring (override points) ----------------------------------------------
    def sample(self, rollout_index: int) -> list[Trajectory]:
        """Play ``tasks_per_step`` x ``group_size`` episodes; env seeds and the sampling seed are a
        function of ``rollout_index`` alone, so a resumed run samples what the straight run did."""
        import plyground
        from plyground.rollout.collector import EpisodeSpec, RolloutConfig, collect_sync

        c = self.config
        # Data parallel: each process plays its own slice of episodes (rank 0 of 1: the usual ones).
        shard = rollout_index * self.world_size + self.rank
        first = c.seed * 1_000_003 + shard * c.tasks_per_step
        specs = [
            EpisodeSpec(seed=first + i, episode=i, sample=j) for i in range(c.tasks_per_step) for j in range(c.group_size)
        ]
        sampling = SamplingParams(
            max_tokens=c.max_tokens, temperature=c.temperature, top_p=c.top_p,
            seed=(c.seed * 7919 + shard) % 2**31,
        )
        # Concurrent episodes are batched in arrival order, which depends on thread timing. A backend
        # that takes per-prompt seeds (HFBackend) draws each request from its own stream anyway; one
        # at a time also removes the last batch-dependence (padding changes float rounding).
        concurrency = 1 if (c.reproducible_rollouts or c.deterministic) else c.concurrency
        rollout = RolloutConfig(sampling=sampling, concurrency=concurrency, max_turns=c.max_turns, track_tokens=True)
        trajs = collect_sync(lambda: plyground.make(c.env_id, **c.env_kwargs), self.backend, specs, rollout)
        return sorted(trajs, key=lambda t: (t.metadata.get("episode", 0), t.metadata.get("sample", 0)))

    def score(self, trajectories: list[Trajectory]) -> torch.Tensor:
        """(B,) rewards; default the episode's total reward."""
        fn = self.reward_fn or (lambda t: float(t.total_reward))
        return torch.tensor([fn(t) for t in trajectories], dtype=torch.float32)

    def training_record(self, trajectory: Trajectory) -> TokenRecord | None:
        """The tokens the update trains on (None: skip the trajectory)."""
        tokens = trajectory.tokens
        if tokens is None or not tokens.token_ids or sum(tokens.loss_mask) == 0:
            return None
        return tokens

    def group_ids(self, trajectories: list[Trajectory]) -> torch.Tensor:
        """(B,) group index of each trajectory: the episodes of one env seed form a group."""
        return torch.tensor([int(t.metadata.get("episode", 0)) for t in trajectories], dtype=torch.long)

    def token_advantages(
        self, batch: dict[str, torch.Tensor], seq_advantages: torch.Tensor, trajectories: list[Trajectory]
    ) -> torch.Tensor:
        """(B, T) per-token advantages: the sequence's advantage on each of its model tokens."""
        return seq_advantages[:, None] * batch["loss_mask"]

    # -- ALGO LOGIC: batch building ------------------------------------------------------------------------
    def build_batch(self, trajectories: list[Trajectory]) -> dict[str, torch.Tensor]:
        pairs = [(t, self.training_record(t)) for t in trajectories]
        kept = [(t, r) for t, r in pairs if r is not None]
        if not kept:
            raise RuntimeError("no trajectory in the rollout batch has model tokens to train on")
        trajs = [t for t, _ in kept]
        rewards = self.score(trajs)
        groups = self.group_ids(trajs)
        adv = group_advantages(rewards, groups, scale_by_std=self.config.scale_rewards, eps=self.config.adv_eps)
        keep = nonzero_variance_groups(rewards, groups)
        self.step_metrics.update(self._rollout_metrics(trajectories, rewards, groups, keep))
        if self.config.drop_zero_variance and bool(keep.any()):
            idx = keep.nonzero().flatten().tolist()
            trajs, kept = [trajs[i] for i in idx], [kept[i] for i in idx]
            adv = adv[keep]
        batch = collate([r for _, r in kept], self.pad_token_id)
        batch["advantages"] = self.token_advantages(batch, adv, trajs)
        if self.config.beta > 0:
            batch["ref_logprobs"] = self._reference_logprobs(batch)
        self.last_trajectories = trajs
        return batch

    @torch.no_grad()
    def _reference_logprobs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = []
        size = self.config.micro_batch_size
        for micro in split_micro(batch, size):
            ids, am, lm = (micro[k].to(self.device) for k in ("input_ids", "attention_mask", "loss_mask"))
            if self.ref_model is not None:
                out.append(token_logprobs(self.ref_model, ids, am, lm)["logprobs"].cpu())
            else:  # LoRA: the reference is the base model with the adapters switched off
                with self.model.disable_adapter():
                    out.append(token_logprobs(self.model, ids, am, lm)["logprobs"].cpu())
        return torch.cat(out)

    @staticmethod
    def _rollout_metrics(
        trajectories: list[Trajectory], rewards: torch.Tensor, groups: torch.Tensor, keep: torch.Tensor
    ) -> dict[str, float]:
        n = max(len(trajectories), 1)
        n_groups = max(len(torch.unique(groups)), 1)
        zero_groups = sum(1 for g in torch.unique(groups) if float(rewards[groups == g].max()) <= 0)
        return {
            "env/reward_mean": float(rewards.mean()),
            "env/reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
            "env/success_rate": sum(t.success for t in trajectories) / n,
            "env/turns_mean": sum(t.num_turns for t in trajectories) / n,
            "env/errors": float(sum(t.error is not None for t in trajectories)),
            "env/zero_variance_group_frac": 1.0 - len(torch.unique(groups[keep])) / n_groups,
            "env/zero_reward_group_frac": zero_groups / n_groups,
        }

    # -- the loop's two methods ----------------------------------------------------------------------------
    def make_step_batch(self) -> list[dict[str, torch.Tensor]]:
        if self.buffer is None or self.buffer_uses >= self.config.num_iterations:
            with self.full_weights():
                trajectories = self.sample(self.rollout_index)
            self.step_metrics.update(self._rollout_backend_metrics())
            self.buffer = self.build_batch(trajectories)
            self.buffer_uses = 0
            self.rollout_index += 1
        self.buffer_uses += 1
        return split_micro(self.buffer, self.config.micro_batch_size)

    def compute_loss(self, micro: dict[str, torch.Tensor], totals: StepTotals) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        mask = micro["loss_mask"]
        out = token_logprobs(
            self.model, micro["input_ids"], micro["attention_mask"], mask, with_entropy=True,
            entropy_grad=c.entropy_coef > 0,
        )  # fmt: skip
        logprobs = out["logprobs"]
        per_token, clipped = ppo_clip_loss(logprobs, micro["old_logprobs"], micro["advantages"], c.eps_low, c.eps_high)
        metrics = {
            "losses/policy": float(masked_mean(per_token.detach(), mask)),
            "losses/clipfrac": float(masked_mean(clipped, mask)),
            "losses/entropy": float(masked_mean(out["entropy"].detach(), mask)),
            "losses/ratio_mean": float(masked_mean(torch.exp(logprobs.detach() - micro["old_logprobs"]), mask)),
        }
        if c.beta > 0:
            kl = kl_estimate(logprobs, micro["ref_logprobs"], c.kl_estimator)
            per_token = per_token + c.beta * kl
            metrics["losses/kl"] = float(masked_mean(kl.detach(), mask))
        if c.entropy_coef > 0:
            per_token = per_token + entropy_bonus(out["entropy"], c.entropy_coef)
        loss = aggregate(
            per_token, mask, c.loss_agg, totals.tokens, totals.sequences, max_tokens=c.max_tokens * self.env_max_turns
        )
        metrics["losses/total"] = float(loss.detach()) * totals.micro_batches
        return loss, metrics

    def trainer_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer, "buffer_uses": self.buffer_uses, "rollout_index": self.rollout_index}

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        self.buffer = state["buffer"]
        self.buffer_uses = int(state["buffer_uses"])
        self.rollout_index = int(state["rollout_index"])


def _close_backend(backend: Any, exported_model: Path | None) -> None:
    try:
        if backend is not None:
            backend.close()
    finally:
        if exported_model is not None:
            shutil.rmtree(exported_model, ignore_errors=True)
