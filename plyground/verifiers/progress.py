"""Progress verifiers: how much each step of a reasoning trace moves a prover policy's chance of
getting the answer right.

A response is cut into **steps** (:func:`split_episodes`: on ``"\\n\\n"``, consecutive paragraphs
grouped so there are at most ``max_episodes``). For every prefix ``z_0..j`` a prover policy (any
backend) samples ``K`` completions; the fraction whose answer is right estimates ``J(z_0..j)``
(:func:`estimate_j_many`; ``J`` of the empty prefix is the prover's success before any reasoning).
The **progress** of step ``j`` is ``J(z_0..j) - J(z_0..j-1)`` (:func:`progress`).

Two ways to continue a prefix, one each from the two papers that use this signal:

- ``forced`` (MRT, Qu et al. 2025): the prefix, then :data:`FORCE_SUFFIX` ("time is up, give the
  final answer"): ``J`` is the success of stopping right there, a short completion;
- ``rollout`` (PAV, Setlur et al. 2024, "Rewarding Progress"): the prover keeps reasoning from the
  prefix to its own answer, so progress is the step's advantage under the prover,
  ``Q(s, step) - V(s)``, estimated by Monte Carlo; completions are longer.

:class:`ProgressVerifier` puts this behind the ``Verifier`` protocol for a single response, and
gives per-step progress with :meth:`ProgressVerifier.steps`. ``plyground.trainers.mrt`` trains
with the same functions.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from plyground.types import Chat, JsonRecord, Message, SamplingParams, Task, Verdict

FORCE_SUFFIX = (
    "\n\nTime is up. Given the time I've spent and the approaches I've tried, I should stop thinking "
    "and give the final answer now, within \\boxed{}.\n\nFinal answer: "
)


def split_episodes(text: str, sep: str = "\n\n", max_episodes: int | None = None) -> list[str]:
    """``text`` cut on ``sep`` into episodes that concatenate back to ``text`` (each keeps its
    trailing separator); with ``max_episodes``, consecutive paragraphs are grouped into that many
    episodes of near-equal paragraph counts. Empty text has no episodes."""
    if not text:
        return []
    parts = text.split(sep)
    paras = [p + sep for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    # A trailing separator belongs to the last paragraph.
    if not paras:
        return [text]
    if max_episodes is None or len(paras) <= max_episodes:
        return paras
    bounds = [round(i * len(paras) / max_episodes) for i in range(max_episodes + 1)]
    return ["".join(paras[bounds[i] : bounds[i + 1]]) for i in range(max_episodes)]


def forced_chat(chat: Sequence[Message], prefix: str, suffix: str = FORCE_SUFFIX) -> Chat:
    """The prompt chat followed by the partial reply ``prefix`` + ``suffix``, to be continued."""
    return [*chat, Message("assistant", prefix + suffix)]


def progress(j_values: Sequence[float]) -> list[float]:
    """``J`` at prefixes ``[empty, z_0, z_0..1, ...]`` -> progress of each episode, ``J_j - J_{j-1}``."""
    return [float(j_values[i + 1]) - float(j_values[i]) for i in range(len(j_values) - 1)]


def answer_checker(gold: str) -> Callable[[str], bool]:
    """A forced completion is correct when its final answer (``\\boxed{}`` or a trailing number)
    equals ``gold`` (:func:`plyground.verifiers.math.is_equivalent`)."""
    from plyground.verifiers.math import extract_answer, is_equivalent, parse_exact_number

    numeric_gold = parse_exact_number(gold) is not None

    def check(text: str) -> bool:
        pred = extract_answer(text)
        if pred is None:
            stripped = text.strip().split()
            pred = stripped[0].rstrip(".") if stripped else None
        if pred is None:
            return False
        if numeric_gold and parse_exact_number(pred) is None:
            return False  # a numeric answer needs a number: skip the symbolic checker's worker process
        return is_equivalent(pred, gold)

    return check


def estimate_j(
    backend: Any, chat: Sequence[Message], episodes: Sequence[str], correct: Callable[[str], bool],
    k: int = 8, params: SamplingParams | None = None, suffix: str = FORCE_SUFFIX,
) -> list[float]:
    """``J`` at every prefix ``[empty, z_0, z_0..1, ...]``: the fraction of ``k`` forced-answer
    completions that ``correct`` accepts. A backend with a tokenizer and ``generate_ids`` continues
    the rendered partial reply token by token; others get the chat with the partial reply last."""
    return estimate_j_many(backend, [(chat, episodes, correct)], k, params, suffix)[0]


def estimate_j_many(
    backend: Any, items: Sequence[tuple[Sequence[Message], Sequence[str], Callable[[str], bool]]],
    k: int = 8, params: SamplingParams | None = None, suffix: str = FORCE_SUFFIX,
) -> list[list[float]]:
    """:func:`estimate_j` for several traces ``(chat, episodes, correct)`` in one backend call."""
    params = params or SamplingParams(max_tokens=16, temperature=1.0)
    sampling = dataclasses.replace(params, n=k)
    chats: list[Chat] = []
    owners: list[int] = []
    for i, (chat, episodes, _) in enumerate(items):
        for j in range(len(episodes) + 1):
            chats.append(forced_chat(chat, "".join(episodes[:j]), suffix))
            owners.append(i)
    if not chats:
        return [[] for _ in items]
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is not None and hasattr(backend, "generate_ids"):
        outs = backend.generate_ids([_partial_ids(tokenizer, c) for c in chats], sampling)
    else:
        outs = backend.generate(chats, sampling)
    result: list[list[float]] = [[] for _ in items]
    for owner, comps in zip(owners, outs, strict=True):
        check = items[owner][2]
        result[owner].append(sum(bool(check(c.text)) for c in comps) / max(len(comps), 1))
    return result


def _partial_ids(tokenizer: Any, chat: Chat) -> list[int]:
    head = [{"role": m.role, "content": m.content} for m in chat[:-1]]
    text = tokenizer.apply_chat_template(head, tokenize=False, add_generation_prompt=True) + chat[-1].content
    return [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]


# -- the verifier ---------------------------------------------------------------------------------------
@dataclass
class StepProgress(JsonRecord):
    """Per-step progress of one response: ``values`` is ``J`` at ``[empty, z_0, z_0..1, ...]``
    (one more than ``steps``) and ``progress[j] = values[j + 1] - values[j]``. ``error`` is set
    when the estimate could not be made (time limit, prover failure); the lists are then empty."""

    steps: list[str]
    values: list[float]
    progress: list[float]
    error: str | None = None


@dataclass
class ProgressVerifier:
    """Progress of each step of a response under a prover policy (MRT's ``forced`` estimate or
    PAV's ``rollout`` one; see the module docstring).

    ``steps(task, response)`` gives the per-step :class:`StepProgress`; ``verify(task, response)``
    (the ``Verifier`` protocol) scores the response by ``J`` after all of it, the prover's success
    given the whole trace, with ``correct`` the response's own answer judged by ``outcome``
    (default ``MathVerifier``) against ``task.answer``. The prompt the prover continues is ``task.prompt`` as one user message (after
    ``system`` when given). Each estimate is ``1 + steps`` prompts x ``k`` samples in one backend
    call, seeded (``seed``) so a verdict repeats on the same backend; ``timeout_s`` bounds the call
    (a late call is reported in ``error`` and its result dropped). ``correct`` overrides how a
    prover completion is checked (default: :func:`answer_checker` of ``task.answer``). Thread-safe
    when the prover backend is (the project's backends are)."""

    prover: Any
    mode: Literal["forced", "rollout"] = "forced"
    k: int = 8
    max_tokens: int | None = None
    """Tokens per prover completion; default 16 for ``forced``, 256 for ``rollout``."""
    temperature: float = 1.0
    seed: int | None = 0
    sep: str = "\n\n"
    max_steps: int | None = 4
    max_chars: int = 20_000
    timeout_s: float = 300.0
    system: str | None = None
    correct: Callable[[Task, str], bool] | None = field(default=None, repr=False)
    outcome: Any = field(default=None, repr=False)
    """The ``Verifier`` of the response's own answer in ``verify`` (default ``MathVerifier``;
    with ``correct`` given, ``correct`` judges it)."""
    max_late: int = 2
    """Estimates that ran past ``timeout_s`` and still hold the prover (a call cannot be killed):
    with this many, new estimates are refused with an error instead of piling more onto it."""
    _late: list[threading.Thread] = field(default_factory=list, init=False, repr=False, compare=False)
    _late_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in ("forced", "rollout"):
            raise ValueError(f"mode must be 'forced' (MRT) or 'rollout' (PAV), got {self.mode!r}")
        if self.k < 1 or (self.max_steps is not None and self.max_steps < 1):
            raise ValueError("k and max_steps must be >= 1")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if self.max_late < 1:
            raise ValueError("max_late must be >= 1")

    def steps(self, task: Task, response: str) -> StepProgress:
        """``J`` at every prefix of ``response`` and the progress of each step."""
        text = response if isinstance(response, str) else ""
        steps = split_episodes(text, self.sep, self.max_steps)
        if len(text) > self.max_chars:
            return StepProgress(steps, [], [], f"response longer than {self.max_chars} characters")
        checker = self._checker(task)
        if checker is None:
            return StepProgress(steps, [], [], "task has no reference answer")
        chat: list[Message] = [Message("system", self.system)] if self.system else []
        chat.append(Message("user", task.prompt))
        suffix = FORCE_SUFFIX if self.mode == "forced" else ""
        max_tokens = self.max_tokens or (16 if self.mode == "forced" else 256)
        params = SamplingParams(max_tokens=max_tokens, temperature=self.temperature, seed=self.seed)
        with self._late_lock:
            self._late[:] = [t for t in self._late if t.is_alive()]
            busy = len(self._late) >= self.max_late
        if busy:
            return StepProgress(steps, [], [], "the prover is still busy with earlier estimates that timed out")
        values, error, late = _within(
            self.timeout_s, lambda: estimate_j(self.prover, chat, steps, checker, self.k, params, suffix)
        )
        if late is not None:
            with self._late_lock:
                self._late.append(late)
        if error is not None or values is None:
            return StepProgress(steps, [], [], error)
        return StepProgress(steps, values, progress(values))

    def verify(self, task: Task, response: str) -> Verdict:
        start = time.perf_counter()
        result = self.steps(task, response)
        own = isinstance(response, str) and self._own_answer_is_right(task, response)
        if result.error is not None:
            return Verdict(0.0, own, "progress not estimated", result.error, time.perf_counter() - start)
        shown = ", ".join(f"{p:+.2f}" for p in result.progress)
        reason = f"J {result.values[0]:.2f} -> {result.values[-1]:.2f}; progress per step: {shown or 'no steps'}"
        return Verdict(result.values[-1], own, reason, None, time.perf_counter() - start)

    def _own_answer_is_right(self, task: Task, response: str) -> bool:
        """The whole response judged as an answer: the forced-answer checker's fallbacks (the first
        word of a short completion) do not fit a full response, so a ``Verifier`` judges it."""
        if self.correct is not None:
            custom = self.correct
            return _safe(lambda text: custom(task, text), response)
        if task.answer is None:
            return False
        if self.outcome is None:
            from plyground.verifiers.math import MathVerifier

            self.outcome = MathVerifier()
        return bool(self.outcome.verify(task, response).correct)

    def _checker(self, task: Task) -> Callable[[str], bool] | None:
        if self.correct is not None:
            custom = self.correct
            return lambda text: custom(task, text)
        return None if task.answer is None else answer_checker(str(task.answer))


def _safe(check: Callable[[str], bool], text: str) -> bool:
    try:
        return bool(check(text))
    except Exception:  # a checker that cannot read the text counts it wrong
        return False


def _within(
    timeout_s: float, work: Callable[[], list[float]]
) -> tuple[list[float] | None, str | None, threading.Thread | None]:
    """``work()`` in a daemon thread, waited for ``timeout_s``: (result, None, None), (None, why,
    None), or on a timeout (None, why, the thread still running)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except Exception as exc:  # the prover failed (server down, bad model): reported, not raised
            box["error"] = f"prover failed: {type(exc).__name__}: {exc}"

    thread = threading.Thread(target=run, name="plyground-progress", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return None, f"timed out after {timeout_s:g} s", thread
    return box.get("value"), box.get("error"), None
