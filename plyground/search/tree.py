"""The search tree shared by every algorithm in ``plyground.search``.

A ``Node`` is one env state reached by a path of actions from the root. It holds the env
``snapshot()`` (so a search can ``restore()`` it and try another action), the observation, the
turn that led to it, and the statistics the algorithms keep:

- MCTS: ``visits`` is ``N(h, a)`` for the edge parent -> node, ``value_sum / visits`` is
  ``Q_mcts(h, a)``, ``critic`` is the critic's value ``Qhat(h, a)`` (``search.critics``), ``prior``
  the PUCT prior and ``virtual_loss`` the pending visits of parallel simulations. The node's own
  ``N(h)`` is the sum of its children's visits (``Node.child_visits``).
- Best-first: ``logprob`` (the mean token log-probability of the action that led here),
  ``cum_logprob`` (their sum along the path) and ``status`` (``open`` / ``proved`` / ``failed``).

Env access goes through :func:`step_child`: restore the parent's snapshot, step one action and
wrap the result as a child. It never raises: an env that raises, or an action the env flags with
``info["valid_action"] = False``, gives an ``error`` child that is failed and never expanded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from plyground.envs.core import TextEnv
from plyground.rollout.agent import build_chat, parse_action
from plyground.types import Chat, Completion, JsonRecord, Trajectory, Turn

NodeStatus = Literal["open", "proved", "failed"]
EnvOrFactory = TextEnv | Callable[[], TextEnv]

__all__ = [
    "EnvOrFactory",
    "Node",
    "NodeStatus",
    "SearchResult",
    "SearchStats",
    "jsonable_info",
    "make_env",
    "mark_failed",
    "mark_proved",
    "node_chat",
    "parse_action",
    "settle",
    "state_key",
    "step_child",
]


@dataclass(eq=False)
class Node:
    """One state in a search tree (see the module docstring for what each algorithm uses)."""

    state: Any
    observation: str
    info: dict[str, Any] = field(default_factory=dict, repr=False)
    parent: Node | None = field(default=None, repr=False)
    action: str | None = None
    reply: str = ""
    """The model's reply, verbatim, that produced ``action`` (the text DPO/SFT train on)."""
    turn: Turn | None = field(default=None, repr=False)
    """The step parent -> node: the parent's observation, the action, its reward and info."""
    depth: int = 0
    key: str = ""
    children: dict[str, Node] = field(default_factory=dict, repr=False)
    # -- MCTS statistics (edge parent -> node) ----------------------------------------------
    visits: int = 0
    value_sum: float = 0.0
    evaluations: int = 0
    """Simulations that ended here (a rollout or a value taken from this node). Every other visit
    passed on into a child, so ``visits == child_visits + evaluations``."""
    critic: float | None = None
    prior: float = 1.0
    virtual_loss: int = 0
    # -- policy scores ----------------------------------------------------------------------
    logprob: float = 0.0
    cum_logprob: float = 0.0
    # -- env outcome --------------------------------------------------------------------------
    reward: float = 0.0
    total_reward: float = 0.0
    terminal: bool = False
    truncated: bool = False
    success: bool = False
    error: bool = False
    status: NodeStatus = "open"
    expanded: bool = False
    expansions: int = 0
    """Times the proposer was asked for this node's actions."""

    # -- values -------------------------------------------------------------------------------
    @property
    def q_mcts(self) -> float:
        """``Q_mcts(h, a)``: the mean backed-up return, 0 before the first visit."""
        return self.value_sum / self.visits if self.visits else 0.0

    def q(self, alpha: float = 1.0) -> float:
        """Agent Q's mixed value ``alpha * Q_mcts + (1 - alpha) * Qhat``; without a critic
        value it is ``Q_mcts``."""
        if self.critic is None:
            return self.q_mcts
        return alpha * self.q_mcts + (1.0 - alpha) * self.critic

    @property
    def child_visits(self) -> int:
        """``N(h) = sum_a N(h, a)``: the simulations that went through this node into one of its
        actions (what UCT/PUCT use as ``N(h)``)."""
        return sum(c.visits for c in self.children.values())

    @property
    def done(self) -> bool:
        return self.terminal or self.truncated or self.error

    # -- the path -----------------------------------------------------------------------------
    def path(self) -> list[Node]:
        """Root ... self."""
        nodes: list[Node] = []
        node: Node | None = self
        while node is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    def turns(self) -> list[Turn]:
        return [n.turn for n in self.path() if n.turn is not None]

    def replies(self) -> list[str]:
        return [n.reply for n in self.path()[1:]]

    def chat(self, instructions: str) -> Chat:
        """The chat the policy sees at this node (``plyground.rollout.build_chat``)."""
        return build_chat(instructions, self.turns(), self.observation, self.replies())

    def walk(self) -> Iterator[Node]:
        """Every node of the subtree, depth first, self first."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(list(node.children.values())))

    def trajectory(self, env_id: str = "", seed: int | None = None, extra: list[Turn] | None = None) -> Trajectory:
        """The path root -> self (plus ``extra`` turns, e.g. a rollout past the tree) as a
        Trajectory."""
        turns = self.turns() + list(extra or [])
        success = bool(turns and turns[-1].info.get("success", False)) if extra else self.success
        return Trajectory(
            env_id=env_id,
            seed=seed,
            turns=turns,
            total_reward=sum(t.reward for t in turns),
            success=success,
            metadata={"depth": len(turns)},
        )


def node_chat(node: Node, instructions: str) -> Chat:
    return node.chat(instructions)


def make_env(env: EnvOrFactory) -> TextEnv:
    """An env, or the env a zero-argument factory builds."""
    return env if isinstance(env, TextEnv) else env()


def state_key(env: TextEnv, observation: str) -> str:
    """The dedupe key of the env's current state: ``env.state_key()`` when the env has one, else
    the observation text (enough for fully observed envs such as Maze-v0; an env whose
    observation does not determine its state should define ``state_key``)."""
    fn = getattr(env, "state_key", None)
    if callable(fn):
        return str(fn())
    return observation


def jsonable_info(info: dict[str, Any]) -> dict[str, Any]:
    """Keep what JSON can hold; an env's info may carry arbitrary objects."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        try:
            json.dumps(value)
            out[key] = value
        except (TypeError, ValueError):
            out[key] = repr(value)
    return out


