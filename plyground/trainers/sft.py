"""Supervised fine-tuning on the model's own tokens: trajectories (``Trajectory.tokens``, trained
where ``loss_mask == 1``) or chat records (``{"messages": [...]}``, as ``plyground search`` writes
to ``sft.jsonl``: trained on the assistant replies). Also behaviour cloning from a scripted expert.

Loss: token-level negative log-likelihood, normalised by the masked tokens of the whole optimizer
step (so gradient accumulation gives the gradient of one big batch).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from plyground.trainers.core.data import messages_to_record
from plyground.trainers.core.logprobs import collate, token_logprobs
from plyground.trainers.core.loop import (
    EpochSampler,
    StepTotals,
    TrainConfig,
    Trainer,
    hfield,
    iter_jsonl,
    split_micro,
)
from plyground.types import TokenRecord, Trajectory


@dataclass
class SFTConfig(TrainConfig):
    """Supervised fine-tuning. Data comes from ``data_path`` or, for behaviour cloning, from
    ``expert`` playing ``env_id`` (exactly one of the two)."""

    data_path: str | None = hfield(
        None, "JSONL of trajectories (with tokens) or chat records {'messages': [...]} (mixed is fine)"
    )
    env_id: str | None = hfield(None, "env the expert plays to make data (with expert)")
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "env constructor arguments"})
    expert: str | None = hfield(
        None, "'module:function' chat policy that makes the data, e.g. plyground.envs.guess_number:bisection_chat_policy"
    )
    expert_episodes: int = hfield(32, "episodes the expert plays")
    only_success: bool = hfield(True, "keep only successful expert/trajectory episodes")
    batch_size: int = hfield(8, "sequences per optimizer step")
    max_length: int | None = hfield(None, "truncate sequences to this many tokens")
    shuffle: bool = hfield(True, "reshuffle the data every epoch")
    lr: float = hfield(1e-4, "peak learning rate (AdamW)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.data_path is None) == (self.expert is None):
            raise ValueError("SFT needs exactly one data source: data_path, or expert (with env_id)")
        if self.expert is not None and not self.env_id:
            raise ValueError("expert needs env_id (the env it plays)")
        if self.expert is not None and ":" not in self.expert:
            raise ValueError(f"expert must be 'module:function', got {self.expert!r}")
        if self.batch_size < 1 or self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a positive multiple of micro_batch_size ({self.micro_batch_size})"
            )
        if self.expert_episodes < 1:
            raise ValueError("expert_episodes must be >= 1")


def load_sft_records(path: str | Path, tokenizer: Any, only_success: bool = True) -> list[TokenRecord]:
    """Token records from a JSONL of trajectories (``tokens`` field) and/or chat records."""
    records: list[TokenRecord] = []
    for i, row in enumerate(iter_jsonl(path)):
        if "messages" in row:
            records.append(messages_to_record(tokenizer, row["messages"]))
        elif "env_id" in row:
            traj = Trajectory.from_dict(row)
            if traj.tokens is None:
                raise ValueError(f"{path}:{i + 1}: trajectory has no tokens (collect with track_tokens)")
            if traj.success or not only_success:
                records.append(traj.tokens)
        else:
            raise ValueError(f"{path}:{i + 1}: neither a trajectory nor a {{'messages': ...}} record")
    return records


def expert_trajectories(
    env_id: str, policy: Callable[..., str], tokenizer: Any, episodes: int, seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
) -> list[Trajectory]:
    """Play ``episodes`` with a scripted chat policy; trajectories carry the exact token ids."""
    import plyground
    from plyground.inference.scripted import scripted_backend
    from plyground.rollout.collector import RolloutConfig, collect_sync, episode_specs

    backend = scripted_backend(policy, tokenizer)
    trajs = collect_sync(
        lambda: plyground.make(env_id, **(env_kwargs or {})),
        backend,
        episode_specs(episodes, base_seed=seed),
        RolloutConfig(track_tokens=True, concurrency=4),
    )
    return sorted(trajs, key=lambda t: t.metadata.get("episode", 0))


def resolve_callable(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    fn = getattr(importlib.import_module(module), name)
    if not callable(fn):
        raise ValueError(f"{spec!r} is not callable")
    return fn  # type: ignore[no-any-return]


class SFTTrainer(Trainer):
    """Token-level maximum likelihood on the loss-masked tokens."""

    config: SFTConfig

    def __init__(
        self, config: SFTConfig, model: Any = None, tokenizer: Any = None,
        records: Sequence[TokenRecord] | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(config, model, tokenizer, **kwargs)
        self.records = list(records) if records is not None else self._load_records()
        if self.config.max_length is not None:
            n = self.config.max_length
            self.records = [TokenRecord(r.token_ids[:n], r.loss_mask[:n], r.logprobs[:n]) for r in self.records]
        self.records = [r for r in self.records if sum(r.loss_mask[1:]) > 0]
        if not self.records:
            raise ValueError("no SFT examples with trainable tokens")
        self.sampler = EpochSampler(len(self.records), seed=config.seed, shuffle=config.shuffle)

    def _load_records(self) -> list[TokenRecord]:
        c = self.config
        if c.data_path is not None:
            return load_sft_records(c.data_path, self.tokenizer, c.only_success)
        assert c.expert is not None and c.env_id is not None
        trajs = expert_trajectories(
            c.env_id, resolve_callable(c.expert), self.tokenizer, c.expert_episodes, c.seed, c.env_kwargs
        )
        return [t.tokens for t in trajs if t.tokens is not None and t.error is None and (t.success or not c.only_success)]

    # ALGO LOGIC ------------------------------------------------------------------------------------
    def make_step_batch(self) -> list[dict[str, torch.Tensor]]:
        # Data parallel: every process draws the same indices and keeps its own slice of them.
        taken = self.sampler.take(self.config.batch_size * self.world_size)
        picked = [self.records[i] for i in taken[self.rank :: self.world_size]]
        return split_micro(collate(picked, self.pad_token_id), self.config.micro_batch_size)

    def compute_loss(self, micro: dict[str, torch.Tensor], totals: StepTotals) -> tuple[torch.Tensor, dict[str, float]]:
        out = token_logprobs(self.model, micro["input_ids"], micro["attention_mask"], micro["loss_mask"])
        mask = micro["loss_mask"]
        nll_sum = -(out["logprobs"] * mask).sum()
        loss = nll_sum / max(totals.tokens, 1.0)
        # Per-micro-batch mean NLL, for display (the loop averages it over micro-batches).
        mean_nll = float(nll_sum.detach()) / max(float(mask.sum()), 1.0)
        return loss, {"losses/nll": mean_nll}

    def trainer_state(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
