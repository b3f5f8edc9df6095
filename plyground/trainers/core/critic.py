"""ArCHer's utterance-level critic (Zhou et al. 2024): an encoder, two Q heads, two V heads, a
soft-updated target copy, and a replay buffer of transitions.

- ``TextEncoder``: a small transformer built from :class:`CriticConfig` (token embedding +
  learned positions + ``layers`` encoder layers), mean-pooled over the real tokens, with
  ``log(1 + length)`` appended (the transcript's length tells how far into the episode a state is).
  The reference uses roberta-base's pooler; any module with ``forward(ids, mask) -> (B, out_dim)``
  and an ``out_dim`` attribute can replace it (``DoubleCritic(encoder=...)``).
- ``PretrainedEncoder`` (``encoder="policy"`` in ArCHer): a copy of a pretrained causal LM's
  backbone (ArCHer copies its warm-started policy's), mean-pooled and last-token hidden states: the
  counterpart of the reference's pretrained RoBERTa, for a critic that need not learn to read from
  scratch. It shares the policy's tokenizer, so the critic's texts need no second vocabulary.
- ``DoubleCritic``: ``Q1, Q2`` = MLP([enc(obs), enc(act)]), ``V1, V2`` = MLP(enc(obs)).
- :func:`soft_update`: ``target <- (1 - tau) * target + tau * online``.
- :func:`critic_loss`: the sum of four MSEs, each head with its own target (no min):
  ``Qi(s, a) <- r + gamma * (1 - done) * Vtarget_i(s')`` and ``Vi(s) <- Qtarget_i(s, a_pi)``.
- :class:`ReplayBuffer`: transitions ``(obs, action, reward, next_obs, done, mc_return)`` (plus the
  policy's prompt ids of the turn, for an actor that re-samples actions at buffer states) as plain
  python records (checkpointed with the trainer through ``state_dict``).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class CriticConfig:
    """Size of the default critic encoder and heads."""

    dim: int = 64
    layers: int = 1
    heads: int = 4
    head_hidden: int = 128
    max_length: int = 256  # tokens per text (the LAST ones are kept: a transcript grows at the end)
    # "transformer"; "bag": mean of token embeddings + log length (no attention; fastest); "policy": a
    # copy of a pretrained LM's backbone (PretrainedEncoder; the trainer supplies the LM)
    encoder: str = "transformer"


class TextEncoder(nn.Module):
    """Token ids (B, T) + mask (B, T) -> (B, dim + 1): mean-pooled transformer states (or, with
    ``encoder="bag"``, token embeddings) and log length."""

    def __init__(self, vocab_size: int, config: CriticConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(vocab_size, config.dim)
        self.pos = nn.Embedding(config.max_length, config.dim)
        layer = nn.TransformerEncoderLayer(
            config.dim, config.heads, dim_feedforward=2 * config.dim, dropout=0.0, batch_first=True
        )
        self.body = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False) if config.encoder == "transformer" else None
        self.out_dim = config.dim + 1

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        if self.body is not None:
            positions = torch.arange(ids.shape[1], device=ids.device)[None, :]
            h = self.body(h + self.pos(positions), src_key_padding_mask=mask == 0)
        m = mask.to(h.dtype).unsqueeze(-1)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        length = torch.log1p(mask.sum(1).to(h.dtype)).unsqueeze(-1)
        return torch.cat([pooled, length], dim=-1)


class PretrainedEncoder(nn.Module):
    """Token ids (B, T) + mask (B, T) -> (B, 2 * hidden + 1): a pretrained LM backbone's final hidden
    states, mean-pooled over the real tokens and at the last real token (a causal LM's summary of
    the text), and log length. ``backbone`` is trained with the critic: pass a copy, not the policy.

    Args:
        backbone: a transformers base model (``AutoModelForCausalLM(...).base_model``, or the LM
            itself: its ``base_model`` is taken) whose ``forward(input_ids, attention_mask)`` returns
            ``last_hidden_state``.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = getattr(backbone, "base_model", backbone)
        hidden = getattr(getattr(self.backbone, "config", None), "hidden_size", None)
        if not isinstance(hidden, int):
            raise ValueError("the critic's pretrained encoder needs a transformers model with config.hidden_size")
        self.out_dim = 2 * hidden + 1

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.to(h.dtype).unsqueeze(-1)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        last = h[torch.arange(h.shape[0], device=h.device), (mask.sum(1) - 1).clamp(min=0)]
        length = torch.log1p(mask.sum(1).to(h.dtype)).unsqueeze(-1)
        return torch.cat([pooled, last, length], dim=-1)