def root_node(env: TextEnv, seed: int | None, options: dict[str, Any] | None = None) -> Node:
    observation, info = env.reset(seed=seed, options=options)
    return Node(env.snapshot(), observation, jsonable_info(info), key=state_key(env, observation))


def step_child(
    env: TextEnv,
    parent: Node,
    action: str,
    reply: str = "",
    logprob: float = 0.0,
    completion: Completion | None = None,
    invalid_is_error: bool = True,
    step_time_limit_s: float | None = None,
) -> Node:
    """Restore ``parent``, step ``action``, and return the child (not yet attached).

    The child is an ``error`` (failed) node when the env raises, when it answers
    ``info["valid_action"] = False`` and ``invalid_is_error`` is set, or when the step took longer
    than ``step_time_limit_s`` (measured after the fact: a step cannot be interrupted here; an env
    that may hang should enforce its own limit)."""
    if completion is None and reply and reply != action:
        completion = Completion(text=reply)  # so the turn keeps the verbatim reply
    env.restore(parent.state)
    start = time.perf_counter()
    try:
        observation, reward, terminated, truncated, info = env.step(action)
    except Exception as exc:
        info = {"valid_action": False, "error": f"env: step raised {type(exc).__name__}: {exc}"}
        turn = Turn(parent.observation, action, 0.0, completion, info)
        child = Node(None, info["error"], info, parent, action, reply, turn, parent.depth + 1)
        child.error, child.status = True, "failed"
        child.logprob, child.cum_logprob = logprob, parent.cum_logprob + logprob
        return child
    elapsed = time.perf_counter() - start
    info = jsonable_info(info)
    if step_time_limit_s is not None and elapsed > step_time_limit_s:
        info["valid_action"] = False
        info["error"] = f"step took {elapsed:.3f} s > {step_time_limit_s} s"
    turn = Turn(parent.observation, action, reward, completion, info)
    child = Node(
        env.snapshot(),
        observation,
        info,
        parent,
        action,
        reply,
        turn,
        parent.depth + 1,
        key=state_key(env, observation),
        logprob=logprob,
        cum_logprob=parent.cum_logprob + logprob,
        reward=reward,
        total_reward=parent.total_reward + reward,
        terminal=terminated,
        truncated=truncated,
        success=bool(info.get("success", False)),
    )
    if not info.get("valid_action", True) and invalid_is_error:
        child.error = True
    if child.success:
        child.status = "proved"
    elif child.done:
        child.status = "failed"
    return child


