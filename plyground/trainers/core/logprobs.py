"""Per-token log-probabilities and entropies of given token ids, for a right-padded batch.

Alignment convention (used by every trainer): ``logprobs[b, t] = log p(input_ids[b, t] | input_ids[b, :t])``,
so the returned (B, T) tensor lines up with ``TokenRecord.loss_mask`` and ``TokenRecord.logprobs``
(a 1 in the mask at ``t`` means token ``t`` was sampled by the model). Position 0 has no context
and is 0; so are padded positions.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence
from typing import Any

import torch

from plyground.types import TokenRecord


def collate(
    records: Sequence[TokenRecord], pad_token_id: int, extra: dict[str, Sequence[Sequence[float]]] | None = None
) -> dict[str, torch.Tensor]:
    """Right-pad token records into tensors.

    Returns ``input_ids`` (B, T) long, ``attention_mask`` (B, T) long, ``loss_mask`` (B, T) float and
    ``old_logprobs`` (B, T) float (the behaviour policy's stored log-probabilities). ``extra`` adds
    more per-token float lists under their own names (e.g. per-token advantages), padded with 0.
    """
    if not records:
        raise ValueError("collate needs at least one record")
    width = max(len(r.token_ids) for r in records)
    batch = len(records)
    input_ids = torch.full((batch, width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    loss_mask = torch.zeros((batch, width), dtype=torch.float32)
    old = torch.zeros((batch, width), dtype=torch.float32)
    for b, r in enumerate(records):
        n = len(r.token_ids)
        if len(r.loss_mask) != n:
            raise ValueError(f"record {b}: {n} token ids but {len(r.loss_mask)} mask entries")
        input_ids[b, :n] = torch.tensor(r.token_ids, dtype=torch.long)
        attention[b, :n] = 1
        loss_mask[b, :n] = torch.tensor(r.loss_mask, dtype=torch.float32)
        if r.logprobs:
            old[b, :n] = torch.tensor(r.logprobs, dtype=torch.float32)
    # The first token has no context, so it can never be scored.
    loss_mask[:, 0] = 0.0
    out = {"input_ids": input_ids, "attention_mask": attention, "loss_mask": loss_mask, "old_logprobs": old}
    for name, rows in (extra or {}).items():
        t = torch.zeros((batch, width), dtype=torch.float32)
        for b, row in enumerate(rows):
            t[b, : len(row)] = torch.tensor(list(row), dtype=torch.float32)
        out[name] = t
    return out


def logits_to_token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits at every position -> (B, T) log-probabilities of ``input_ids`` (shifted).

    ``logit[t-1]`` predicts token ``t``; computed as ``gathered logit - logsumexp`` in float32, which
    avoids materialising a second (B, T, V) log-softmax tensor.
    """
    shifted = logits[:, :-1, :].float()
    targets = input_ids[:, 1:]
    picked = shifted.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    token_lp = picked - torch.logsumexp(shifted, dim=-1)
    return torch.cat([token_lp.new_zeros(token_lp.shape[0], 1), token_lp], dim=1)


def logits_to_entropy(logits: torch.Tensor) -> torch.Tensor:
    """(B, T, V) -> (B, T) entropy of the distribution that predicts token ``t`` (0 at ``t = 0``)."""
    shifted = logits[:, :-1, :].float()
    logp = torch.log_softmax(shifted, dim=-1)
    ent = -(logp.exp() * logp).sum(-1)
    return torch.cat([ent.new_zeros(ent.shape[0], 1), ent], dim=1)


def _accepts_logits_to_keep(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters or "kwargs" in str(
            inspect.signature(model.forward)
        )
    except (TypeError, ValueError):
        return False


def token_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
    with_entropy: bool = False,
    with_hidden: bool = False,
    entropy_grad: bool = True,
) -> dict[str, torch.Tensor]:
    """Run ``model`` on a right-padded batch; return ``logprobs`` (B, T), and ``entropy`` (B, T) and
    ``hidden`` (B, T, H, the last layer) when asked. Padded positions hold 0. ``entropy_grad=False``
    computes the entropy outside the autograd graph (a metric only): its softmax over the whole
    vocabulary is then not kept for backward, which saves a (B, T, vocab) activation.

    Position ids are the default ``0..T-1``: with right padding the real tokens sit at the same
    positions as in an unpadded forward pass, so padding does not change the result.

    With ``loss_mask``, only positions that predict a masked token are projected to the vocabulary
    (``logits_to_keep`` with the union of those positions over the batch) and the rest are 0. In a
    multi-turn episode most tokens are prompt and environment text, and the (T, vocab) projection
    and its backward dominate the cost on a small model, so this is several times faster.
    """
    batch, width = input_ids.shape
    valid = attention_mask.to(torch.float32)
    keep: torch.Tensor | None = None
    kwargs: dict[str, Any] = {}
    if loss_mask is not None and _accepts_logits_to_keep(model):
        # Token t is predicted by the logits at t - 1.
        needed = (loss_mask[:, 1:] > 0).any(dim=0).nonzero().flatten()
        if needed.numel() > 0:
            keep = needed
            kwargs["logits_to_keep"] = keep
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=with_hidden, **kwargs)
    result: dict[str, torch.Tensor] = {}
    entropy_context = contextlib.nullcontext() if entropy_grad else torch.no_grad()
    if keep is None:
        result["logprobs"] = logits_to_token_logprobs(out.logits, input_ids) * valid
        if with_entropy:
            with entropy_context:
                result["entropy"] = logits_to_entropy(out.logits) * valid
    else:
        logits = out.logits.float()  # (B, K, V), row k predicts token keep[k] + 1
        targets = input_ids[:, keep + 1]
        picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        full = picked.new_zeros(batch, width)
        result["logprobs"] = full.index_copy(1, keep + 1, picked) * valid
        if with_entropy:
            with entropy_context:
                logp = torch.log_softmax(logits, dim=-1)
                ent = -(logp.exp() * logp).sum(-1)
                result["entropy"] = ent.new_zeros(batch, width).index_copy(1, keep + 1, ent) * valid
    if with_hidden:
        result["hidden"] = out.hidden_states[-1]
    return result
