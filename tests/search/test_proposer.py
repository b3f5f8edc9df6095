"""Proposers and the self-critic: one batched call per frontier, dedupe, logprobs, parsing."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pytest
from chain_env import ChainEnv

from plyground.envs import make
from plyground.inference.scripted import ScriptedBackend
from plyground.search import MCTSConfig, Node, Proposer, RandomProposer, SelfCritic, mcts, parse_choice
from plyground.search.tree import root_node
from plyground.types import Chat, Completion, SamplingParams


class ListBackend:
    """Answers every chat with the same n replies, each with fixed token logprobs."""

    name = "list"

    def __init__(self, replies: list[tuple[str, list[float]]]) -> None:
        self.replies = replies
        self.calls: list[tuple[int, int]] = []

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        self.calls.append((len(chats), params.n))
        return [
            [Completion(t, list(range(len(lp))), lp, [1, 2]) for t, lp in (self.replies * params.n)[: params.n]]
            for _ in chats
        ]

    async def agenerate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        return self.generate(chats, params)

    def close(self) -> None:
        pass


def nodes(n: int) -> list[Node]:
    env = ChainEnv()
    return [root_node(env, seed=i) for i in range(n)]


def test_proposer_batches_the_frontier_and_dedupes() -> None:
    backend = ListBackend(
        [("Action: a", [-1.0, -1.0]), ("I say <action>a</action>", [-0.5, -0.1]), ("b", [-2.0]), ("  c ", [])]
    )
    proposer = Proposer(backend)
    proposer.prepare(ChainEnv())
    out = proposer.propose(nodes(3), k=4)
    assert backend.calls == [(3, 4)]  # ONE call, 3 chats, n = K
    assert proposer.calls == 1 and proposer.prompts == 3 and proposer.generations == 12
    props = {p.action: p for p in out[0]}
    assert set(props) == {"a", "b", "c"}
    assert props["a"].count == 2 and props["a"].logprob == pytest.approx(-0.3)  # the better of the two
    assert props["a"].reply == "I say <action>a</action>"
    assert props["b"].logprob == pytest.approx(-2.0) and props["c"].logprob == 0.0  # no logprobs: 0
    assert proposer.tokens == 3 * (2 + 2 + 1 + 0 + 4 * 2)
    assert proposer.instructions == ChainEnv().instructions


def test_random_proposer_action_spaces() -> None:
    maze = make("Maze-v0")
    proposer = RandomProposer(seed=0)
    proposer.prepare(maze)
    [props] = proposer.propose([root_node(maze, seed=0)], k=4)
    assert sorted(p.action for p in props) == sorted(["move up", "move down", "move left", "move right"])
    guess = make("GuessNumber-v0")
    proposer.prepare(guess)
    [props] = proposer.propose([root_node(guess, seed=0)], k=5)
    assert len(props) == 5 and all(1 <= int(p.action) <= 100 for p in props)
    bare = Node(None, "obs")
    proposer.prepare(ChainEnv())
    with pytest.raises(ValueError, match="admissible_actions"):
        proposer.propose([bare], k=2)
    assert RandomProposer(actions=["x", "y"]).propose([bare], k=5)[0][0].action in ("x", "y")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Best: 2", 1),
        ("best action is #3.", 2),
        ("I would go with 2, not 1", 1),
        ("Option 9 is out of range; 1 it is", 0),
        ("definitely move left here", 2),
        ("no idea", None),
        ("3.5", None),
    ],
)
def test_parse_choice(text: str, expected: int | None) -> None:
    assert parse_choice(text, ["move up", "move down", "move left"]) == expected


def pick_b(chat: Chat) -> str:
    """A critic policy: the option that is 'b', else whatever comes first."""
    options = re.findall(r"^(\d+)\. (.*)$", chat[-1].content, re.MULTILINE)
    for num, text in options:
        if text == "b":
            return f"Best: {num}"
    return "hmm"  # unparsable: the critic falls back on the highest log-probability


def test_self_critic_ranks_by_repeated_picks() -> None:
    backend = ScriptedBackend(pick_b)
    critic = SelfCritic(backend)
    critic.prepare(ChainEnv())
    from plyground.search.proposer import Proposal

    props = [[Proposal("a", "a", -1.0), Proposal("b", "b", -3.0), Proposal("c", "c", -0.5)], [Proposal("a", "a")]]
    scores = critic.score(nodes(2), props)
    assert scores[0] == [0.0, 1.0, 0.5]  # b first, then c (higher logprob), then a
    assert scores[1] == [1.0]
    assert backend.calls == 2 and critic.prompts == 2  # K - 1 rounds, the single node needs none
    assert critic.parse_failures == 1 == critic.usage()["failures"]


def test_mcts_with_self_critique_mixes_values() -> None:
    critic = SelfCritic(ScriptedBackend(pick_b))
    cfg = MCTSConfig(simulations=30, k=3, rollout="none", alpha=0.5, stop_on_success=False)
    result = mcts(ChainEnv(target="bbb"), RandomProposer(seed=0, actions=["a", "b", "c"]), cfg, critic=critic, seed=0)
    assert result.success and result.stats.critic_calls > 0
    assert result.stats.critic_failures == critic.parse_failures > 0  # each search's "hmm" replies
    assert result.stats.llm_calls == result.stats.nodes_expanded + critic.calls
    root = result.root
    assert root is not None
    for node in root.walk():
        if node.parent is not None:
            assert node.critic is not None and 0.0 <= node.critic <= 1.0
            assert 0.0 <= node.q(0.5) <= 1.0
    assert root.children["b"].critic == 1.0


# -- the noisy expert --------------------------------------------------------------------------
def test_noisy_expert_mixes_the_expert_with_random_candidates() -> None:
    from plyground.search import NoisyExpertProposer

    env = ChainEnv()
    root = root_node(env, 0)
    asked: list[Node] = []

    def expert(node: Node) -> str:
        asked.append(node)
        return "b"

    always = NoisyExpertProposer(expert, 1.0, seed=0)
    always.prepare(env)
    (props,) = always.propose([root], 4)
    assert [(p.action, p.count, p.logprob) for p in props] == [("b", 4, 0.0)] and asked == [root]
    # p = 0.5 over 4 candidates: "b" is drawn with probability 0.5 + 0.5 / 4, the others 0.125 each,
    # and each proposal carries that probability as its log-probability.
    half = NoisyExpertProposer(expert, 0.5, seed=1)
    half.prepare(env)
    counts: dict[str, int] = {}
    for _ in range(400):
        for p in half.propose([root], 4)[0]:
            counts[p.action] = counts.get(p.action, 0) + p.count
            assert p.logprob == pytest.approx(math.log(0.625 if p.action == "b" else 0.125))
    assert set(counts) == {"a", "b", "c", "wait"}
    assert counts["b"] / 1600 == pytest.approx(0.625, abs=0.04)
    assert half.calls == 400 and half.generations == 1600
    # rewrite maps what was drawn to what is sent.
    loud = NoisyExpertProposer(expert, 1.0, seed=0, rewrite=lambda node, a: a.upper())
    loud.prepare(env)
    assert [p.action for p in loud.propose([root], 2)[0]] == ["B"]
    with pytest.raises(ValueError, match="p_expert"):
        NoisyExpertProposer(expert, 1.5)


def test_budget_curve_uses_the_options_of_each_seed() -> None:
    from plyground.envs.guess_number import BisectionPolicy
    from plyground.search import NoisyExpertProposer
    from plyground.search.evaluate import budget_curve

    def bisect(node: Node) -> str:
        policy, action = BisectionPolicy(100), ""
        for n in node.path():
            action = policy.act(n.observation)
        return action

    seen = []
    points = budget_curve(
        lambda: make("GuessNumber-v0"), ["bfs", "best-of-n"], [8], range(3),
        lambda s: NoisyExpertProposer(bisect, 1.0, s), options=lambda s: {"target": 7}, progress=seen.append,
    )  # fmt: skip
    # The target is 7 whatever the seed: binary search guesses 50, 25, 12, 6, 9, 7.
    assert [(p.algo, p.success_rate, p.mean_proposer_calls) for p in points] == [("bfs", 1.0, 6.0), ("best-of-n", 1.0, 6.0)]
    assert seen == points
