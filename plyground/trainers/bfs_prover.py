"""BFS-Prover expert iteration (ByteDance Seed 2025): filter, best-first search, SFT + DPO, repeat.

One round (every ``steps_per_round`` optimizer steps):

1. **filter**: each of the round's ``problems_per_round`` problems (env seeds) is attempted
   ``filter_samples`` times by the current policy; problems solved at least ``easy_threshold`` of
   the time are dropped (the model already knows them);
2. **search**: :func:`plyground.search.best_first` on the rest with the current policy as proposer
   (``width`` tactics per node, ``priority = cum_logprob / depth ** alpha``). All searches share one
   solved-state cache (:func:`~plyground.search.shared_solved_cache`: a Ray actor when Ray is up,
   in-process otherwise), so a state proved once (a subgoal) is closed by replay in every later
   search. With ``planner=True``, a theorem the search did not prove goes to V2's planner
   (:func:`plyground.search.prove_with_subgoals`): the policy itself, prompted as a planner, splits
   it into lemmas; ``provers`` parallel searches prove them (sharing the cache, and a lemma store
   kept across rounds), a search proves the theorem from them, ``coqc`` checks the assembled
   script, and the planner replans on failure (``max_plans``). Coq envs only (the task's statement
   is needed);
3. **data**: found proofs become SFT chats (:func:`plyground.search.sft_examples`), and along each
   proof the path tactic is preferred to every *erroring* sibling (:func:`plyground.search.bfs_pairs`);
   both accumulate over rounds;
4. **train**: ``loss = NLL(proofs) + dpo_coef * DPO(pairs)`` (the DPO reference: the round's starting
   policy). Every ``retrain_from_base_every`` rounds the weights (and optimizer) are reset to the base
   model and training restarts on everything accumulated (V2's periodic retraining).

Not done: V2's adaptive perplexity filter.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any

import torch

from plyground.trainers.core.data import messages_to_record, prompt_response_record
from plyground.trainers.core.logprobs import collate, token_logprobs
from plyground.trainers.core.loop import StepTotals, SyncWeights, TrainConfig, Trainer, hfield
from plyground.trainers.core.losses import dpo_loss
from plyground.types import SamplingParams, TokenRecord


@dataclass
class BFSProverConfig(TrainConfig):
    """Expert iteration with best-first search."""

    env_id: str = hfield("Prove-v0", "a proving env (or any env whose bad actions set valid_action=False)")
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "env constructor arguments"})
    problems_per_round: int = hfield(4, "problems (env seeds) per round")
    seed_pool: int | None = hfield(None, "draw the round's seeds from range(seed_pool) (None: fresh seeds)")
    reset_options: list[dict[str, Any]] = field(
        default_factory=list,
        metadata={"help": "the problem pool as reset options (e.g. {'task': id}); each round draws problems_per_round "
                          "of them without repeats (empty: problems are env seeds)"},
    )
    filter_samples: int = hfield(2, "policy attempts per problem in the easy filter (0: no filter)")
    easy_threshold: float = hfield(1.0, "drop problems solved at least this fraction of the filter attempts")
    width: int = hfield(4, "tactics sampled per expanded node")
    alpha: float = hfield(2.0, "priority depth exponent (depth_reward)")
    max_nodes: int = hfield(16, "node expansions per problem")
    max_tokens: int = hfield(32, "tokens per tactic")
    temperature: float = hfield(1.3, "proposal temperature (BFS-Prover: 1.3)")
    steps_per_round: int = hfield(4, "optimizer steps per round")
    batch_size: int = hfield(4, "SFT chats (and DPO pairs) per step")
    dpo_coef: float = hfield(1.0, "weight of the DPO loss (0: SFT only)")
    beta: float = hfield(0.1, "DPO temperature")
    retrain_from_base_every: int = hfield(0, "every N rounds reset to the base weights (0: never)")
    planner: bool = hfield(False, "plan lemmas with the policy for theorems the search did not prove (Coq)")
    max_plans: int = hfield(2, "planner: plans per theorem (the first and the replans)")
    max_subgoals: int = hfield(3, "planner: lemmas per plan")
    provers: int = hfield(2, "planner: lemma searches at once (threads, each with its own env)")
    planner_tokens: int = hfield(192, "planner: tokens per plan")
    lr: float = hfield(1e-4, "peak learning rate (AdamW)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.problems_per_round < 1 or self.steps_per_round < 1 or self.width < 1 or self.max_nodes < 1:
            raise ValueError("problems_per_round, steps_per_round, width, max_nodes must be >= 1")
        if self.max_plans < 1 or self.max_subgoals < 1 or self.provers < 1 or self.planner_tokens < 1:
            raise ValueError("max_plans, max_subgoals, provers and planner_tokens must be >= 1")
        if self.filter_samples < 0 or not 0 < self.easy_threshold <= 1 or self.retrain_from_base_every < 0:
            raise ValueError("filter_samples >= 0, easy_threshold in (0, 1], retrain_from_base_every >= 0")
        if self.batch_size < 1 or self.beta <= 0 or self.dpo_coef < 0:
            raise ValueError("batch_size >= 1, beta > 0, dpo_coef >= 0")


class BFSProverTrainer(Trainer):
    """Rounds of filter -> best-first search -> SFT + DPO (module docstring).

    Data parallel: process ``r`` of ``w`` filters and searches problems ``r, r + w, ...`` of each
    round and trains on the proofs and pairs it found (gradients are averaged as usual), so every
    process keeps and checkpoints its own data; its round metrics are those of its own problems.
    """

    config: BFSProverConfig
    per_rank_state = True

    def __init__(self, config: BFSProverConfig, model: Any = None, tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(config, model, tokenizer, **kwargs)
        from plyground.inference.hf import HFBackend
        from plyground.search import shared_solved_cache

        self.backend = HFBackend(model=self.base_model, tokenizer=self.tokenizer)
        self.on_update.append(SyncWeights(self.backend))
        self.base_state = copy.deepcopy(self.model.state_dict()) if config.retrain_from_base_every else None
        self.cache = shared_solved_cache()
        self.lemma_store: dict[str, list[str]] = {}  # lemma statement -> tactics, across rounds
        self.proofs: list[dict[str, Any]] = []  # SFT chats
        self.pairs: list[dict[str, Any]] = []  # DPO pairs with "ref": [chosen, rejected]
        self.round = 0
        self.rng = random.Random(config.seed + 1_000_003 * self.rank)
        self.round_metrics: dict[str, float] = {}
        self.searched: list[dict[str, Any]] = []  # per searched problem: round, seed, options, success

    # -- ALGO LOGIC: one round --------------------------------------------------------------------
    def round_seeds(self, round_index: int) -> list[int]:
        c = self.config
        if c.seed_pool:
            return random.Random(c.seed * 7 + round_index).sample(range(c.seed_pool), min(c.problems_per_round, c.seed_pool))
        return [c.seed * 1_000_003 + round_index * c.problems_per_round + i for i in range(c.problems_per_round)]

    def round_problems(self, round_index: int) -> list[tuple[int, dict[str, Any] | None]]:
        """The round's problems as ``(seed, reset options)``: drawn from ``reset_options`` when
        given (each problem once, so a round neither repeats nor skips by chance), else seeds."""
        c = self.config
        if c.reset_options:
            rng = random.Random(c.seed * 7 + round_index)
            idx = rng.sample(range(len(c.reset_options)), min(c.problems_per_round, len(c.reset_options)))
            return [(c.seed * 1_000_003 + i, dict(c.reset_options[i])) for i in sorted(idx)]
        return [(s, None) for s in self.round_seeds(round_index)]

    def solve_rates(self, seeds: list[int], options: list[dict[str, Any] | None] | None = None) -> list[float]:
        """Fraction of ``filter_samples`` sampled episodes of each seed (with its reset options)
        that succeed."""
        import plyground
        from plyground.rollout.collector import EpisodeSpec, RolloutConfig, collect_sync

        c = self.config
        if c.filter_samples == 0:
            return [0.0] * len(seeds)
        opts = options if options is not None else [None] * len(seeds)
        specs = [EpisodeSpec(seed=s, episode=i, sample=j, options=dict(o) if o else None)
                 for i, (s, o) in enumerate(zip(seeds, opts, strict=True)) for j in range(c.filter_samples)]
        sampling = SamplingParams(max_tokens=c.max_tokens, temperature=1.0, seed=(c.seed * 31 + self._shard()) % 2**31)
        trajs = collect_sync(lambda: plyground.make(c.env_id, **c.env_kwargs), self.backend, specs,
                             RolloutConfig(sampling=sampling, concurrency=4))
        wins = [0] * len(seeds)
        for t in trajs:
            wins[int(t.metadata.get("episode", 0))] += int(t.success)
        return [w / c.filter_samples for w in wins]

    def run_round(self) -> dict[str, float]:
        import plyground
        from plyground.search import BestFirstConfig, Proposer, best_first, bfs_pairs, sft_examples

        c = self.config
        self.model.eval()
        problems = self.round_problems(self.round)[self.rank :: self.world_size]
        seeds = [s for s, _ in problems]
        rates = self.solve_rates(seeds, [o for _, o in problems])
        hard = [p for p, r in zip(problems, rates, strict=True) if r < c.easy_threshold]
        proposer = Proposer(self.backend, SamplingParams(max_tokens=c.max_tokens, temperature=c.temperature,
                                                         seed=(c.seed * 131 + self._shard()) % 2**31))
        bcfg = BestFirstConfig(width=c.width, alpha=c.alpha, max_nodes=c.max_nodes, time_limit_s=None)
        found, new_pairs = 0, []
        planned_tried = planned_found = 0
        for s, opts in hard:
            extra = {"options": opts} if opts is not None else {}
            result = best_first(lambda: plyground.make(c.env_id, **c.env_kwargs), proposer, bcfg, self.cache,
                                seed=s, env_id=c.env_id, **extra)
            found += int(result.success)
            self.searched.append({"round": self.round, "seed": s, "options": opts, "success": bool(result.success)})
            self.proofs += sft_examples(result)
            new_pairs += bfs_pairs(result)
            if c.planner and not result.success:
                planned = self.plan_and_prove(s, opts, proposer, bcfg)
                if planned is not None:
                    planned_tried += 1
                    planned_found += int(planned.success)
                    found += int(planned.success)
                    self.searched[-1]["planned"] = bool(planned.success)
                    for search in planned.searches:
                        self.proofs += sft_examples(search)
                        new_pairs += bfs_pairs(search)
        if new_pairs:
            refs = self._pair_sums(new_pairs)
            for p, r in zip(new_pairs, refs.tolist(), strict=True):
                self.pairs.append({**p, "ref": r})
        self.round += 1
        if c.retrain_from_base_every and self.round % c.retrain_from_base_every == 0 and self.base_state is not None:
            self.model.load_state_dict(self.base_state)
            self.optimizer.state.clear()
        return {
            "env/filter_solve_rate": sum(rates) / max(len(rates), 1),
            "env/dropped_easy": float(len(seeds) - len(hard)),
            "env/search_success": found / max(len(hard), 1),
            "charts/proofs": float(len(self.proofs)),
            "charts/pairs": float(len(self.pairs)),
            "charts/cache_size": float(len(self.cache)),
            "charts/round": float(self.round),
            **({"env/planned_success": planned_found / max(planned_tried, 1), "charts/lemmas": float(len(self.lemma_store))}
               if c.planner else {}),
        }

    def _shard(self) -> int:
        """This process's share of the round, for sampling seeds (the round itself on one process)."""
        return self.round * self.world_size + self.rank

    def plan_and_prove(self, seed: int, options: dict[str, Any] | None, proposer: Any, search_config: Any) -> Any:
        """V2's planner on the problem ``(seed, options)`` with the policy as planner and prover;
        ``None`` when the env has no Coq task to plan for (see :func:`plyground.search.prove_with_subgoals`)."""
        import dataclasses

        import plyground
        from plyground.search import LLMPlanner, PlannerConfig, SubgoalProver, prove_with_subgoals
        from plyground.types import Task

        c = self.config
        probe = plyground.make(c.env_id, **c.env_kwargs)
        try:
            probe.reset(seed=seed, options=options)
            task = getattr(probe.unwrapped, "task", None)
        finally:
            probe.close()
        if not isinstance(task, Task) or not task.prompt.lstrip().startswith(("Theorem", "Lemma", "Example", "Fact")):
            return None
        planner = LLMPlanner(self.backend, SamplingParams(max_tokens=c.planner_tokens, temperature=0.7,
                                                          seed=(c.seed * 977 + self.round * 131 + seed) % 2**31),
                             max_subgoals=c.max_subgoals)
        config = PlannerConfig(max_plans=c.max_plans, max_subgoals=c.max_subgoals, provers=c.provers, direct_first=False,
                               search=dataclasses.replace(search_config))
        with SubgoalProver(lambda: plyground.make(c.env_id, **c.env_kwargs), proposer, config, cache=self.cache) as prover:
            return prove_with_subgoals(task, planner, prover, self.lemma_store)

    def _pair_records(self, pairs: list[dict[str, Any]]) -> list[TokenRecord]:
        return [prompt_response_record(self.tokenizer, p["prompt"], p[k]) for p in pairs for k in ("chosen", "rejected")]

    @torch.no_grad()
    def _pair_sums(self, pairs: list[dict[str, Any]]) -> torch.Tensor:
        b = collate(self._pair_records(pairs), self.pad_token_id)
        return self._sums(b).reshape(-1, 2).cpu()

    def _sums(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, am, lm = (b[k].to(self.device) for k in ("input_ids", "attention_mask", "loss_mask"))
        return (token_logprobs(self.model, ids, am, lm)["logprobs"] * lm).sum(-1)

    # -- the loop's two methods ---------------------------------------------------------------------
    def make_step_batch(self) -> list[dict[str, torch.Tensor]]:
        c = self.config
        if self.step % c.steps_per_round == 0 or not self.round_metrics:
            self.round_metrics = self.run_round()
        self.step_metrics.update(self.round_metrics)
        out: list[dict[str, torch.Tensor]] = []
        if self.proofs:
            picked = [self.proofs[self.rng.randrange(len(self.proofs))] for _ in range(c.batch_size)]
            sft = collate([messages_to_record(self.tokenizer, p["messages"]) for p in picked], self.pad_token_id)
            sft["kind"] = torch.zeros(sft["input_ids"].shape[0])
            out.append(sft)
        if self.pairs and c.dpo_coef > 0:
            picked = [self.pairs[self.rng.randrange(len(self.pairs))] for _ in range(c.batch_size)]
            dpo = collate(self._pair_records(picked), self.pad_token_id)
            dpo["ref"] = torch.tensor([p["ref"] for p in picked], dtype=torch.float32).repeat_interleave(2, dim=0)
            dpo["kind"] = torch.ones(dpo["input_ids"].shape[0])
            out.append(dpo)
        if not out:  # nothing found yet: a zero-weight batch keeps the loop's bookkeeping simple
            dummy = prompt_response_record(self.tokenizer, [{"role": "user", "content": "."}], ".")
            empty = collate([dummy], self.pad_token_id)
            empty["kind"] = torch.full((1,), -1.0)
            out.append(empty)
        return out

    def compute_loss(self, micro: dict[str, torch.Tensor], totals: StepTotals) -> tuple[torch.Tensor, dict[str, float]]:
        kind = int(micro["kind"][0])
        sums = self._sums(micro)
        if kind == 0:
            tokens = micro["loss_mask"].sum().clamp(min=1.0)
            loss = -sums.sum() / tokens
            return loss, {"losses/sft_nll": float(loss.detach())}
        if kind == 1:
            s, ref = sums.reshape(-1, 2), micro["ref"].reshape(-1, 2, 2)[:, 0, :]
            loss, cr, rr = dpo_loss(s[:, 0], s[:, 1], ref[:, 0], ref[:, 1], self.config.beta)
            return self.config.dpo_coef * loss.mean(), {
                "losses/dpo": float(loss.detach().mean()), "charts/dpo_margin": float((cr - rr).mean()),
            }
        return sums.sum() * 0.0, {}

    def trainer_state(self) -> dict[str, Any]:
        return {
            "proofs": self.proofs, "pairs": self.pairs, "round": self.round, "rng": self.rng.getstate(),
            "round_metrics": self.round_metrics, "cache": dict(self.cache.items()), "base_state": self.base_state,
            "lemma_store": self.lemma_store, "searched": self.searched,
        }

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        self.proofs, self.pairs, self.round = list(state["proofs"]), list(state["pairs"]), int(state["round"])
        self.rng.setstate(state["rng"])
        self.round_metrics = dict(state["round_metrics"])
        for key, actions in state["cache"].items():
            self.cache.put(key, tuple(actions))
        self.base_state = state["base_state"]
        self.lemma_store = dict(state.get("lemma_store", {}))
        self.searched = list(state.get("searched", []))
