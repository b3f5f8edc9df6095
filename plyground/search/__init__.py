"""Search over TextEnvs: MCTS (Agent Q), best-first (BFS-Prover), beam and best-of-N; search-budget
evaluation; critics for MCTS (self-critique, or a value model such as ArCHer's trained critic);
training data (preference pairs, SFT paths) from search trees; the subgoal planner of BFS-Prover V2
(plan lemmas, prove them in parallel with a shared cache, replan)."""

from plyground.search.baselines import BeamConfig, BestOfNConfig, beam_search, best_of_n
from plyground.search.best_first import BestFirstConfig, SolvedCache, SolvedStates, best_first, priority
from plyground.search.critics import Critic, ValueCritic, load_archer_critic
from plyground.search.mcts import MCTSConfig, mcts
from plyground.search.pairs import PairConfig, agentq_pairs, bfs_pairs, sft_examples, write_records
from plyground.search.proposer import (
    NoisyExpertProposer,
    Proposal,
    Proposer,
    RandomProposer,
    SelfCritic,
    parse_choice,
)
from plyground.search.ray_cache import RaySolvedCache, SearchWorker, shared_solved_cache
from plyground.search.subgoals import (
    LLMPlanner,
    PlannedProof,
    PlannerConfig,
    SubgoalProver,
    prove_with_subgoals,
)
from plyground.search.tree import Node, SearchResult, SearchStats, step_child

__all__ = [
    "BeamConfig",
    "BestFirstConfig",
    "BestOfNConfig",
    "Critic",
    "LLMPlanner",
    "MCTSConfig",
    "Node",
    "NoisyExpertProposer",
    "PairConfig",
    "PlannedProof",
    "PlannerConfig",
    "Proposal",
    "Proposer",
    "RandomProposer",
    "RaySolvedCache",
    "SearchResult",
    "SearchStats",
    "SearchWorker",
    "SelfCritic",
    "SolvedCache",
    "SolvedStates",
    "SubgoalProver",
    "ValueCritic",
    "agentq_pairs",
    "beam_search",
    "best_first",
    "best_of_n",
    "bfs_pairs",
    "load_archer_critic",
    "mcts",
    "parse_choice",
    "priority",
    "prove_with_subgoals",
    "sft_examples",
    "shared_solved_cache",
    "step_child",
    "write_records",
]
