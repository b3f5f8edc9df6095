"""Agent Q (Putta et al. 2024): guided MCTS with self-critique, then step-level DPO, iterated.

One iteration (every ``steps_per_iteration`` optimizer steps):

1. **search**: :func:`plyground.search.mcts` on ``episodes_per_iteration`` env seeds, proposing
   ``k`` actions per node with the *current* policy (an ``HFBackend`` sharing the trained model)
   and, with ``self_critique``, ranking them with the same model (``Q = alpha Q_mcts + (1-alpha) Qhat``);
2. **pairs**: :func:`plyground.search.agentq_pairs`: sibling actions whose Q differ by at least
   ``theta`` (replies are mapped to actions by ``action_parser``: with ``env``, replies that make the
   same env move are one action, so no pair sets two spellings of one move against each other);
3. **DPO**: ``steps_per_iteration`` steps of sigmoid DPO on those pairs. The reference is the policy
   that proposed them (``reference="policy"``: their log-probabilities under the iteration's starting
   weights, computed once; i.e. ``ref <- pi_i``), or the log-probabilities stored at sampling time
   (``reference="behaviour"``, the off-policy variant; needs a backend that returns logprobs).

The improved policy proposes in the next iteration. Iterations without any pair skip the update
(zero loss) and are counted in ``charts/pairs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from plyground.trainers.core.data import prompt_response_record
from plyground.trainers.core.loop import EpochSampler, StepTotals, SyncWeights, TrainConfig, Trainer, hfield
from plyground.trainers.core.losses import dpo_loss
from plyground.trainers.dpo import DPOTrainer
from plyground.types import SamplingParams


@dataclass
class AgentQConfig(TrainConfig):
    """Iterated MCTS + step-level DPO."""

    env_id: str = hfield("GuessNumber-v0", "a small deterministic multi-turn env")
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "env constructor arguments"})
    episodes_per_iteration: int = hfield(4, "env seeds searched per iteration")
    reset_options: list[dict[str, Any]] = field(
        default_factory=list,
        metadata={"help": "reset options of the searched episodes, cycled (e.g. every start cell); empty: the env's own draw"},
    )
    steps_per_iteration: int = hfield(4, "DPO optimizer steps per iteration")
    simulations: int = hfield(16, "MCTS simulations per episode")
    k: int = hfield(4, "actions sampled per expansion")
    c_exp: float = hfield(1.0, "UCT exploration constant")
    mcts_alpha: float = hfield(0.5, "Q = alpha Q_mcts + (1 - alpha) Qhat (with self_critique)")
    self_critique: bool = hfield(False, "rank proposals with the same model (Agent Q's self-critique)")
    mcts_rollout: Literal["policy", "random", "none"] = hfield("policy", "MCTS leaf evaluation")
    rollout_depth: int = hfield(10, "most steps of an MCTS rollout")
    mcts_parallel: int = hfield(1, "MCTS paths selected (with virtual loss) and expanded/rolled out in one batched call")
    mcts_gamma: float = hfield(1.0, "MCTS discount per step (< 1: of two successful moves, the shorter path has the higher Q)")
    action_parser: Literal["auto", "text", "env"] = hfield(
        "auto",
        "how a reply becomes a tree action: env (the env's parse(), so replies that make the same move are "
        "one child), text (the reply, or its tagged action), or auto (env where the env has parse(), else text)",
    )
    max_tokens: int = hfield(16, "tokens per proposed action")
    temperature: float = hfield(1.0, "proposal temperature")
    theta: float = hfield(0.1, "least Q gap for a preference pair")
    beta: float = hfield(0.1, "DPO temperature")
    label_smoothing: float = hfield(0.0, "conservative DPO")
    nll_coef: float = hfield(0.0, "weight of the chosen replies' per-token NLL added to DPO (RPO; 0: plain DPO)")
    pair_min_visits: int = hfield(1, "least visits of both siblings of a pair (more: Q from more than one rollout)")
    reference: Literal["policy", "behaviour"] = hfield(
        "policy", "policy: logprobs under the iteration's starting weights; behaviour: stored sampling logprobs"
    )
    batch_size: int = hfield(8, "pairs per optimizer step")
    lr: float = hfield(1e-4, "peak learning rate (AdamW)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.episodes_per_iteration < 1 or self.steps_per_iteration < 1 or self.simulations < 1 or self.k < 2:
            raise ValueError("episodes_per_iteration, steps_per_iteration, simulations >= 1 and k >= 2")
        if self.nll_coef < 0 or self.pair_min_visits < 1:
            raise ValueError("nll_coef must be >= 0 and pair_min_visits >= 1")
        if self.mcts_parallel < 1:
            raise ValueError(f"mcts_parallel must be >= 1, got {self.mcts_parallel}")
        if not 0 < self.mcts_gamma <= 1:
            raise ValueError(f"mcts_gamma must be in (0, 1], got {self.mcts_gamma}")
        if self.beta <= 0 or self.theta < 0:
            raise ValueError("beta must be > 0 and theta >= 0")
        if self.action_parser not in ("auto", "text", "env"):
            raise ValueError(f"action_parser must be auto, text or env, got {self.action_parser!r}")
        if self.reference not in ("policy", "behaviour"):
            raise ValueError(f"reference must be policy or behaviour, got {self.reference!r}")
        if self.batch_size < 1 or self.batch_size % self.micro_batch_size:
            raise ValueError("batch_size must be a positive multiple of micro_batch_size")


class AgentQTrainer(DPOTrainer):
    """MCTS -> pairs -> DPO, with the pairs refreshed every ``steps_per_iteration`` steps."""

    config: AgentQConfig  # type: ignore[assignment]
    # Data parallel: each process searches its own share of the episodes and keeps its own pairs.
    per_rank_state = True

    def __init__(self, config: AgentQConfig, model: Any = None, tokenizer: Any = None, **kwargs: Any) -> None:
        Trainer.__init__(self, config, model, tokenizer, **kwargs)
        from plyground.inference.hf import HFBackend

        self.backend = HFBackend(model=self.base_model, tokenizer=self.tokenizer)
        self.on_update.append(SyncWeights(self.backend))
        self.pairs: list[dict[str, Any]] = []
        self._reply_parser: Any = None  # action_parser(), built on first use
        self.chosen, self.rejected = [], []
        self.ref = torch.zeros(0, 2)
        self.sampler = EpochSampler(1, seed=config.seed)
        self.iteration = 0
        self.search_metrics: dict[str, float] = {}

    # -- ALGO LOGIC: one search iteration ----------------------------------------------------------
    def search(self, iteration: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """MCTS on this iteration's env seeds with the current policy; its pairs and metrics."""
        import plyground
        from plyground.search import MCTSConfig, PairConfig, Proposer, SelfCritic, agentq_pairs, mcts

        c = self.config
        self.model.eval()
        sampling = SamplingParams(
            max_tokens=c.max_tokens, temperature=c.temperature,
            seed=(c.seed * 7919 + iteration * self.world_size + self.rank) % 2**31,
        )
        proposer = Proposer(self.backend, sampling, action_parser=self.action_parser())
        critic = SelfCritic(self.backend) if c.self_critique else None
        mcfg = MCTSConfig(
            simulations=c.simulations, k=c.k, c_exp=c.c_exp, alpha=c.mcts_alpha,
            rollout=c.mcts_rollout, rollout_depth=c.rollout_depth, gamma=c.mcts_gamma, stop_on_success=False,
            seed=c.seed + iteration * self.world_size + self.rank,
            parallel=c.mcts_parallel,
        )
        pairs: list[dict[str, Any]] = []
        solved = searched = 0
        # Data parallel: process r of w searches episodes r, r + w, ... and trains on its own pairs.
        for i in range(self.rank, c.episodes_per_iteration, self.world_size):
            searched += 1
            seed = c.seed * 1_000_003 + iteration * c.episodes_per_iteration + i
            # Explicit reset options let an iteration search chosen start states (every start cell
            # of a maze, say) instead of whatever the seeds happen to draw.
            extra = {"options": dict(c.reset_options[i % len(c.reset_options)])} if c.reset_options else {}
            result = mcts(
                lambda: plyground.make(c.env_id, **c.env_kwargs), proposer, mcfg, critic, seed=seed, env_id=c.env_id,
                **extra,
            )
            solved += int(result.success)
            pairs += agentq_pairs(result, PairConfig(theta=c.theta, min_visits=c.pair_min_visits, alpha=c.mcts_alpha if critic else 1.0))
        return pairs, {"env/search_success": solved / max(searched, 1), "charts/pairs": float(len(pairs))}

    def action_parser(self) -> Any:
        """The reply -> tree action map. ``env``: the env's ``parse`` (Maze's finds the move in a
        reply), so that "move up" and "move up, then up" are one child rather than two siblings
        whose Q differ by rollout noise alone (every pair between them would be a coin flip);
        replies the env cannot parse keep their text action. ``auto`` is ``env`` for envs with a
        ``parse`` and ``text`` for the rest. Built once per trainer (``env``/``auto`` make a probe env)."""
        if self._reply_parser is None:
            self._reply_parser = self._build_action_parser()
        return self._reply_parser

    def _build_action_parser(self) -> Any:
        from plyground.rollout.agent import parse_action

        if self.config.action_parser == "text":
            return parse_action
        import plyground

        probe = plyground.make(self.config.env_id, **self.config.env_kwargs)
        env_parse = getattr(probe, "parse", None)
        probe.close()
        if not callable(env_parse):
            if self.config.action_parser == "auto":
                return parse_action
            raise ValueError(f"action_parser=env: {self.config.env_id} has no parse(reply) method")

        def parse(text: str) -> str:
            action = env_parse(text)
            return str(action) if action is not None else parse_action(text)

        return parse

    def load_iteration_pairs(self, pairs: list[dict[str, Any]]) -> None:
        self.pairs = pairs
        self.chosen = [prompt_response_record(self.tokenizer, p["prompt"], p["chosen"]) for p in pairs]
        self.rejected = [prompt_response_record(self.tokenizer, p["prompt"], p["rejected"]) for p in pairs]
        if not pairs:
            self.ref = torch.zeros(0, 2)
        elif self.config.reference == "behaviour":
            rows = [(p["meta"].get("chosen_logprob_sum"), p["meta"].get("rejected_logprob_sum")) for p in pairs]
            if any(a is None or b is None for a, b in rows):
                raise ValueError("reference=behaviour needs stored logprob sums; use reference=policy")
            self.ref = torch.tensor(rows, dtype=torch.float32)
        else:
            self.ref = self._reference_sums()  # the iteration's starting policy = the proposer
        self.sampler = EpochSampler(max(len(pairs), 1), seed=self.config.seed + self.iteration + 1_000_003 * self.rank)

    def make_step_batch(self) -> list[dict[str, torch.Tensor]]:
        c = self.config
        if self.step % c.steps_per_iteration == 0 or not self.search_metrics:
            pairs, self.search_metrics = self.search(self.iteration)
            self.load_iteration_pairs(pairs)
            self.iteration += 1
        self.step_metrics.update(self.search_metrics)
        if not self.pairs:  # nothing to learn this iteration: an all-zero "batch" of one dummy pair
            dummy = prompt_response_record(self.tokenizer, [{"role": "user", "content": "."}], ".")
            self.chosen, self.rejected, self.ref = [dummy], [dummy], torch.zeros(1, 2)
            batch = self._batch([0])
            batch["ref"] = self.ref[[0]]
            batch["weight"] = torch.zeros(1)
            return [batch]
        return super().make_step_batch()

    def compute_loss(self, micro: dict[str, torch.Tensor], totals: StepTotals) -> tuple[torch.Tensor, dict[str, float]]:
        sums = self._sums(micro)
        ref = micro["ref"].to(sums.device)
        per_pair, chosen_r, rejected_r = dpo_loss(
            sums[:, 0], sums[:, 1], ref[:, 0], ref[:, 1], self.config.beta, self.config.label_smoothing
        )
        loss = per_pair.sum() / totals.sequences
        margin = chosen_r - rejected_r
        metrics = {
            "losses/dpo": float(per_pair.detach().mean()),
            "charts/reward_chosen": float(chosen_r.mean()),
            "charts/reward_rejected": float(rejected_r.mean()),
            "charts/margin": float(margin.mean()),
            "charts/accuracy": float((margin > 0).float().mean()),
        }
        if self.config.nll_coef > 0:
            # DPO alone can lower the chosen reply's likelihood too (both fall, the rejected faster),
            # which moves greedy choices to a third reply; the NLL term holds the chosen one up.
            tokens = micro["loss_mask"][:, 0].to(sums.device).sum(-1).clamp(min=1.0)
            nll = -(sums[:, 0] / tokens)
            loss = loss + self.config.nll_coef * nll.sum() / totals.sequences
            metrics["losses/chosen_nll"] = float(nll.detach().mean())
        if "weight" in micro:
            loss = loss * 0.0
        return loss, metrics

    def trainer_state(self) -> dict[str, Any]:
        return {
            "sampler": self.sampler.state_dict(), "ref": self.ref, "pairs": self.pairs,
            "iteration": self.iteration, "search_metrics": self.search_metrics,
        }

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        self.iteration = int(state["iteration"])
        self.search_metrics = dict(state["search_metrics"])
        pairs = list(state["pairs"])
        self.pairs = pairs
        self.chosen = [prompt_response_record(self.tokenizer, p["prompt"], p["chosen"]) for p in pairs]
        self.rejected = [prompt_response_record(self.tokenizer, p["prompt"], p["rejected"]) for p in pairs]
        self.ref = state["ref"]
        self.sampler = EpochSampler(max(len(pairs), 1), seed=self.config.seed + self.iteration - 1 + 1_000_003 * self.rank)
        self.sampler.load_state_dict(state["sampler"])
