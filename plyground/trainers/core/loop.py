"""The optimisation loop every trainer shares: optimiser, schedule, accumulation, checkpoints, metrics.

A trainer subclasses :class:`Trainer` and writes two methods, the ALGO LOGIC:

- ``make_step_batch()``: the micro-batches of one optimizer step (roll out, score, compute
  advantages; or read the next examples of a dataset);
- ``compute_loss(micro, totals)``: the scalar loss of one micro-batch and its metrics.

Everything else here is plumbing (TRY NOT TO MODIFY): AdamW with a constant or linear warmup/decay
schedule, gradient accumulation normalised by the step's totals (so 2 x 2 equals one batch of 4),
gradient clipping, bf16 autocast on CUDA, optional LoRA, checkpoints that restore model, optimiser,
scheduler, RNG states, data position and buffers exactly, JSONL metrics with a rich live table, and
``on_update`` hooks (weight sync to the inference backend lives there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from plyground.trainers.core.distributed import DataParallel, launched_world_size

CHECKPOINT_FILE = "trainer.pt"


def hfield(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field with ``metadata={"help": ...}`` (mutable defaults: pass ``default_factory``)."""
    if default is not dataclasses.MISSING:
        kwargs["default"] = default
    return field(metadata={"help": help}, **kwargs)


@dataclass
class TrainConfig:
    """Settings shared by every trainer: optimisation, precision, LoRA, checkpoints and logging.

    Trainer configs (``SFTConfig``, ``GRPOConfig``, ...) extend it with their own fields; every field
    carries ``metadata["help"]`` and ``__post_init__`` rejects bad combinations before any model loads.
    """

    # model and output
    model: str = hfield("tiny", "model for plyground.inference.models.load_model: default | tiny | a folder")
    out_dir: str = hfield("runs/train", "folder for metrics.jsonl, checkpoints/ and config.json")
    seed: int = hfield(0, "seed for python, numpy and torch RNGs, data order and rollout sampling")
    device: str | None = hfield(None, "torch device; default: cuda when available, else cpu")
    # optimisation
    total_steps: int = hfield(10, "optimizer steps in the whole run")
    micro_batch_size: int = hfield(4, "sequences per forward/backward; the rest is gradient accumulation")
    lr: float = hfield(1e-5, "peak learning rate (AdamW)")
    weight_decay: float = hfield(0.0, "AdamW decoupled weight decay")
    adam_betas: tuple[float, float] = hfield((0.9, 0.999), "AdamW betas")
    adam_eps: float = hfield(1e-8, "AdamW epsilon")
    lr_schedule: Literal["constant", "linear"] = hfield(
        "constant", "constant (after warmup) or linear decay to 0 at total_steps (after warmup)"
    )
    warmup_steps: int = hfield(0, "steps of linear warmup from 0 to lr")
    max_grad_norm: float = hfield(1.0, "clip the global gradient norm to this (0 = no clipping)")
    mixed_precision: Literal["auto", "bf16", "no"] = hfield(
        "auto", "auto: bf16 autocast on CUDA when supported, off on CPU; bf16: require it; no: fp32"
    )
    deterministic: bool = hfield(False, "torch.use_deterministic_algorithms (bit-exact reruns on GPU)")
    distributed: Literal["auto", "no"] = hfield(
        "auto", "auto: data parallel when started by accelerate launch / torchrun (WORLD_SIZE > 1); no: ignore"
    )
    # LoRA (peft)
    lora: bool = hfield(False, "train LoRA adapters (needs peft: pip install 'plyground[scale]')")
    lora_r: int = hfield(8, "LoRA rank")
    lora_alpha: int = hfield(16, "LoRA alpha (scale = alpha / r)")
    lora_dropout: float = hfield(0.0, "LoRA dropout")
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], metadata={"help": "module names that get adapters"})
    # checkpoints and logging
    save_every: int = hfield(0, "checkpoint every N steps (0: only at the end of the run)")
    keep_checkpoints: int = hfield(2, "most recent checkpoints kept on disk")
    log_every: int = hfield(1, "write metrics every N steps")
    live_table: bool = hfield(False, "show a rich live table of the latest metrics on stderr")
    report_to: list[str] = field(default_factory=list, metadata={"help": "also log to: tensorboard, wandb (if installed)"})

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")
        if self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps={self.total_steps}], got {self.warmup_steps}")
        if self.lr_schedule not in ("constant", "linear"):
            raise ValueError(f"lr_schedule must be constant or linear, got {self.lr_schedule!r}")
        if self.distributed not in ("auto", "no"):
            raise ValueError(f"distributed must be auto or no, got {self.distributed!r}")
        if self.mixed_precision not in ("auto", "bf16", "no"):
            raise ValueError(f"mixed_precision must be auto, bf16 or no, got {self.mixed_precision!r}")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if self.save_every < 0 or self.keep_checkpoints < 1 or self.log_every < 1:
            raise ValueError("save_every must be >= 0, keep_checkpoints and log_every >= 1")
        bad = [r for r in self.report_to if r not in ("tensorboard", "wandb")]
        if bad:
            raise ValueError(f"report_to accepts tensorboard and wandb, got {bad}")
        if self.lora and self.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {self.lora_r}")
        self.adam_betas = (float(self.adam_betas[0]), float(self.adam_betas[1]))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class StepTotals:
    """Counts over all micro-batches of one optimizer step, for exact accumulation."""

    tokens: float
    sequences: float
    micro_batches: int


