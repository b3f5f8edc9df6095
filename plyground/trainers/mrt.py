"""MRT: meta reinforcement fine-tuning for test-time compute (Qu et al. 2025; reference CMU-AIRe/MRT).

The output stream is cut into **episodes** (:func:`split_episodes`: on ``"\\n\\n"``, consecutive
paragraphs grouped so there are at most ``max_episodes``). For every prefix ``z_0..j`` the answer is
**forced** (:func:`forced_chat`: the prefix, then :data:`FORCE_SUFFIX`, "time is up, give the final
answer") and ``K`` completions are sampled; the fraction that is correct estimates ``J(z_0..j)``
(:func:`estimate_j`; ``J`` of the empty prefix is the answer forced before any reasoning).

- progress of episode ``j``: ``J(z_0..j) - J(z_0..j-1)`` (:func:`progress`);
- cumulative regret of a trace: ``sum_j (J* - J(z_0..j))`` over its episodes, ``J*`` the best
  achievable success (default 1, an oracle) (:func:`cumulative_regret`);
- **RL variant** (``variant="rl"``): GRPO whose per-token advantage adds ``progress_weight`` x the
  progress of the token's episode to the outcome advantage (the weighting of the bonus is not
  confirmed by the paper or the reference code: a free setting here). ``baseline="termination"`` is
  the reference recipe ``A = R - R_termination``: a token of episode ``j`` gets ``R - J(z_0..j-1)``,
  the outcome minus the reward of stopping just before that episode (:func:`termination_advantages`);
  ``baseline="group"`` uses GRPO's group-normalised outcome advantage;
- **STaR variant** (``variant="star"``): per prompt, keep the correct traces that maximise progress
  (:func:`star_filter`: the correct traces of least cumulative regret, i.e. whose success
  probability rises earliest), then maximum likelihood on them, as the SFT trainer does
  (:func:`star_records` gives the records for ``SFTTrainer(records=...)`` offline).

Only the first model turn of an episode is split (MRT is single-turn reasoning). The estimate of
``J`` and progress live in :mod:`plyground.verifiers.progress` (shared with ``ProgressVerifier``)
and are importable from here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from plyground.trainers.core.logprobs import collate, token_logprobs
from plyground.trainers.core.loop import StepTotals, hfield, split_micro
from plyground.trainers.grpo import GRPOConfig, GRPOTrainer
from plyground.types import Chat, Message, SamplingParams, TokenRecord, Trajectory
from plyground.verifiers.progress import (  # noqa: F401 - MRT's pieces, importable from here as before
    FORCE_SUFFIX,
    answer_checker,
    estimate_j,
    estimate_j_many,
    forced_chat,
    progress,
    split_episodes,
)


# -- the pieces, as pure functions ---------------------------------------------------------------------
def cumulative_regret(j_values: Sequence[float], j_star: float = 1.0) -> float:
    """``sum over episodes j of (J* - J(z_0..j))`` (``j_values[0]``, the empty prefix, is not an episode)."""
    return float(sum(j_star - float(v) for v in j_values[1:]))


def termination_advantages(reward: float, j_values: Sequence[float]) -> list[float]:
    """The reference recipe ``A = R - R_termination`` for each episode ``j``: the outcome minus
    ``J(z_0..j-1)``, the expected reward of stopping just before episode ``j``."""
    return [float(reward) - float(v) for v in j_values[:-1]]


def star_filter(correct: Sequence[bool], j_values: Sequence[Sequence[float]], j_star: float = 1.0,
                tol: float = 1e-9) -> list[int]:
    """Indices of the correct traces that maximise progress: among the correct ones, those of least
    cumulative regret (ties all kept). None correct -> ``[]``."""
    good = [i for i, ok in enumerate(correct) if ok]
    if not good:
        return []
    regrets = {i: cumulative_regret(j_values[i], j_star) for i in good}
    best = min(regrets.values())
    return [i for i in good if regrets[i] <= best + tol]


def token_episodes(tokenizer: Any, response_ids: Sequence[int], episodes: Sequence[str]) -> list[int]:
    """Episode index of each response token: the episode in which the token's text ends (by
    cumulative decoding); tokens past the last episode (end-of-turn) belong to the last one."""
    ends, total = [], 0
    for e in episodes:
        total += len(e)
        ends.append(total)
    out, j = [], 0
    for i in range(len(response_ids)):
        n = len(tokenizer.decode(list(response_ids[: i + 1]), skip_special_tokens=True))
        while j < len(ends) - 1 and n > ends[j]:
            j += 1
        out.append(j)
    return out


# -- the trainer ---------------------------------------------------------------------------------------
@dataclass
class MRTConfig(GRPOConfig):
    """MRT on a single-turn env with a checkable answer (``Arithmetic-v0``, ``MathHints-v0``)."""

    variant: Literal["rl", "star"] = hfield("rl", "rl: GRPO + progress bonus; star: SFT on progress-maximising traces")
    progress_weight: float = hfield(
        1.0, "weight of the per-episode progress bonus in the advantage (the paper's weighting is unconfirmed)"
    )
    baseline: Literal["group", "termination"] = hfield(
        "termination", "group: GRPO's outcome advantage; termination: A = R - R_termination (reference recipe)"
    )
    j_samples: int = hfield(8, "forced-answer completions per prefix (K) to estimate J")
    force_max_tokens: int = hfield(16, "tokens per forced-answer completion")
    episode_sep: str = hfield("\n\n", "separator between reasoning paragraphs")
    max_episodes: int | None = hfield(4, "group paragraphs into at most this many episodes (None: one per paragraph)")
    j_star: float = hfield(1.0, "J* in the regret, the best achievable success (1: an oracle)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in ("rl", "star"):
            raise ValueError(f"variant must be rl or star, got {self.variant!r}")
        if self.baseline not in ("group", "termination"):
            raise ValueError(f"baseline must be group or termination, got {self.baseline!r}")
        if self.progress_weight < 0:
            raise ValueError(f"progress_weight must be >= 0, got {self.progress_weight}")
        if self.j_samples < 1 or self.force_max_tokens < 1:
            raise ValueError("j_samples and force_max_tokens must be >= 1")
        if self.max_episodes is not None and self.max_episodes < 1:
            raise ValueError(f"max_episodes must be >= 1, got {self.max_episodes}")
        if not self.episode_sep:
            raise ValueError("episode_sep must be non-empty")


class MRTTrainer(GRPOTrainer):
    """MRT's RL and STaR variants on GRPO's rollouts (see the module docstring)."""

    config: MRTConfig

    def __init__(self, config: MRTConfig, model: Any = None, tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(config, model, tokenizer, **kwargs)
        import plyground

        self._probe = plyground.make(config.env_id, **config.env_kwargs)
        self._instructions = getattr(self._probe.unwrapped, "instructions", "") or ""

    def gold(self, seed: int) -> str:
        _, info = self._probe.reset(seed=seed)
        return str(info["task"]["answer"])

    def annotate(self, trajectories: list[Trajectory], rollout_index: int = 0) -> None:
        """Store ``mrt_episodes``, ``mrt_J`` (J at every prefix), ``mrt_progress`` and
        ``mrt_regret`` in each trajectory's metadata (one batched backend call for all of them)."""
        c = self.config
        todo: list[tuple[Trajectory, list[str], Chat]] = []
        for t in trajectories:
            if not t.turns or t.turns[0].completion is None:
                continue
            episodes = split_episodes(t.turns[0].completion.text, c.episode_sep, c.max_episodes) or [""]
            chat: Chat = [Message("user", t.turns[0].observation)]
            if self._instructions:
                chat.insert(0, Message("system", self._instructions))
            todo.append((t, episodes, chat))
        shard = rollout_index * self.world_size + self.rank  # data parallel: each process its own draws
        params = SamplingParams(max_tokens=c.force_max_tokens, temperature=c.temperature, top_p=c.top_p,
                                seed=(c.seed * 7919 + shard * 31 + 17) % 2**31)
        checkers = {seed: answer_checker(self.gold(seed)) for seed in {int(t.seed or 0) for t, _, _ in todo}}
        items = [(chat, episodes, checkers[int(t.seed or 0)]) for t, episodes, chat in todo]
        for (t, episodes, _), j in zip(todo, estimate_j_many(self.backend, items, c.j_samples, params), strict=True):
            t.metadata.update(
                mrt_episodes=episodes, mrt_J=j, mrt_progress=progress(j), mrt_regret=cumulative_regret(j, c.j_star)
            )

    def sample(self, rollout_index: int) -> list[Trajectory]:
        trajs = super().sample(rollout_index)
        self.annotate(trajs, rollout_index)
        done = [t for t in trajs if "mrt_J" in t.metadata]
        n = max(len(done), 1)
        self.step_metrics["mrt/cumulative_regret"] = sum(t.metadata["mrt_regret"] for t in done) / n
        self.step_metrics["mrt/progress_mean"] = sum(
            sum(t.metadata["mrt_progress"]) / max(len(t.metadata["mrt_progress"]), 1) for t in done
        ) / n
        self.step_metrics["mrt/episodes_mean"] = sum(len(t.metadata["mrt_episodes"]) for t in done) / n
        return trajs

    def _episode_of_tokens(self, trajectory: Trajectory, width: int) -> tuple[list[int], list[int]]:
        """(positions, episode index) of the first turn's sampled tokens in the training record."""
        record = trajectory.tokens
        if record is None:
            return [], []
        positions: list[int] = []
        ids: list[int] = []
        for i, m in enumerate(record.loss_mask[:width]):
            if m:
                if positions and i != positions[-1] + 1:
                    break  # a second turn: only the first is split
                positions.append(i)
                ids.append(record.token_ids[i])
        return positions, token_episodes(self.tokenizer, ids, trajectory.metadata.get("mrt_episodes", [""]))

    def token_advantages(
        self, batch: dict[str, torch.Tensor], seq_advantages: torch.Tensor, trajectories: list[Trajectory]
    ) -> torch.Tensor:
        c = self.config
        adv = super().token_advantages(batch, seq_advantages, trajectories)
        rewards = self.score(trajectories)
        width = batch["loss_mask"].shape[1]
        for b, t in enumerate(trajectories):
            j = t.metadata.get("mrt_J")
            if not j:
                continue
            prog = progress(j)
            term = termination_advantages(float(rewards[b]), j)
            positions, eps = self._episode_of_tokens(t, width)
            for pos, e in zip(positions, eps, strict=True):
                base = term[e] if c.baseline == "termination" else float(seq_advantages[b])
                adv[b, pos] = (base + c.progress_weight * prog[e]) * batch["loss_mask"][b, pos]
        return adv

    # -- STaR --------------------------------------------------------------------------------------------
    def star_keep(self, trajectories: list[Trajectory]) -> list[Trajectory]:
        """Per group, the correct traces that maximise progress (:func:`star_filter`)."""
        from plyground.trainers.guide import by_group

        kept: list[Trajectory] = []
        for _, members in sorted(by_group(trajectories).items()):
            members = [t for t in members if "mrt_J" in t.metadata]
            idx = star_filter([bool(t.success) for t in members], [t.metadata["mrt_J"] for t in members],
                              self.config.j_star)
            kept += [members[i] for i in idx]
        return kept

    def make_step_batch(self) -> list[dict[str, torch.Tensor]]:
        if self.config.variant == "rl":
            return super().make_step_batch()
        trajs = self.sample(self.rollout_index)
        self.rollout_index += 1
        kept = [t for t in self.star_keep(trajs) if self.training_record(t) is not None]
        self.step_metrics["mrt/star_kept_frac"] = len(kept) / max(len(trajs), 1)
        self.step_metrics["env/success_rate"] = sum(t.success for t in trajs) / max(len(trajs), 1)
        if kept:
            records = [r for r in (self.training_record(t) for t in kept) if r is not None]
        else:  # nothing to imitate this step: a zero-weight batch keeps the loop's shape
            records = [r for r in (self.training_record(t) for t in trajs[:1]) if r is not None]
            records = [TokenRecord(r.token_ids, [0] * len(r.loss_mask), r.logprobs) for r in records]
        if not records:
            raise RuntimeError("no trajectory in the rollout batch has model tokens to train on")
        return split_micro(collate(records, self.pad_token_id), self.config.micro_batch_size)

    def compute_loss(self, micro: dict[str, torch.Tensor], totals: StepTotals) -> tuple[torch.Tensor, dict[str, float]]:
        if self.config.variant == "rl":
            return super().compute_loss(micro, totals)
        # STaR: the SFT trainer's token-level maximum likelihood on the kept traces.
        mask = micro["loss_mask"]
        out = token_logprobs(self.model, micro["input_ids"], micro["attention_mask"], mask)
        nll_sum = -(out["logprobs"] * mask).sum()
        loss = nll_sum / max(totals.tokens, 1.0)
        return loss, {"losses/nll": float(nll_sum.detach()) / max(float(mask.sum()), 1.0)}


def star_records(trainer: MRTTrainer, rollout_index: int = 0) -> list[TokenRecord]:
    """One rollout batch's STaR-filtered token records, for ``SFTTrainer(config, model, tok, records=...)``."""
    kept = trainer.star_keep(trainer.sample(rollout_index))
    return [r for r in (trainer.training_record(t) for t in kept) if r is not None]