def pretrained_encoder(model: nn.Module) -> PretrainedEncoder:
    """A :class:`PretrainedEncoder` over a float32 copy of ``model``'s backbone, so the critic trains
    its own weights and the policy's stay put."""
    return PretrainedEncoder(copy.deepcopy(model).float().train())


ENCODERS = ("transformer", "bag", "policy")


def _mlp(inp: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))


class DoubleCritic(nn.Module):
    """Two Q heads on [obs, act] and two V heads on obs, over one shared encoder."""

    def __init__(self, vocab_size: int, config: CriticConfig | None = None, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config or CriticConfig()
        if self.config.encoder not in ENCODERS:
            raise ValueError(f"critic encoder must be one of {ENCODERS}, got {self.config.encoder!r}")
        if encoder is None and self.config.encoder == "policy":
            raise ValueError("critic encoder 'policy' needs the pretrained encoder passed in (encoder=pretrained_encoder(lm))")
        self.encoder = encoder if encoder is not None else TextEncoder(vocab_size, self.config)
        d = int(getattr(self.encoder, "out_dim"))  # noqa: B009
        h = self.config.head_hidden
        self.q1, self.q2 = _mlp(2 * d, h), _mlp(2 * d, h)
        self.v1, self.v2 = _mlp(d, h), _mlp(d, h)

    def q(self, obs: tuple[torch.Tensor, torch.Tensor], act: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.encoder(*obs), self.encoder(*act)], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def v(self, obs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encoder(*obs)
        return self.v1(x).squeeze(-1), self.v2(x).squeeze(-1)

    def qv(
        self, obs: tuple[torch.Tensor, torch.Tensor], act: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Q1, Q2, V1, V2)``, the same as :meth:`q` and :meth:`v`, encoding ``obs`` once (the
        encoder is most of a critic step's cost)."""
        eo = self.encoder(*obs)
        x = torch.cat([eo, self.encoder(*act)], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1), self.v1(eo).squeeze(-1), self.v2(eo).squeeze(-1)


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int, device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(ids, mask)`` of ``texts``, each cut to its last ``max_length`` tokens."""
    # One batched call: a fast tokenizer encodes a list in one go, text by text is several times slower.
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    rows = [[int(i) for i in ids][-max_length:] or [0] for ids in encoded]
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
        mask[b, : len(r)] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) * target + tau * online`` for every parameter (tau=1: copy; 0: keep)."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(1.0 - tau).add_(o.detach(), alpha=tau)


def make_target(online: nn.Module) -> nn.Module:
    return copy.deepcopy(online).requires_grad_(False)


@dataclass
class Transition:
    """One utterance-level step. ``prompt_ids`` (optional) are the token ids the policy was given
    for this turn (the whole chat so far, rendered): what an actor that re-samples actions at buffer
    states needs, while ``obs`` is the critic's state text."""

    obs: str
    action: str
    reward: float
    next_obs: str
    done: bool
    mc_return: float
    prompt_ids: list[int] | None = None


STATE_CONTEXTS = ("observation", "turn")


def state_text(observation: str, turn_index: int, context: str = "observation") -> str:
    """The critic's text for the state before turn ``turn_index`` (0-based) of an episode.

    ``observation``: the env's observation alone. ``turn``: prefixed with ``"turn k: "``. Why: an
    env that ends at a horizon makes the value depend on the turns left, which the observation
    alone may not tell (a maze position at turn 1 and at turn 8 look the same); the reference
    critic reads the whole dialogue, whose length tells it.
    """
    if context == "observation":
        return observation
    if context == "turn":
        return f"turn {turn_index + 1}: {observation}"
    raise ValueError(f"critic context must be one of {STATE_CONTEXTS}, got {context!r}")


def trajectory_transitions(trajectory: Any, gamma: float = 1.0, context: str = "observation") -> list[Transition]:
    """A trajectory's turns as transitions; ``mc_return`` is the discounted reward-to-go; the
    states are :func:`state_text` of the observations under ``context``; ``prompt_ids`` are the
    policy's prompt token ids of the turn when its completion recorded them (else None)."""
    turns = list(trajectory.turns)
    out: list[Transition] = []
    ret = 0.0
    returns = []
    for turn in reversed(turns):
        ret = float(turn.reward) + gamma * ret
        returns.append(ret)
    returns.reverse()
    for i, turn in enumerate(turns):
        last = i == len(turns) - 1
        obs = state_text(turn.observation, i, context)
        next_obs = state_text(turns[i + 1].observation, i + 1, context) if not last else obs
        # An episode cut by the horizon is not "done" in the MDP sense only when truncated; the
        # envs here end at their horizon, so the last turn is terminal.
        completion = getattr(turn, "completion", None)
        prompt = list(completion.prompt_token_ids) if completion is not None and completion.prompt_token_ids else None
        out.append(Transition(obs, turn.action, float(turn.reward), next_obs, last, returns[i], prompt))
    return out


class ReplayBuffer:
    """A FIFO buffer of :class:`Transition` with seeded uniform sampling."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = int(capacity)
        self.items: list[Transition] = []

    def __len__(self) -> int:
        return len(self.items)

    def extend(self, items: Sequence[Transition]) -> None:
        self.items.extend(items)
        if len(self.items) > self.capacity:
            self.items = self.items[-self.capacity :]

    def sample(self, n: int, rng: random.Random) -> list[Transition]:
        return [self.items[rng.randrange(len(self.items))] for _ in range(n)]

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "items": [asdict(t) for t in self.items]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.capacity = int(state["capacity"])
        self.items = [Transition(**t) for t in state["items"]]


def critic_loss(
    online: DoubleCritic,
    target: DoubleCritic,
    tokenizer: Any,
    batch: Sequence[Transition],
    gamma: float,
    pi_actions: Sequence[str] | None = None,
    device: Any = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of four MSEs (ArCHer): Qi(s,a) -> r + gamma (1-done) Vtarget_i(s'); Vi(s) -> Qtarget_i(s, a_pi).

    ``pi_actions`` are actions sampled from the current policy at each ``obs``; None uses the
    buffer's action (exact when the buffer holds recent on-policy data).
    """
    n = online.config.max_length
    obs = encode_texts(tokenizer, [t.obs for t in batch], n, device)
    act = encode_texts(tokenizer, [t.action for t in batch], n, device)
    nxt = encode_texts(tokenizer, [t.next_obs for t in batch], n, device)
    a_pi = act if pi_actions is None else encode_texts(tokenizer, list(pi_actions), n, device)
    reward = torch.tensor([t.reward for t in batch], dtype=torch.float32, device=device)
    done = torch.tensor([float(t.done) for t in batch], dtype=torch.float32, device=device)
    q1, q2, v1, v2 = online.qv(obs, act)
    with torch.no_grad():
        tv1, tv2 = target.v(nxt)
        tq1, tq2 = target.q(obs, a_pi)
        y1 = reward + gamma * (1.0 - done) * tv1
        y2 = reward + gamma * (1.0 - done) * tv2
    mse = nn.functional.mse_loss
    loss = mse(q1, y1) + mse(q2, y2) + mse(v1, tq1) + mse(v2, tq2)
    return loss, {
        "losses/critic": float(loss.detach()),
        "critic/q_mean": float(torch.minimum(q1, q2).mean().detach()),
        "critic/v_mean": float(torch.minimum(v1, v2).mean().detach()),
    }


@torch.no_grad()
def advantages(
    critic: DoubleCritic, tokenizer: Any, obs: Sequence[str], actions: Sequence[str], device: Any = None
) -> torch.Tensor:
    """(N,) ``min(Q1, Q2)(s, a) - min(V1, V2)(s)`` with the online critic, no gradient."""
    n = critic.config.max_length
    o = encode_texts(tokenizer, list(obs), n, device)
    a = encode_texts(tokenizer, list(actions), n, device)
    q1, q2, v1, v2 = critic.qv(o, a)
    return (torch.minimum(q1, q2) - torch.minimum(v1, v2)).cpu()