# -- plumbing: LoRA, precision, RNG -----------------------------------------------------------------
def apply_lora(model: Any, config: TrainConfig) -> Any:
    """Wrap ``model`` with peft LoRA adapters (injected in place, so a backend holding the base
    model samples with the adapters too)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ImportError(
            "lora=True needs peft, which is not installed: pip install 'plyground[scale]' (or pip install peft)"
        ) from exc
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    warm, total = config.warmup_steps, config.total_steps

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if config.lr_schedule == "linear":
            return max(0.0, (total - step) / max(1, total - warm))
        return 1.0

    return factor


def split_micro(batch: dict[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    """Split a batch of tensors (first dim = sequences) into micro-batches of ``size``."""
    n = next(iter(batch.values())).shape[0]
    return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, n, size)]


@dataclass
class EpochSampler:
    """Indices into a dataset of ``size`` examples, reshuffled each epoch by ``(seed, epoch)``.

    Its whole state is ``(epoch, index)``, so a resumed run reads exactly the examples the
    uninterrupted run would have read next.
    """

    size: int
    seed: int = 0
    shuffle: bool = True
    epoch: int = 0
    index: int = 0

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return [int(i) for i in torch.randperm(self.size, generator=gen)]

    def take(self, n: int) -> list[int]:
        if self.size < 1:
            raise ValueError("the dataset is empty")
        out: list[int] = []
        order = self._order()
        while len(out) < n:
            if self.index >= self.size:
                self.epoch, self.index = self.epoch + 1, 0
                order = self._order()
            out.append(order[self.index])
            self.index += 1
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


# -- metrics ---------------------------------------------------------------------------------------
class MetricsLogger:
    """Metrics to ``metrics.jsonl`` (one ``{"step": n, "losses/...": x, ...}`` line per log), plus
    a rich live table, TensorBoard and W&B when asked (each only if installed)."""

    def __init__(self, out_dir: Path, live: bool = False, report_to: list[str] | None = None,
                 run_config: dict[str, Any] | None = None, write: bool = True) -> None:
        self.path = out_dir / "metrics.jsonl"
        self.history: list[dict[str, Any]] = []
        self.write = write  # False: keep the history in memory only (a data-parallel worker)
        self._live: Any = None
        self._tb: Any = None
        self._wandb: Any = None
        if not write:
            live, report_to = False, []
        for target in report_to or []:
            if target == "tensorboard":
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as exc:
                    raise ImportError("report_to tensorboard needs it installed: pip install tensorboard") from exc
                self._tb = SummaryWriter(str(out_dir / "tensorboard"))
            elif target == "wandb":
                try:
                    import wandb
                except ImportError as exc:
                    raise ImportError("report_to wandb needs it installed: pip install wandb") from exc
                self._wandb = wandb.init(dir=str(out_dir), config=run_config or {})
        if live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), refresh_per_second=4, transient=False)
            self._live.start()

    def truncate_after(self, step: int) -> None:
        """On resume: forget lines the checkpoint does not cover (written after it, before the kill)."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
        self.path.write_text("".join(k + "\n" for k in kept))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": step, **{k: _scalar(v) for k, v in metrics.items()}}
        self.history.append(record)
        if not self.write:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(record, step=step)
        if self._live is not None:
            self._live.update(self._table(record))

    @staticmethod
    def _table(record: dict[str, Any]) -> Any:
        from rich.table import Table

        table = Table(title=f"step {record['step']}", show_header=True, header_style="bold")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key in sorted(k for k in record if k != "step"):
            value = record[key]
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        return table

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _scalar(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().item())
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


