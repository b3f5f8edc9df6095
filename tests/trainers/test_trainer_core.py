"""Log-probabilities, gradient accumulation and exact checkpoint/resume on the tiny model."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from plyground.inference.models import tiny_model
from plyground.trainers.core.logprobs import collate, token_logprobs
from plyground.trainers.core.loop import EpochSampler, TrainConfig
from plyground.trainers.sft import SFTConfig, SFTTrainer
from plyground.types import TokenRecord


def _records(n: int = 6, seed: int = 0) -> list[TokenRecord]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = 8 + 3 * i
        ids = torch.randint(10, 2000, (length,), generator=gen).tolist()
        mask = [0] * (length // 2) + [1] * (length - length // 2)
        out.append(TokenRecord(ids, mask, [0.0] * length))
    return out


def test_logprobs_match_a_manual_computation() -> None:
    model, _ = tiny_model()
    records = _records(3)
    batch = collate(records, pad_token_id=0)
    full = token_logprobs(model, batch["input_ids"], batch["attention_mask"], with_entropy=True)
    only_masked = token_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"])
    for b, r in enumerate(records):
        ids = torch.tensor([r.token_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
        manual = [0.0] + [float(logp[t - 1, r.token_ids[t]]) for t in range(1, len(r.token_ids))]
        entropy = [0.0] + [float(-(logp[t - 1].exp() * logp[t - 1]).sum()) for t in range(1, len(r.token_ids))]
        n = len(r.token_ids)
        assert torch.allclose(full["logprobs"][b, :n], torch.tensor(manual), atol=1e-4)
        assert torch.allclose(full["entropy"][b, :n], torch.tensor(entropy), atol=1e-3)
        mask = batch["loss_mask"][b, :n]
        assert torch.allclose(only_masked["logprobs"][b, :n] * mask, torch.tensor(manual) * mask, atol=1e-4)
        assert (full["logprobs"][b, n:] == 0).all()  # padding holds 0


def _sft(tmp: Path, records: list[TokenRecord], **kw: Any) -> SFTTrainer:
    model, tok = tiny_model()
    args: dict[str, Any] = {"out_dir": str(tmp), "data_path": "unused", "lr": 1e-3, "total_steps": 4, "batch_size": 4}
    args.update(kw)
    return SFTTrainer(SFTConfig(**args), model, tok, records=records)


def _grads_of_first_step(trainer: SFTTrainer) -> list[torch.Tensor]:
    captured: list[torch.Tensor] = []
    step = trainer.optimizer.step

    def capture(*a: Any, **k: Any) -> Any:
        captured.extend(p.grad.detach().clone() for p in trainer.params)
        return step(*a, **k)

    trainer.optimizer.step = capture  # type: ignore[method-assign]
    trainer.train_step()
    return captured


def test_grad_accumulation_2x2_equals_one_batch_of_4(tmp_path: Path) -> None:
    records = _records(4)
    one = _grads_of_first_step(_sft(tmp_path / "a", records, micro_batch_size=4, max_grad_norm=0.0, shuffle=False))
    acc = _grads_of_first_step(_sft(tmp_path / "b", records, micro_batch_size=2, max_grad_norm=0.0, shuffle=False))
    assert len(one) == len(acc)
    for g1, g2 in zip(one, acc, strict=True):
        assert torch.allclose(g1, g2, rtol=1e-4, atol=1e-7)


def _with_dropout(trainer: SFTTrainer) -> SFTTrainer:
    # Dropout draws from the global torch RNG, so exact resume needs the RNG state restored too.
    for module in trainer.model.modules():
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = 0.2
    return trainer


def test_checkpoint_resume_is_exact(tmp_path: Path) -> None:
    records = _records(6)
    kw = {"total_steps": 4, "micro_batch_size": 2, "lr_schedule": "linear", "warmup_steps": 1, "save_every": 2}
    straight = _with_dropout(_sft(tmp_path / "straight", records, **kw))
    straight.train()
    after_straight = (random.random(), float(np.random.rand()), float(torch.rand(1)))

    first = _with_dropout(_sft(tmp_path / "resumed", records, **kw))
    first.train(max_steps=2)  # then "killed": every object is thrown away
    del first
    torch.manual_seed(1234)  # a fresh process would not have the old RNG state
    second = _with_dropout(_sft(tmp_path / "resumed", records, **kw))
    assert second.resume() and second.step == 2
    second.train()
    assert second.step == 4
    for (name, p1), (_, p2) in zip(straight.model.named_parameters(), second.model.named_parameters(), strict=True):
        assert torch.equal(p1, p2), name
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == after_straight
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4  # steps 1..4, none duplicated by the resume


def test_epoch_sampler_resumes_mid_epoch() -> None:
    a = EpochSampler(5, seed=3)
    first = a.take(7)
    b = EpochSampler(5, seed=3)
    b.take(3)
    c = EpochSampler(5, seed=3)
    c.load_state_dict(b.state_dict())
    assert c.take(4) == first[3:]
    assert sorted(first[:5]) == list(range(5))


def test_config_rejects_bad_combinations() -> None:
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(total_steps=2, warmup_steps=3)
    with pytest.raises(ValueError, match="exactly one data source"):
        SFTConfig()
    with pytest.raises(ValueError, match="multiple of micro_batch_size"):
        SFTConfig(data_path="x", batch_size=6, micro_batch_size=4)
    with pytest.raises(ValueError, match="tensorboard and wandb"):
        TrainConfig(report_to=["mlflow"])


def test_lora_wraps_the_model(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    trainer = _sft(tmp_path, _records(2), lora=True, lora_r=2, total_steps=1, batch_size=2, micro_batch_size=2)
    trainable = sum(p.numel() for p in trainer.params)
    assert 0 < trainable < sum(p.numel() for p in trainer.base_model.parameters()) / 10
    trainer.train()
    assert trainer.step == 1
