"""Where search actions come from: a policy that proposes K actions per node, and a critic.

- :class:`Proposer` samples ``K`` replies per node from a :class:`~plyground.inference.Backend`,
  all the nodes of a frontier in ONE batched ``generate`` call (``n = K``), parses each reply into
  an action (``parse_action``), dedupes the actions and keeps each action's mean token
  log-probability (the BFS-Prover tactic score; the highest of its duplicates).
- :class:`RandomProposer` draws actions uniformly from ``info["admissible_actions"]`` (Maze-v0
  gives the four moves), from a fixed list, or integers in ``1..env.n`` (GuessNumber): a policy
  without a model, for tests, baselines and overhead benchmarks.
- :class:`NoisyExpertProposer` mixes a scripted expert's action with random candidates (each
  sample is the expert's with probability ``p_expert``): a model-free policy that is right some
  of the time.
- :class:`SelfCritic` is Agent Q's self-critique: the same backend is shown the node's chat and
  the proposed actions and asked for the best one; the pick is removed and it is asked again
  until one is left. The rank becomes ``Qhat = 1 - rank / (K - 1)`` (best 1, worst 0).

Every proposer and critic counts what it spent (``calls``, ``prompts``, ``generations``,
``tokens``, ``model_s``); searches report the difference over a search.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from plyground.envs.core import TextEnv
from plyground.inference.base import Backend
from plyground.rollout.agent import ActionParser, parse_action
from plyground.search.tree import Node
from plyground.types import Chat, Completion, Message, SamplingParams


@dataclass
class Proposal:
    """One distinct action proposed at a node."""

    action: str
    reply: str
    logprob: float = 0.0
    """Mean token log-probability of the reply (0 where the backend gives none)."""
    count: int = 1
    """How many of the K samples gave this action."""
    completion: Completion | None = None
    critic: float | None = None
    """``Qhat`` from a critic, when one ranked the proposals."""


class Usage:
    """Counters every proposer and critic keeps."""

    def __init__(self) -> None:
        self.calls = 0
        self.prompts = 0
        self.generations = 0
        self.tokens = 0
        self.model_s = 0.0

    def usage(self) -> dict[str, float]:
        return {
            "calls": self.calls,
            "prompts": self.prompts,
            "generations": self.generations,
            "tokens": self.tokens,
            "model_s": self.model_s,
        }


class ActionProposer(Protocol):
    """What a search needs from a proposer."""

    instructions: str

    def prepare(self, env: TextEnv) -> None:
        """Called once per search with the env (for its instructions or action space)."""

    def propose(self, nodes: Sequence[Node], k: int) -> list[list[Proposal]]:
        """Up to ``k`` distinct actions for each node, in one batched call."""
        ...

    def usage(self) -> dict[str, float]:
        ...


def mean_logprob(completion: Completion) -> float:
    return completion.mean_logprob if completion.logprobs else 0.0


def dedupe(replies: Sequence[tuple[str, str, float, Completion | None]]) -> list[Proposal]:
    """Merge (action, reply, logprob, completion) samples with the same action (after stripping
    whitespace); an action keeps its highest-scored reply. Empty actions are kept: the env
    answers them as malformed, which is what a search should learn from."""
    out: dict[str, Proposal] = {}
    for action, reply, logprob, completion in replies:
        key = " ".join(action.split())
        if key in out:
            prop = out[key]
            prop.count += 1
            if logprob > prop.logprob:
                prop.reply, prop.logprob, prop.completion = reply, logprob, completion
        else:
            out[key] = Proposal(key, reply, logprob, 1, completion)
    return list(out.values())


class Proposer(Usage):
    """K actions per node from a backend, one batched call for the whole frontier."""

    def __init__(
        self,
        backend: Backend,
        sampling: SamplingParams | None = None,
        instructions: str | None = None,
        action_parser: ActionParser = parse_action,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.sampling = sampling or SamplingParams(max_tokens=64, temperature=1.0)
        self._fixed_instructions = instructions
        self.instructions = instructions or ""
        self.action_parser = action_parser

    def prepare(self, env: TextEnv) -> None:
        if self._fixed_instructions is None:
            self.instructions = env.instructions

    def propose(self, nodes: Sequence[Node], k: int) -> list[list[Proposal]]:
        if not nodes:
            return []
        chats = [n.chat(self.instructions) for n in nodes]
        params = replace(self.sampling, n=k)
        if params.seed is not None:
            params = replace(params, seed=(params.seed + 1_000_003 * self.calls) % 2**31)
        start = time.perf_counter()
        results = self.backend.generate(chats, params)
        self.model_s += time.perf_counter() - start
        self.calls += 1
        self.prompts += len(chats)
        out = []
        for completions in results:
            self.generations += len(completions)
            samples = []
            for c in completions:
                self.tokens += len(c.token_ids) + len(c.prompt_token_ids)
                samples.append((self.action_parser(c.text), c.text, mean_logprob(c), c))
            out.append(dedupe(samples))
        return out


class RandomProposer(Usage):
    """Uniform random actions: ``info["admissible_actions"]`` of the node when the env gives them,
    else ``actions``, else integers in ``1..env.n`` (GuessNumber). ``replace=False`` draws the K
    actions without replacement (as an LLM's duplicates would be deduped anyway). Each action's
    log-probability is ``-log(#candidates)``."""

    def __init__(self, seed: int = 0, actions: Sequence[str] | None = None, replace: bool = False) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.actions = list(actions) if actions is not None else None
        self.replace = replace
        self.instructions = ""
        self._int_range: tuple[int, int] | None = None

    def prepare(self, env: TextEnv) -> None:
        self.instructions = env.instructions
        n = getattr(env, "n", None)
        self._int_range = (1, int(n)) if isinstance(n, int) and n >= 1 else None

    def candidates(self, node: Node) -> list[str] | tuple[int, int]:
        admissible = node.info.get("admissible_actions")
        if admissible:
            return [str(a) for a in admissible]
        if self.actions:
            return self.actions
        if self._int_range is not None:
            return self._int_range
        raise ValueError(
            "RandomProposer needs info['admissible_actions'], an actions list, or an env with an integer range n"
        )

    def sample(self, node: Node, k: int) -> list[Proposal]:
        cands = self.candidates(node)
        if isinstance(cands, tuple):
            lo, hi = cands
            size = hi - lo + 1
            if self.replace or k >= size:
                picks = [str(self.rng.randint(lo, hi)) for _ in range(k)]
            else:
                picks = [str(x) for x in self.rng.sample(range(lo, hi + 1), k)]
        else:
            size = len(cands)
            if self.replace or k >= size:
                picks = [self.rng.choice(cands) for _ in range(k)] if self.replace else self.rng.sample(cands, size)
            else:
                picks = self.rng.sample(cands, k)
        logprob = -math.log(size)
        self.generations += len(picks)
        return dedupe([(a, a, logprob, None) for a in picks])

    def propose(self, nodes: Sequence[Node], k: int) -> list[list[Proposal]]:
        if not nodes:
            return []
        self.calls += 1
        self.prompts += len(nodes)
        return [self.sample(node, k) for node in nodes]


class NoisyExpertProposer(RandomProposer):
    """A scripted expert with noise: each of the K samples is the expert's action with
    probability ``p_expert``, else a uniform random candidate (``RandomProposer``'s candidates:
    ``info["admissible_actions"]``, the ``actions`` list, or ``1..env.n``); duplicates merge.

    ``expert(node)`` returns the expert's action at a node (it may read the whole path, e.g.
    replay a stateful scripted policy over ``node.path()``). ``rewrite(node, action)`` maps a
    candidate to the action actually sent (e.g. fill WebShop's ``search[<keywords>]`` template).
    Each proposal's log-probability is the mixture's own: ``log(p_expert * [a == expert] +
    (1 - p_expert) / #candidates)``, as a sampling LLM would report its own probability, so
    best-first and beam rank the expert's action first when it was drawn. A cheap, model-free
    stand-in for a policy that is right some of the time, for budget curves on CPU."""

    def __init__(
        self,
        expert: Callable[[Node], str],
        p_expert: float = 0.5,
        seed: int = 0,
        actions: Sequence[str] | None = None,
        rewrite: Callable[[Node, str], str] | None = None,
    ) -> None:
        super().__init__(seed, actions, replace=True)
        if not 0.0 <= p_expert <= 1.0:
            raise ValueError(f"p_expert must be in [0, 1], got {p_expert}")
        self.expert = expert
        self.p_expert = p_expert
        self.rewrite = rewrite

    def sample(self, node: Node, k: int) -> list[Proposal]:
        cands = self.candidates(node)
        if isinstance(cands, tuple):
            lo, hi = cands
            size = hi - lo + 1
        else:
            size = len(cands)
        best = self.expert(node)
        samples = []
        for _ in range(k):
            if self.rng.random() < self.p_expert:
                action = best
            elif isinstance(cands, tuple):
                action = str(self.rng.randint(cands[0], cands[1]))
            else:
                action = self.rng.choice(cands)
            if self.rewrite is not None:
                action = self.rewrite(node, action)
            prob = (1.0 - self.p_expert) / size + (self.p_expert if action == best else 0.0)
            samples.append((action, action, math.log(max(prob, 1e-12)), None))
        self.generations += len(samples)
        return dedupe(samples)


# -- self-critique -------------------------------------------------------------------------------
CRITIC_PROMPT = (
    "You are judging which next action is most likely to lead to success in the task above.\n"
    "Candidate actions:\n{options}\n"
    "Reply with the number of the single best action, for example: Best: 1"
)
_NUMBER_RE = re.compile(r"(?<![\d.])(\d+)(?![\d.])")
_BEST_RE = re.compile(r"best\s*(?:action)?\s*(?:is)?\s*[:=#]?\s*(?:option\s*)?\(?#?(\d+)", re.IGNORECASE)


def parse_choice(text: str, options: Sequence[str]) -> int | None:
    """The index (0-based) of the option a critic reply picks, or None.

    Tried in order: ``Best: k`` (also ``best action is k``); the first standalone number in
    ``1..len(options)``; the option whose text appears in the reply (the longest such match)."""
    found = _BEST_RE.search(text)
    if found and 1 <= int(found.group(1)) <= len(options):
        return int(found.group(1)) - 1
    for m in _NUMBER_RE.finditer(text):
        if 1 <= int(m.group(1)) <= len(options):
            return int(m.group(1)) - 1
    lowered = text.lower()
    matches = [(len(o), i) for i, o in enumerate(options) if o.strip() and o.strip().lower() in lowered]
    if matches:
        return max(matches)[1]
    return None


class SelfCritic(Usage):
    """Agent Q's self-critique: ranks proposals by asking the backend for the best repeatedly.

    ``score(nodes, proposals)`` returns ``Qhat`` in [0, 1] for every proposal; each ranking round
    is one batched call across all nodes still ranking. An unparsable reply picks the remaining
    proposal with the highest log-probability (counted in ``parse_failures``)."""

    def __init__(
        self,
        backend: Backend,
        sampling: SamplingParams | None = None,
        instructions: str | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.sampling = sampling or SamplingParams(max_tokens=16, temperature=0.0)
        self._fixed_instructions = instructions
        self.instructions = instructions or ""
        self.parse_failures = 0

    def usage(self) -> dict[str, float]:
        return {**super().usage(), "failures": self.parse_failures}

    def prepare(self, env: TextEnv) -> None:
        if self._fixed_instructions is None:
            self.instructions = env.instructions

    def _chat(self, node: Node, options: Sequence[str]) -> Chat:
        chat = node.chat(self.instructions)
        listing = "\n".join(f"{i + 1}. {o}" for i, o in enumerate(options))
        last = chat[-1]
        chat[-1] = Message("user", last.content + "\n\n" + CRITIC_PROMPT.format(options=listing))
        return chat

    def score(self, nodes: Sequence[Node], proposals: Sequence[Sequence[Proposal]]) -> list[list[float]]:
        remaining = [list(range(len(p))) for p in proposals]
        ranks: list[list[int]] = [[0] * len(p) for p in proposals]
        order = [0] * len(nodes)
        params = replace(self.sampling, n=1)
        while True:
            active = [i for i, rem in enumerate(remaining) if len(rem) > 1]
            if not active:
                break
            chats = [self._chat(nodes[i], [proposals[i][j].action for j in remaining[i]]) for i in active]
            start = time.perf_counter()
            results = self.backend.generate(chats, params)
            self.model_s += time.perf_counter() - start
            self.calls += 1
            self.prompts += len(chats)
            for i, completions in zip(active, results, strict=True):
                rem = remaining[i]
                text = completions[0].text if completions else ""
                self.generations += len(completions)
                self.tokens += sum(len(c.token_ids) + len(c.prompt_token_ids) for c in completions)
                pick = parse_choice(text, [proposals[i][j].action for j in rem])
                if pick is None:
                    self.parse_failures += 1
                    pick = max(range(len(rem)), key=lambda x: proposals[i][rem[x]].logprob)
                ranks[i][rem[pick]] = order[i]
                order[i] += 1
                rem.pop(pick)
        for i, rem in enumerate(remaining):
            for j in rem:
                ranks[i][j] = order[i]
        return [[1.0 - r / (len(p) - 1) if len(p) > 1 else 1.0 for r in rk] for rk, p in zip(ranks, proposals, strict=True)]


def usage_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in after}


def any_usage(obj: Any) -> dict[str, float]:
    fn = getattr(obj, "usage", None)
    if callable(fn):
        result: dict[str, float] = fn()
        return result
    return {"calls": 0, "prompts": 0, "generations": 0, "tokens": 0, "model_s": 0.0}


class Meter:
    """Snapshots a proposer's and a critic's counters at the start of a search and writes what
    was spent since into a ``SearchStats``."""

    def __init__(self, proposer: Any, critic: Any = None) -> None:
        self.proposer, self.critic = proposer, critic
        self.p0 = dict(any_usage(proposer))
        self.c0 = dict(any_usage(critic))
        self.start = time.perf_counter()

    def prompts(self) -> int:
        return int(any_usage(self.proposer)["prompts"] - self.p0["prompts"])

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fill(self, stats: Any) -> None:
        p = usage_delta(self.p0, any_usage(self.proposer))
        c = usage_delta(self.c0, any_usage(self.critic))
        stats.proposer_calls = int(p["prompts"])
        stats.critic_calls = int(c["prompts"])
        stats.critic_failures = int(c.get("failures", 0))
        stats.llm_calls = int(p["calls"] + c["calls"])
        stats.generations = int(p["generations"] + c["generations"])
        stats.tokens = int(p["tokens"] + c["tokens"])
        stats.model_s = round(p["model_s"] + c["model_s"], 6)
        stats.wall_s = round(self.elapsed(), 6)
