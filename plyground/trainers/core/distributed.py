"""Data-parallel training: one trainer per process, gradients averaged; FSDP through ``accelerate``.

Launch any trainer script (or ``plyground train``) with ``torchrun`` or ``accelerate launch``; the
trainer sees ``WORLD_SIZE > 1`` and trains data-parallel:

- each process plays its own rollouts (trainers offset their episode seeds by
  :attr:`DataParallel.rank`) and computes its loss on them;
- after the step's micro-batches, the gradients of every trainable parameter (policy, LoRA
  adapters, critics and value heads) are averaged across processes in a few flattened
  all-reduces, so every process takes the same optimizer step. Processes may hold different
  numbers of micro-batches (GRPO drops zero-variance groups): no collective runs inside the
  forward or backward pass, so nothing waits on a process that has less to do;
- only the main process writes metrics and checkpoints; each process adds its own RNG state to
  the checkpoint (``rank_<r>.pt``), so a resumed run continues exactly.

With an FSDP launch config (``configs/accelerate/fsdp_2gpu.yaml``) the model and optimizer go
through ``Accelerator.prepare`` instead, which shards them; sampling then gathers the full weights
(:meth:`DataParallel.full_weights`). FSDP runs collectives inside forward, so every process must
have the same number of micro-batches per step. **The FSDP path has not been run yet** (no
multi-GPU machine so far); the averaging path is tested with two CPU processes
(``tests/trainers/test_distributed.py``). FSDP cannot run on CPU processes: accelerate (1.15)
turns an FSDP launch config into FSDP only on accelerators; on CPU it fails in
``FullyShardedDataParallelPlugin`` when ``fsdp_sync_module_states`` is on ("There are currently
no available devices found"), and otherwise silently sets up plain multi-CPU training and returns
the model unwrapped. Then nothing would average the gradients and the processes would drift apart,
so :class:`DataParallel` refuses FSDP without CUDA, and checks that accelerate really did set up
FSDP.

Single-process runs never import ``accelerate`` and take none of these paths.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

# Gradients are averaged in flattened buckets of about this many elements.
_BUCKET_ELEMENTS = 25_000_000


def launched_world_size() -> int:
    """How many processes the launcher started (``WORLD_SIZE``, set by accelerate and torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


class DataParallel:
    """The process group a launcher set up, as the trainer sees it (see the module docstring).

    Rank and world size come from ``torch.distributed`` (initialised here from the launcher's
    environment when nobody did it yet: gloo on CPU, NCCL on GPUs), so plain ``torchrun`` and
    ``accelerate launch`` behave the same. ``accelerate`` itself is used only for FSDP, which an
    accelerate launch config turns on (``ACCELERATE_USE_FSDP``).
    """

    def __init__(self) -> None:
        import torch.distributed as dist

        self.fsdp = os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true", "yes")
        self.accelerator: Any = None
        if self.fsdp:
            if not torch.cuda.is_available():
                raise RuntimeError(
                    "FSDP was asked for (ACCELERATE_USE_FSDP) but there is no CUDA GPU: accelerate shards "
                    "with FSDP only on accelerators, and on CPU processes it would train unsharded with no "
                    "gradient averaging. Launch without the FSDP config for data parallel on CPU."
                )
            try:
                from accelerate import Accelerator
                from accelerate.utils import DistributedType
            except ImportError as exc:  # pragma: no cover - accelerate is in the scale extra
                raise ImportError("FSDP training needs accelerate: pip install 'plyground[scale]'") from exc
            self.accelerator = Accelerator()
            if self.accelerator.distributed_type != DistributedType.FSDP:
                raise RuntimeError(
                    f"FSDP was asked for (ACCELERATE_USE_FSDP) but accelerate set up "
                    f"{self.accelerator.distributed_type}; nothing would shard the model or average gradients"
                )
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.rank = int(dist.get_rank())
        self.world_size = int(dist.get_world_size())
        self.is_main = self.rank == 0
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)

    def prepare(self, model: Any, optimizer: Any) -> tuple[Any, Any]:
        """FSDP: shard through accelerate. Otherwise the model stays as it is and gradients are
        averaged by :meth:`average_gradients`."""
        if not self.fsdp:
            return model, optimizer
        prepared_model, prepared_optimizer = self.accelerator.prepare(model, optimizer)
        return prepared_model, prepared_optimizer

    def broadcast_parameters(self, params: list[torch.nn.Parameter], unwrapped: bool = False) -> None:
        """Start every process from the main process's weights. ``unwrapped``: the parameters of a
        module outside the prepared model (a critic), broadcast under FSDP too."""
        import torch.distributed as dist

        if self.fsdp and not unwrapped:
            return  # accelerate's FSDP preparation syncs module states
        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, src=0)

    def average_gradients(self, params: list[torch.nn.Parameter], unwrapped: bool = False) -> None:
        """Average ``params``' gradients across processes (a missing gradient counts as zero).
        ``unwrapped``: the parameters of a module outside the prepared model (a critic with its own
        optimizer), averaged under FSDP too."""
        import torch.distributed as dist

        if (self.fsdp and not unwrapped) or not params:
            return  # FSDP reduces its shards' gradients in backward
        grads = []
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        start = 0
        while start < len(grads):
            end, size = start, 0
            while end < len(grads) and (end == start or size + grads[end].numel() <= _BUCKET_ELEMENTS):
                size += grads[end].numel()
                end += 1
            bucket = grads[start:end]
            flat = torch.cat([g.reshape(-1) for g in bucket])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat.div_(self.world_size)
            offset = 0
            for g in bucket:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()
            start = end

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every process (so that all take the same collective calls)."""
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item() > 0)

    def clip_grad_norm(self, model: Any, params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
        if self.fsdp:  # the norm over all shards
            norm: torch.Tensor = self.accelerator.clip_grad_norm_(model.parameters(), max_norm)
            return norm
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def model_state_dict(self, model: Any) -> dict[str, Any]:
        """The full state dict (FSDP shards gathered); every process must call this."""
        if not self.fsdp:
            state: dict[str, Any] = model.state_dict()
            return state
        gathered: dict[str, Any] = self.accelerator.get_state_dict(model)
        return gathered

    def load_model_state(self, model: Any, state: dict[str, Any]) -> None:
        if self.fsdp:
            raise NotImplementedError(
                "resuming an FSDP run is not supported yet: its checkpoint holds the gathered weights, but "
                "loading them back into the shards is not wired in"
            )
        model.load_state_dict(state)

    def wait(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    @contextlib.contextmanager
    def full_weights(self, model: Any) -> Iterator[None]:
        """Whole parameters on every process while sampling (FSDP keeps only shards between steps)."""
        if not self.fsdp:
            yield
            return
        from torch.distributed.fsdp import FullyShardedDataParallel

        with FullyShardedDataParallel.summon_full_params(model, writeback=False):
            yield
