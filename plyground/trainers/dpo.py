"""DPO (Rafailov et al. 2023) on offline preference pairs, including pairs from search trees.

Reads the pairs JSONL of :mod:`plyground.search.pairs`: ``{"prompt": [messages], "chosen": str,
"rejected": str, "meta": {...}}``. Each response is rendered as the assistant's reply to the prompt
chat and scored by its summed token log-probability.

The reference is either the frozen initial policy (``reference="model"``: its log-probabilities are
computed once before training and kept in the checkpoint, so no second model stays in memory), or
the behaviour policy that produced the responses (``reference="behaviour"``: the pair's stored
``meta.chosen_logprob_sum`` / ``meta.rejected_logprob_sum``; the off-policy variant of Agent Q).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from plyground.trainers.core.data import prompt_response_record
from plyground.trainers.core.logprobs import collate, token_logprobs
from plyground.trainers.core.loop import EpochSampler, StepTotals, TrainConfig, Trainer, hfield, iter_jsonl
from plyground.trainers.core.losses import dpo_loss
from plyground.types import TokenRecord


@dataclass
class DPOConfig(TrainConfig):
    """Direct preference optimisation on a pairs JSONL."""

    data_path: str = hfield("", "pairs JSONL (plyground search --out DIR writes DIR/pairs.jsonl)")
    beta: float = hfield(0.1, "DPO temperature: scale of the implicit reward")
    reference: Literal["model", "behaviour"] = hfield(
        "model", "model: the frozen initial policy; behaviour: the pairs' stored logprob sums (off-policy)"
    )
    label_smoothing: float = hfield(0.0, "conservative DPO: assumed probability that a label is flipped")
    batch_size: int = hfield(8, "pairs per optimizer step")
    max_length: int | None = hfield(None, "drop pairs whose longer sequence exceeds this many tokens")
    shuffle: bool = hfield(True, "reshuffle the pairs every epoch")
    lr: float = hfield(1e-5, "peak learning rate (AdamW)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.data_path:
            raise ValueError("DPO needs data_path (a pairs JSONL)")
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.reference not in ("model", "behaviour"):
            raise ValueError(f"reference must be model or behaviour, got {self.reference!r}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError("label_smoothing must be in [0, 0.5)")
        if self.batch_size < 1 or self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a positive multiple of micro_batch_size ({self.micro_batch_size})"
            )


def load_pairs(path: str | Path) -> list[dict[str, Any]]:
    pairs = list(iter_jsonl(path))
    for i, p in enumerate(pairs):
        if not {"prompt", "chosen", "rejected"} <= p.keys():
            raise ValueError(f"{path}:{i + 1}: a pair needs prompt, chosen and rejected")
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


class DPOTrainer(Trainer):
    """Sigmoid DPO with a frozen-model or behaviour-logprob reference."""

    config: DPOConfig

    def __init__(
        self, config: DPOConfig, model: Any = None, tokenizer: Any = None,
        pairs: list[dict[str, Any]] | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(config, model, tokenizer, **kwargs)
        self.pairs = pairs if pairs is not None else load_pairs(config.data_path)
        self.chosen: list[TokenRecord] = []
        self.rejected: list[TokenRecord] = []
        behaviour: list[tuple[float, float]] = []
        for i, pair in enumerate(self.pairs):
            c = prompt_response_record(self.tokenizer, pair["prompt"], pair["chosen"])
            r = prompt_response_record(self.tokenizer, pair["prompt"], pair["rejected"])
            if config.max_length is not None and max(len(c.token_ids), len(r.token_ids)) > config.max_length:
                continue
            if config.reference == "behaviour":
                meta = pair.get("meta", {})
                lc, lr = meta.get("chosen_logprob_sum"), meta.get("rejected_logprob_sum")
                if lc is None or lr is None:
                    raise ValueError(
                        f"pair {i}: reference=behaviour needs meta.chosen_logprob_sum and meta.rejected_logprob_sum "
                        "(search with a backend that returns logprobs), or use reference=model"
                    )
                behaviour.append((float(lc), float(lr)))
            self.chosen.append(c)
            self.rejected.append(r)
        if not self.chosen:
            raise ValueError("no usable pairs (all longer than max_length?)")
        # A buffer, checkpointed: recomputing it after a resume would use the trained weights.
        self.ref = torch.tensor(behaviour) if behaviour else self._reference_sums()
        self.sampler = EpochSampler(len(self.chosen), seed=config.seed, shuffle=config.shuffle)

    @torch.no_grad()
    def _reference_sums(self) -> torch.Tensor:
        self.model.eval()
        out = []
        for start in range(0, len(self.chosen), self.config.micro_batch_size):
            idx = list(range(start, min(start + self.config.micro_batch_size, len(self.chosen))))
            out.append(self._sums(self._batch(idx)).cpu())
        return torch.cat(out)

    def _batch(self, idx: list[int]) -> dict[str, torch.Tensor]:
        records = [self.chosen[i] for i in idx] + [self.rejected[i] for i in idx]
        flat = collate(records, self.pad_token_id)
        n = len(idx)
        # (B, 2, T): chosen and rejected of a pair stay together when the loop splits micro-batches.
        batch = {k: torch.stack([v[:n], v[n:]], dim=1) for k, v in flat.items()}
        batch["loss_mask"] = batch["loss_mask"]  # (B, 2, T); shape[0] = pairs, as the loop counts
        return batch

    def _sums(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 2) summed response log-probabilities (chosen, rejected)."""
        b, two, t = batch["input_ids"].shape
        flat = {k: batch[k].to(self.device).reshape(b * two, t) for k in ("input_ids", "attention_mask", "loss_mask")}
        lp = token_logprobs(self.model, flat["input_ids"], flat["attention_mask"], flat["loss_mask"])["logprobs"]
        return (lp * flat["loss_mask"]).sum(-1).reshape(b, two)

    # ALGO LOGIC ------------------------------------------------------------------------------------
    def make_step_batch(self) -> list[dict[str, torch.Tensor]]:
        # batch_size is global: under data parallelism each process takes its share of the draw.
        idx = self.sampler.take(self.config.batch_size)[self.rank :: self.world_size]
        out = []
        for start in range(0, len(idx), self.config.micro_batch_size):
            part = idx[start : start + self.config.micro_batch_size]
            batch = self._batch(part)
            batch["ref"] = self.ref[part]
            out.append(batch)
        return out

    def compute_loss(self, micro: dict[str, torch.Tensor], totals: StepTotals) -> tuple[torch.Tensor, dict[str, float]]:
        sums = self._sums(micro)
        ref = micro["ref"].to(sums.device)
        loss, chosen_r, rejected_r = dpo_loss(
            sums[:, 0], sums[:, 1], ref[:, 0], ref[:, 1], self.config.beta, self.config.label_smoothing
        )
        margin = chosen_r - rejected_r
        return loss.sum() / totals.sequences, {
            "losses/dpo": float(loss.detach().mean()),
            "charts/reward_chosen": float(chosen_r.mean()),
            "charts/reward_rejected": float(rejected_r.mean()),
            "charts/margin": float(margin.mean()),
            "charts/accuracy": float((margin > 0).float().mean()),
        }

    def trainer_state(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict(), "ref": self.ref}

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.ref = state["ref"]