# -- weight sync -----------------------------------------------------------------------------------
class SyncWeights:
    """An ``on_update`` hook that brings the inference backend up to date after each update.

    - ``HFBackend`` sharing the trainer's model object: nothing to copy (the update happened in
      place); only the weight version is counted.
    - any other backend: ``push(model, version)`` is called (e.g. a vLLM/SGLang weight push), or
      ``backend.update_weights(state_dict)`` when the backend has that method.
    """

    def __init__(self, backend: Any = None, push: Callable[[Any, int], None] | None = None) -> None:
        self.backend = backend
        self.push = push
        self.version = 0

    def __call__(self, trainer: Trainer) -> None:
        self.version = trainer.step
        if self.push is not None:
            self.push(trainer.base_model, self.version)
        elif self.backend is not None and getattr(self.backend, "model", None) is trainer.base_model:
            pass  # shared in memory: already in sync
        elif self.backend is not None and callable(getattr(self.backend, "update_weights", None)):
            self.backend.update_weights(trainer.base_model.state_dict())
        elif self.backend is not None:
            raise TypeError(
                f"cannot sync weights to {type(self.backend).__name__}: it does not share the model and "
                "has no update_weights(); pass SyncWeights(push=callable)"
            )
        trainer.step_metrics["charts/weight_version"] = float(self.version)


Hook = Callable[["Trainer"], None]


