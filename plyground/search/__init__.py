"""Search over TextEnvs: MCTS (Agent Q), best-first (BFS-Prover), beam and best-of-N; search-budget
evaluation; training data (preference pairs, SFT paths) from search trees."""

from plyground.search.baselines import BeamConfig, BestOfNConfig, beam_search, best_of_n
from plyground.search.best_first import BestFirstConfig, SolvedCache, best_first, priority
from plyground.search.mcts import MCTSConfig, mcts
from plyground.search.pairs import PairConfig, agentq_pairs, bfs_pairs, sft_examples, write_records
from plyground.search.proposer import Proposal, Proposer, RandomProposer, SelfCritic, parse_choice
from plyground.search.tree import Node, SearchResult, SearchStats, step_child

__all__ = [
    "BeamConfig",
    "BestFirstConfig",
    "BestOfNConfig",
    "MCTSConfig",
    "Node",
    "PairConfig",
    "Proposal",
    "Proposer",
    "RandomProposer",
    "SearchResult",
    "SearchStats",
    "SelfCritic",
    "SolvedCache",
    "agentq_pairs",
    "beam_search",
    "best_first",
    "best_of_n",
    "bfs_pairs",
    "mcts",
    "parse_choice",
    "priority",
    "sft_examples",
    "step_child",
    "write_records",
]
