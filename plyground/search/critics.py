"""Critics for MCTS: where Agent Q's ``Qhat(h, a)`` of the proposed actions at a node comes from.

- :class:`Critic` is what a search needs: ``prepare(env)`` once per search and
  ``score(nodes, proposals)``, one ``Qhat`` (or None: no value) per proposal, all the nodes of an
  expansion in one call. Usage counters (``usage()``, as :class:`~plyground.search.proposer.Usage`
  keeps them) are optional: a critic without them counts as spending nothing.
- :class:`~plyground.search.proposer.SelfCritic` (Agent Q's self-critique: the policy ranks the
  actions) is one; :class:`ValueCritic` (a value model) is the other.
- :meth:`ValueCritic.from_double_critic` reads with ArCHer's trained
  :class:`~plyground.trainers.core.critic.DoubleCritic`, and :func:`load_archer_critic` loads one
  from an ArCHer checkpoint.

**Units.** MCTS keeps every ``Q_mcts`` in [0, 1] (``reward="success"``: 1 for a success, else 0;
``reward="return"``: the episode's mean step reward mapped through ``env.reward_range``), and mixes
``alpha * Q_mcts + (1 - alpha) * Qhat`` in selection; with ``rollout="none"`` a new leaf is also
*worth* its ``Qhat`` in the backup. So ``Qhat`` must be on that [0, 1] scale, not in the env's return
units. :class:`ValueCritic` maps a value model's output ``v`` to ``clip((v - lo) / (hi - lo), 0, 1)``
with ``value_range=(lo, hi)``; with no range, ``v`` is only clipped to [0, 1] (a ``q_fn`` that
already predicts a success probability). ArCHer's critic predicts the discounted env return
(``r + gamma * V(s')``; a maze's -1 per move gives values near ``-(moves left)``): its loader maps
it through :func:`return_range` of the checkpoint's env unless given a tighter ``value_range``.

**Failures.** A value model must not crash a search. When ``q_fn`` raises or returns the wrong
number of values, every node of that ``score`` call gets no ``Qhat`` (``None``: MCTS then ranks its
children by ``Q_mcts`` alone and a ``rollout="none"`` leaf is worth 0, as without a critic); when a
node's values hold a NaN or an infinity, that node's proposals all get no ``Qhat`` (siblings are
compared on one footing: all with ``Qhat`` or none). ``failures`` counts the nodes left without
values, ``errors`` the ``q_fn`` calls that raised; the first failure also warns (``RuntimeWarning``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from plyground.envs.core import TextEnv
from plyground.search.proposer import Proposal, Usage
from plyground.search.tree import Node

if TYPE_CHECKING:
    from plyground.trainers.core.critic import DoubleCritic

__all__ = ["Critic", "QFn", "ValueCritic", "load_archer_critic", "return_range"]

QFn = Callable[[list[Any], list[str]], Any]
"""``q_fn(states, actions) -> values``: one value per (state, action) pair, as a sequence of
numbers (a list, a 1-D tensor or array)."""


@runtime_checkable
class Critic(Protocol):
    """What MCTS needs from a critic (``usage()`` is optional and read with ``any_usage``)."""

    def prepare(self, env: TextEnv) -> None:
        """Called once per search with the env (for its instructions)."""

    def score(
        self, nodes: Sequence[Node], proposals: Sequence[Sequence[Proposal]]
    ) -> Sequence[Sequence[float | None]]:
        """``Qhat`` in [0, 1] for every proposal of every node (None: no value for it)."""
        ...


def _state_fn(state: str | Callable[[Node], Any], critic: ValueCritic) -> Callable[[Node], Any]:
    if callable(state):
        return state
    if state == "node":
        return lambda node: node
    if state == "observation":
        return lambda node: node.observation
    if state == "chat":
        return lambda node: node.chat(critic.instructions)
    raise ValueError(f"state must be 'node', 'observation', 'chat' or a callable, got {state!r}")


class ValueCritic(Usage):
    """``Qhat`` from a value model: ``q_fn(states, actions) -> values``, ONE call per ``score``
    with every (node, proposal) pair of it (the node's state repeated for each of its actions).

    Args:
        q_fn: the value model, batched over pairs.
        state: what ``q_fn`` is given for a node: ``"node"`` (the :class:`Node` itself, whose
            ``observation``, ``info``, ``turns()`` and ``depth`` it may read), ``"observation"``,
            ``"chat"`` (the chat the policy sees there, with the env's instructions) or a callable
            ``node -> state``.
        value_range: ``(lo, hi)``: the values are mapped to ``clip((v - lo) / (hi - lo), 0, 1)``;
            None: clipped to [0, 1] as they are (module docstring: units).
        instructions: fixed instructions for ``state="chat"`` (default: the env's).

    Counters: ``calls`` (``q_fn`` calls), ``prompts`` (pairs scored: a search's ``critic_calls``),
    ``model_s``; ``failures`` (nodes left without values) and ``errors`` (calls that raised).
    """

    def __init__(
        self,
        q_fn: QFn,
        state: str | Callable[[Node], Any] = "node",
        value_range: tuple[float, float] | None = None,
        instructions: str | None = None,
    ) -> None:
        super().__init__()
        if value_range is not None:
            lo, hi = float(value_range[0]), float(value_range[1])
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ValueError(f"value_range must be finite (lo, hi) with hi > lo, got {value_range}")
            value_range = (lo, hi)
        self.q_fn = q_fn
        self.value_range = value_range
        self.state_of = _state_fn(state, self)
        self._fixed_instructions = instructions
        self.instructions = instructions or ""
        self.failures = 0
        self.errors = 0
        self.last_error = ""
        self._warned = False

    def usage(self) -> dict[str, float]:
        return {**super().usage(), "failures": self.failures}

    def prepare(self, env: TextEnv) -> None:
        if self._fixed_instructions is None:
            self.instructions = env.instructions

    def normalise(self, value: float) -> float:
        """A model value on MCTS's [0, 1] scale."""
        if self.value_range is not None:
            lo, hi = self.value_range
            value = (value - lo) / (hi - lo)
        return min(1.0, max(0.0, value))

    def _fail(self, message: str) -> None:
        self.last_error = message
        if not self._warned:
            self._warned = True
            warnings.warn(f"ValueCritic: {message}; those nodes get no critic value", RuntimeWarning, stacklevel=3)

    def score(self, nodes: Sequence[Node], proposals: Sequence[Sequence[Proposal]]) -> list[list[float | None]]:
        out: list[list[float | None]] = [[None] * len(p) for p in proposals]
        pairs = [(i, j) for i, props in enumerate(proposals) for j in range(len(props))]
        if not pairs:
            return out
        self.calls += 1
        self.prompts += len(pairs)
        start = time.perf_counter()
        try:
            per_node = [self.state_of(n) if proposals[i] else None for i, n in enumerate(nodes)]
            raw = self.q_fn([per_node[i] for i, _ in pairs], [proposals[i][j].action for i, j in pairs])
            values = [float(v) for v in (raw.tolist() if hasattr(raw, "tolist") else raw)]
            if len(values) != len(pairs):
                raise ValueError(f"q_fn returned {len(values)} values for {len(pairs)} (state, action) pairs")
        except Exception as exc:  # a value model must not end the search (module docstring)
            self.errors += 1
            self.failures += sum(1 for p in proposals if p)
            self._fail(f"q_fn raised {type(exc).__name__}: {exc}")
            return out
        finally:
            self.model_s += time.perf_counter() - start
        k = 0
        for i, props in enumerate(proposals):
            vals, k = values[k : k + len(props)], k + len(props)
            if not props:
                continue
            if not all(math.isfinite(v) for v in vals):
                self.failures += 1
                self._fail(f"non-finite values {vals}")
                continue
            out[i] = [self.normalise(v) for v in vals]
        return out

    @classmethod
    def from_double_critic(
        cls,
        critic: DoubleCritic,
        tokenizer: Any,
        max_length: int | None = None,
        context: str = "observation",
        value_range: tuple[float, float] | None = None,
        device: Any = None,
    ) -> ValueCritic:
        """``Qhat = min(Q1, Q2)(s, a)`` from ArCHer's double critic (the pessimistic estimate
        ArCHer's actor uses in ``A = min(Q1,Q2)(s,a) - min(V1,V2)(s)``), one batched forward per
        ``score`` call, no gradient, in eval mode (the critic's train/eval mode is restored).

        ``s`` is the state text ArCHer trained on: ``state_text(node.observation, node.depth,
        context)``, the observation the policy acts on at the node (``context="turn"`` prefixes
        ``"turn k: "``, k = depth + 1), as ``trajectory_transitions`` builds it from a rollout's
        turns; ``a`` is the proposal's parsed action, as in the replay buffer. Texts are cut to
        their last ``max_length`` tokens (default: the critic's ``config.max_length``, as in
        training). Pass the trainer's ``critic_context`` as ``context`` and a ``value_range``
        (e.g. :func:`return_range`), since the critic predicts discounted env returns."""
        import torch

        from plyground.trainers.core.critic import encode_texts, state_text

        state_text("", 0, context)  # an unknown context fails here, not in the search
        n = int(max_length or critic.config.max_length)
        dev = device if device is not None else next(critic.parameters()).device

        def q_fn(states: list[Any], actions: list[str]) -> list[float]:
            was_training = critic.training
            critic.eval()
            try:
                with torch.no_grad():
                    obs = encode_texts(tokenizer, [str(s) for s in states], n, dev)
                    act = encode_texts(tokenizer, list(actions), n, dev)
                    q1, q2 = critic.q(obs, act)
                values: list[float] = torch.minimum(q1, q2).float().cpu().tolist()
                return values
            finally:
                critic.train(was_training)

        return cls(q_fn, state=lambda node: state_text(node.observation, node.depth, context), value_range=value_range)


def return_range(env: TextEnv, gamma: float = 1.0) -> tuple[float, float]:
    """Bounds of an episode's discounted return from any state of ``env``: per-step rewards in
    ``env.reward_range`` over at most ``env.max_turns`` steps. A loose bound (it keeps the order of
    values but squeezes typical ones together): pass a tighter ``value_range`` where known."""
    lo, hi = (float(x) for x in env.reward_range)
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ValueError(f"{type(env).__name__}.reward_range {env.reward_range} is not a finite range: pass value_range")
    horizon = max(1, int(env.max_turns))
    steps = float(horizon) if gamma >= 1.0 else (1.0 - gamma**horizon) / (1.0 - gamma)
    return min(lo, lo * steps), max(hi, hi * steps)


def archer_checkpoint_file(path: str | Path) -> Path:
    """The ``trainer.pt`` of a checkpoint: ``path`` is the file, a ``step_*`` folder, a
    ``checkpoints`` folder or a run's ``out_dir`` (the latter two: the ``latest`` checkpoint)."""
    from plyground.trainers.core.loop import CHECKPOINT_FILE

    p = Path(path).expanduser()
    if p.is_file():
        return p
    if (p / CHECKPOINT_FILE).is_file():
        return p / CHECKPOINT_FILE
    for folder in (p, p / "checkpoints"):
        pointer = folder / "latest"
        if pointer.is_file():
            found = folder / pointer.read_text().strip() / CHECKPOINT_FILE
            if found.is_file():
                return found
    raise FileNotFoundError(f"no ArCHer checkpoint ({CHECKPOINT_FILE}) at {path}")


def load_archer_critic(
    path: str | Path,
    device: Any = None,
    tokenizer: Any = None,
    value_range: tuple[float, float] | None = None,
) -> ValueCritic:
    """A :class:`ValueCritic` over the online critic saved in an ArCHer checkpoint
    (``plyground train archer``: ``trainer.pt`` holds ``trainer["critic"]`` and the run's config).

    The critic is rebuilt from the saved ``critic`` config (encoder ``policy``: the saved ``model``
    is loaded for its architecture, then overwritten), reads texts with the run's tokenizer (the
    tokenizer of its ``model``; or ``tokenizer``) and the run's ``critic_context``. Values are
    mapped through ``value_range``, by default :func:`return_range` of the run's env and gamma.
    The file is unpickled (``torch.load(weights_only=False)``, as ``resume`` does): load only
    checkpoints you trust."""
    import torch

    import plyground
    from plyground.inference.models import load_model, load_tokenizer
    from plyground.trainers.core.critic import CriticConfig, DoubleCritic, pretrained_encoder

    file = archer_checkpoint_file(path)
    state = torch.load(file, map_location="cpu", weights_only=False)
    config = state.get("config") or {}
    weights = (state.get("trainer") or {}).get("critic")
    if weights is None:
        raise ValueError(f"{file} holds no critic: not an ArCHer checkpoint")
    critic_config = CriticConfig(**(config.get("critic") or {}))
    model_name = str(config.get("model", "default"))
    encoder = None
    if critic_config.encoder == "policy":
        model, tok = load_model(model_name)
        encoder = pretrained_encoder(model)
        tokenizer = tokenizer if tokenizer is not None else tok
    elif tokenizer is None:
        tokenizer = load_tokenizer(model_name)
    embed = weights.get("encoder.embed.weight")
    vocab = int(embed.shape[0]) if embed is not None else len(tokenizer)
    if vocab != len(tokenizer):
        raise ValueError(
            f"{file}: the critic reads {vocab} token ids but the tokenizer of {model_name!r} has {len(tokenizer)}: "
            "pass the run's tokenizer"
        )
    critic = DoubleCritic(vocab, critic_config, encoder=encoder)
    critic.load_state_dict(weights)
    if device is not None:
        critic = critic.to(device)
    critic.eval()
    if value_range is None:
        env = plyground.make(str(config.get("env_id")), **(config.get("env_kwargs") or {}))
        try:
            value_range = return_range(env, float(config.get("gamma", 1.0)))
        finally:
            env.close()
    return ValueCritic.from_double_critic(
        critic, tokenizer, context=str(config.get("critic_context", "observation")), value_range=value_range
    )