# -- the loop ----------------------------------------------------------------------------------------
class Trainer:
    """Base trainer: owns model, optimiser, scheduler, checkpoints, metrics and hooks.

    Subclasses implement :meth:`make_step_batch` and :meth:`compute_loss`, and, when they keep data
    position or buffers, :meth:`trainer_state` / :meth:`load_trainer_state`. ``extra_modules`` (a
    value head, a critic) are trained and checkpointed with the model. Under data parallelism the
    main process checkpoints its trainer state for all; a trainer whose processes each gather their
    own data (search results, a replay buffer) sets ``per_rank_state`` so that every process saves
    and resumes its own.
    """

    config: TrainConfig
    per_rank_state: ClassVar[bool] = False

    def __init__(
        self,
        config: TrainConfig,
        model: Any = None,
        tokenizer: Any = None,
        extra_modules: dict[str, torch.nn.Module] | None = None,
        on_update: list[Hook] | None = None,
    ) -> None:
        self.config = config
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        seed_everything(config.seed)
        self.parallel: DataParallel | None = None
        if config.distributed == "auto" and launched_world_size() > 1:
            self.parallel = DataParallel()
        self.rank = self.parallel.rank if self.parallel is not None else 0
        self.world_size = self.parallel.world_size if self.parallel is not None else 1
        if model is None:
            from plyground.inference.models import load_model

            model, tokenizer = load_model(config.model)
        if tokenizer is None:
            raise ValueError("a model passed to a trainer needs its tokenizer too")
        if self.parallel is not None:
            self.device = torch.device(self.parallel.device)
        else:
            self.device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.base_model = model.to(self.device)
        self.model = apply_lora(model, config) if config.lora else model
        self.tokenizer = tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_token_id = int(pad)
        self.extra_modules = torch.nn.ModuleDict(extra_modules or {}).to(self.device)
        self.on_update: list[Hook] = list(on_update or [])
        params = [p for p in self.model.parameters() if p.requires_grad]
        params += [p for p in self.extra_modules.parameters() if p.requires_grad]
        self.params = params
        self.optimizer = torch.optim.AdamW(
            params, lr=config.lr, betas=config.adam_betas, eps=config.adam_eps, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(config))
        if self.parallel is not None:
            self.parallel.broadcast_parameters(params)
            self.model, self.optimizer = self.parallel.prepare(self.model, self.optimizer)
        self.use_bf16 = self._resolve_precision()
        self.step = 0
        self.step_metrics: dict[str, float] = {}
        self.out_dir = Path(config.out_dir)
        self.logger: MetricsLogger | None = None

    def _resolve_precision(self) -> bool:
        cuda_bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        if self.config.mixed_precision == "bf16" and not cuda_bf16:
            raise ValueError("mixed_precision=bf16 needs a CUDA device with bf16 support; use auto or no")
        return self.config.mixed_precision != "no" and cuda_bf16

    def full_weights(self) -> contextlib.AbstractContextManager[Any]:
        """Around sampling from the policy: whole weights on this process (FSDP shards them)."""
        if self.parallel is not None:
            return self.parallel.full_weights(self.model)
        return contextlib.nullcontext()

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.use_bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- ALGO LOGIC: subclasses write these ---------------------------------------------------------
    def make_step_batch(self) -> list[dict[str, torch.Tensor]]:
        """The micro-batches of the next optimizer step (each has a (B, T) ``loss_mask``)."""
        raise NotImplementedError  # abstract: the trainer's ALGO LOGIC

    def compute_loss(
        self, micro: dict[str, torch.Tensor], totals: StepTotals
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one micro-batch, already normalised by the step's totals, and its metrics."""
        raise NotImplementedError  # abstract: the trainer's ALGO LOGIC

    def trainer_state(self) -> dict[str, Any]:
        """Data position and buffers to checkpoint (torch.save-able)."""
        return {}

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`trainer_state` returned."""

    def close(self) -> None:
        """Release what the trainer started outside itself (GRPO: a rollout server it launched);
        the base trainer starts nothing. ``with Trainer(...) as trainer:`` calls it on exit."""

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one optimizer step --------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        start = time.perf_counter()
        self.step_metrics = {}
        micro_batches = self.make_step_batch()
        rollout_s = time.perf_counter() - start
        totals = StepTotals(
            tokens=float(sum(float(m["loss_mask"].sum()) for m in micro_batches)),
            sequences=float(sum(m["loss_mask"].shape[0] for m in micro_batches)),
            micro_batches=len(micro_batches),
        )
        self.model.train()
        sums: dict[str, float] = {}
        for micro in micro_batches:
            micro = {k: v.to(self.device) for k, v in micro.items()}
            with self.autocast():
                loss, metrics = self.compute_loss(micro, totals)
            loss.backward()
            # Metrics are averaged over micro-batches weighted by their share of the sequences.
            share = micro["loss_mask"].shape[0] / max(totals.sequences, 1.0)
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + share * float(value)
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        if self.parallel is not None:
            self.parallel.average_gradients(self.params)
            grad_norm = self.parallel.clip_grad_norm(self.model, self.params, max_norm)
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        elapsed = time.perf_counter() - start
        metrics = {
            **sums,
            **self.step_metrics,
            "charts/lr": float(lr),
            "charts/grad_norm": float(grad_norm),
            "charts/tokens": totals.tokens,
            "charts/step_s": elapsed,
            "charts/rollout_s": rollout_s,
        }
        self.step_metrics = metrics
        for hook in self.on_update:
            hook(self)
        return self.step_metrics

    # -- the run ---------------------------------------------------------------------------------
    def train(self, max_steps: int | None = None) -> list[dict[str, Any]]:
        """Run to ``config.total_steps`` (or ``max_steps`` more steps, then checkpoint and stop:
        how tests simulate a kill). Returns the metrics logged in this call."""
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2, default=str) + "\n")
        self.logger = MetricsLogger(
            self.out_dir, self.config.live_table, self.config.report_to, self.config.to_dict(), write=self.is_main
        )
        if self.is_main:
            self.logger.truncate_after(self.step)
        stop = self.config.total_steps if max_steps is None else min(self.config.total_steps, self.step + max_steps)
        try:
            while self.step < stop:
                metrics = self.train_step()
                if self.step % self.config.log_every == 0 or self.step == stop:
                    self.logger.log(self.step, metrics)
                if (self.config.save_every and self.step % self.config.save_every == 0) or self.step == stop:
                    self.save_checkpoint()
        finally:
            self.logger.close()
        return self.logger.history

    # -- checkpoints -------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def is_main(self) -> bool:
        """Whether this process writes metrics and checkpoints (always, unless data parallel)."""
        return self.parallel is None or self.parallel.is_main

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_XXXXXX/trainer.pt`` atomically (temp folder, then rename) and
        point ``checkpoints/latest`` at it; older ones beyond ``keep_checkpoints`` are removed.
        Data parallel: every process calls this; the main one writes ``trainer.pt`` and each one
        its own ``rank_<r>.pt`` (RNG states; optimizer shard under FSDP)."""
        final = self.checkpoint_dir / f"step_{self.step:06d}"
        tmp = self.checkpoint_dir / f".tmp_step_{self.step:06d}"
        if self.parallel is None:
            tmp = tmp.with_name(f"{tmp.name}_{os.getpid()}")
        model_state = self.parallel.model_state_dict(self.model) if self.parallel is not None else self.model.state_dict()
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        if self.parallel is not None:
            self.parallel.wait()  # the folder exists before anyone writes into it
            per_rank: dict[str, Any] = {"rng": rng_state()}
            if self.per_rank_state:
                per_rank["trainer"] = self.trainer_state()
            if self.parallel.fsdp:
                per_rank["optimizer"] = self.optimizer.state_dict()
            torch.save(per_rank, tmp / f"rank_{self.rank}.pt")
        if self.is_main:
            state = {
                "step": self.step,
                "model": model_state,
                "extra_modules": self.extra_modules.state_dict(),
                "optimizer": None if (self.parallel is not None and self.parallel.fsdp) else self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(),
                "trainer": self.trainer_state(),
                "config": self.config.to_dict(),
                "world_size": self.world_size,
            }
            torch.save(state, tmp / CHECKPOINT_FILE)
        if self.parallel is not None:
            self.parallel.wait()  # every rank file is written before the folder is published
        if self.is_main:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            latest_tmp = self.checkpoint_dir / "latest.tmp"
            latest_tmp.write_text(final.name + "\n")
            os.replace(latest_tmp, self.checkpoint_dir / "latest")
            kept = sorted(p for p in self.checkpoint_dir.glob("step_*") if p.is_dir())
            for old in kept[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        if self.parallel is not None:
            self.parallel.wait()
        return final

    def latest_checkpoint(self) -> Path | None:
        pointer = self.checkpoint_dir / "latest"
        if not pointer.exists():
            return None
        path = self.checkpoint_dir / pointer.read_text().strip()
        return path if (path / CHECKPOINT_FILE).exists() else None

    def resume(self, path: str | Path | None = None) -> bool:
        """Load the latest checkpoint under ``out_dir`` (or ``path``); False when there is none."""
        folder = Path(path) if path is not None else self.latest_checkpoint()
        if folder is None:
            return False
        # weights_only=False: the file holds python RNG tuples and numpy state; it is our own file.
        state = torch.load(folder / CHECKPOINT_FILE, map_location=self.device, weights_only=False)
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.world_size:
            raise ValueError(
                f"{folder} was written by {saved_world} process(es); resume it with the same number (now {self.world_size})"
            )
        if self.parallel is not None:
            self.parallel.load_model_state(self.model, state["model"])
        else:
            self.model.load_state_dict(state["model"])
        self.extra_modules.load_state_dict(state["extra_modules"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.load_trainer_state(state["trainer"])
        rng = state["rng"]
        if self.parallel is not None:
            own = torch.load(folder / f"rank_{self.rank}.pt", map_location="cpu", weights_only=False)
            rng = own["rng"]
            if self.per_rank_state:
                self.load_trainer_state(own["trainer"])
        set_rng_state(rng)
        self.step = int(state["step"])
        return True


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file (blank lines and a torn last line are skipped)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                with contextlib.suppress(json.JSONDecodeError):
                    yield json.loads(line)
