"""The typed records that cross module boundaries.

Every record is a small dataclass with ``to_dict`` / ``from_dict`` (JSON-safe, lossless) so that
trajectories, tasks and verdicts can be written to JSONL by one module and read by another.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeVar

Role = Literal["system", "user", "assistant", "tool"]

T = TypeVar("T", bound="JsonRecord")


class JsonRecord:
    """Shared JSON plumbing for the dataclasses below."""

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[call-overload,no-any-return]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=True)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        return cls._build(data)

    @classmethod
    def _build(cls: type[T], data: dict[str, Any]) -> T:
        # Unknown keys are ignored so that files written by a newer version still load.
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        return cls.from_dict(json.loads(text))


def _jsonable(value: Any) -> Any:
    """Tuples become lists so that a dict survives ``json.dumps`` then ``json.loads`` unchanged."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass
class Message(JsonRecord):
    """One chat message; a chat is ``list[Message]``."""

    role: Role
    content: str

    def as_openai(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


Chat = list[Message]


@dataclass
class SamplingParams(JsonRecord):
    """How to sample: the usual knobs, shared by every backend.

    ``logprobs`` asks for the log-probability of each sampled token (off-policy corrections need
    them); ``n`` completions are returned per chat.
    """

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    logprobs: bool = True

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")


FinishReason = Literal["stop", "length", "error"]


@dataclass
class Completion(JsonRecord):
    """One sampled continuation.

    ``token_ids`` and ``logprobs`` are the sampled tokens and their log-probabilities under the
    sampling policy (empty where a server does not return them); ``prompt_token_ids`` is the exact
    prompt the model saw.
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    prompt_token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason = "stop"

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else -math.inf


@dataclass
class Task(JsonRecord):
    """A problem with a checkable answer; ``hints`` go from abstract to concrete."""

    id: str
    prompt: str
    answer: str | None = None
    hints: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def validate(self, verifier: Any = None) -> Verdict:
        """Does the gold answer, written as ``\\boxed{answer}``, pass its own verifier?

        A task that fails cannot be solved by any response, so loaders run this to report rows
        the verifier cannot read. ``verifier`` defaults to ``MathVerifier``; a verifier with a
        ``validate_task(task) -> Verdict`` method (``MathVerifier`` has one) does the check itself.
        """
        if self.answer is None:
            return Verdict(0.0, False, "task has no reference answer", "no reference answer")
        if verifier is None:
            # Imported here: the verifiers import this module.
            from plyground.verifiers.math import MathVerifier

            verifier = MathVerifier()
        # A verifier may offer a stricter self-check than scoring the boxed gold answer.
        strict = getattr(verifier, "validate_task", None)
        if callable(strict):
            checked: Verdict = strict(self)
            return checked
        verdict: Verdict = verifier.verify(self, "\\boxed{" + str(self.answer) + "}")
        return verdict


@dataclass
class Verdict(JsonRecord):
    """A verifier's judgement of one response. ``error`` is set when the check itself failed
    (time limit, unparsable input), as opposed to the response being wrong."""

    score: float
    correct: bool
    reason: str = ""
    error: str | None = None
    elapsed_s: float = 0.0


@dataclass
class Turn(JsonRecord):
    """One agent step: what the agent saw, what it did, and what came of it."""

    observation: str
    action: str
    reward: float = 0.0
    completion: Completion | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        data = dict(data)
        if data.get("completion") is not None:
            data["completion"] = Completion.from_dict(data["completion"])
        return cls._build(data)


@dataclass
class TokenRecord(JsonRecord):
    """The whole episode as the model saw it: ids, a loss mask (1 = sampled by the model,
    0 = template and environment tokens) and the sampling log-probabilities (0 where mask is 0)."""

    token_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


@dataclass
class Trajectory(JsonRecord):
    """A whole episode. ``error`` names the boundary that failed (``env:``, ``backend:``, ...)
    when the episode ended abnormally; such a trajectory is kept, not dropped."""

    env_id: str
    task_id: str | None = None
    seed: int | None = None
    turns: list[Turn] = field(default_factory=list)
    total_reward: float = 0.0
    success: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    tokens: TokenRecord | None = None
    error: str | None = None

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        data = dict(data)
        data["turns"] = [Turn.from_dict(t) for t in data.get("turns", [])]
        if data.get("tokens") is not None:
            data["tokens"] = TokenRecord.from_dict(data["tokens"])
        return cls._build(data)


def write_jsonl(path: str, records: list[Any], mode: str = "w") -> None:
    """Write records (anything with ``to_json``) one per line."""
    with open(path, mode, encoding="utf-8") as fh:
        for record in records:
            fh.write(record.to_json() + "\n")


def read_trajectories(path: str) -> list[Trajectory]:
    """Read a trajectories.jsonl; a torn last line (a killed writer) is skipped, not fatal."""
    out: list[Trajectory] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(Trajectory.from_json(line))
            except json.JSONDecodeError:
                continue
    return out
