"""One process of the data-parallel SFT run in ``test_distributed.py`` (started by torchrun)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from plyground.inference.models import tiny_model
from plyground.trainers import SFTConfig, SFTTrainer
from plyground.types import TokenRecord


def records() -> list[TokenRecord]:
    # Equal lengths, so averaging per-process token means equals the mean over all tokens.
    out = []
    for i in range(8):
        ids = [1 + (7 * i + j) % 200 for j in range(12)]
        out.append(TokenRecord(ids, [0] * 4 + [1] * 8))
    return out


def main(out_dir: str, batch_size: int, resume_steps: int | None = None) -> None:
    torch.set_num_threads(1)
    model, tok = tiny_model()
    config = SFTConfig(out_dir=out_dir, data_path="unused", batch_size=batch_size, micro_batch_size=1, total_steps=3, lr=5e-2,
                       device="cpu", shuffle=True, seed=3, save_every=1)  # fmt: skip
    trainer = SFTTrainer(config, model, tok, records=records())
    if resume_steps is None:
        trainer.train()
    else:  # stop after resume_steps, then a fresh trainer resumes from the checkpoint
        trainer.train(max_steps=resume_steps)
        model, tok = tiny_model(seed=1)  # other initial weights: everything must come from the checkpoint
        trainer = SFTTrainer(config, model, tok, records=records())
        assert trainer.resume()
        trainer.train()
    digest = hashlib.sha256()
    for name, tensor in sorted(trainer.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float64).numpy().round(6).tobytes())
    result = {"rank": trainer.rank, "world_size": trainer.world_size, "digest": digest.hexdigest(),
              "norm_weight": trainer.model.state_dict()["model.norm.weight"][:4].tolist()}  # fmt: skip
    Path(out_dir, f"result_{trainer.rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