@dataclass
class SearchStats(JsonRecord):
    """What a search spent. ``proposer_calls`` is the budget unit of ``plyground.search``: the
    number of chats sent to the policy (one per node expanded or rollout step, whatever the
    number of samples ``n`` per chat); ``llm_calls`` counts the batched backend requests that
    carried them, ``generations`` the completions sampled and ``tokens`` prompt plus completion
    tokens where the backend reports them. ``model_s`` is the time spent inside the backend, so
    ``wall_s - model_s`` is the search's own overhead."""

    nodes_expanded: int = 0
    nodes_created: int = 0
    duplicates: int = 0
    errors: int = 0
    simulations: int = 0
    proposer_calls: int = 0
    llm_calls: int = 0
    generations: int = 0
    tokens: int = 0
    critic_calls: int = 0
    critic_failures: int = 0
    """Critic answers that gave no value: unparsable self-critique replies (ranked by log-probability
    instead), or nodes a value model left without values (it raised, or returned NaN)."""
    env_steps: int = 0
    wall_s: float = 0.0
    model_s: float = 0.0
    stopped: str = ""
    """Why the search stopped: ``solved``, ``budget``, ``time``, ``exhausted`` or ``done``."""


@dataclass
class SearchResult:
    """The outcome of one search. ``trajectory`` is the best path (the shortest successful one
    when any, else the most promising), ``root`` the whole tree (not serialised; ``tree`` is its
    summary), ``instructions`` the system prompt the chats were built with."""

    algo: str
    env_id: str = ""
    seed: int | None = None
    success: bool = False
    trajectory: Trajectory | None = None
    stats: SearchStats = field(default_factory=SearchStats)
    tree: dict[str, Any] = field(default_factory=dict)
    instructions: str = ""
    root: Node | None = field(default=None, repr=False)

    @property
    def nodes_expanded(self) -> int:
        return self.stats.nodes_expanded

    @property
    def llm_calls(self) -> int:
        return self.stats.llm_calls

    @property
    def tokens(self) -> int:
        return self.stats.tokens

    @property
    def wall_s(self) -> float:
        return self.stats.wall_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "env_id": self.env_id,
            "seed": self.seed,
            "success": self.success,
            "trajectory": self.trajectory.to_dict() if self.trajectory is not None else None,
            "stats": asdict(self.stats),
            "tree": self.tree,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


def tree_summary(root: Node) -> dict[str, Any]:
    """Counts over a tree, for ``SearchResult.tree``."""
    nodes = list(root.walk())
    return {
        "nodes": len(nodes),
        "max_depth": max(n.depth for n in nodes),
        "expanded": sum(n.expanded for n in nodes),
        "errors": sum(n.error for n in nodes),
        "proved": sum(n.status == "proved" for n in nodes),
        "failed": sum(n.status == "failed" for n in nodes),
        "root_status": root.status,
        "root_children": {
            a: {"visits": c.visits, "q": round(c.q_mcts, 4), "critic": c.critic, "logprob": round(c.logprob, 4)}
            for a, c in root.children.items()
        },
    }


def best_success(root: Node) -> Node | None:
    """The shallowest successful node of the tree, or None."""
    best: Node | None = None
    for node in root.walk():
        if node.success and (best is None or node.depth < best.depth):
            best = node
    return best


def mark_failed(node: Node) -> None:
    """Fail ``node`` (unless proved) and every ancestor all of whose children have failed."""
    if node.status == "open":
        node.status = "failed"
    parent = node.parent
    while parent is not None and parent.status == "open" and all(
        c.status == "failed" for c in parent.children.values()
    ):
        parent.status = "failed"
        parent = parent.parent


def settle(node: Node) -> None:
    """After expanding ``node``: proved if a child is proved, failed if every child failed (or it
    has none), and the change carried up the tree."""
    children = list(node.children.values())
    if any(c.status == "proved" for c in children):
        mark_proved(node)
    elif all(c.status == "failed" for c in children):
        mark_failed(node)


def mark_proved(node: Node) -> None:
    """Prove ``node`` and every ancestor (a node is proved when any child is)."""
    node.status = "proved"
    current = node.parent
    while current is not None and current.status != "proved":
        current.status = "proved"
        current = current.parent
