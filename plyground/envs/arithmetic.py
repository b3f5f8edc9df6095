"""Arithmetic: one generated (or given) integer arithmetic problem, scored by a verifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from plyground.envs.core import TextEnv
from plyground.types import Task
from plyground.verifiers.base import Verifier
from plyground.verifiers.numeric import NumericVerifier, extract_final_answer

ANSWER_FORMAT = "Put your final answer in \\boxed{}, for example \\boxed{42}."
_PRECEDENCE = {"+": 1, "-": 1, "*": 2}


class ArithmeticEnv(TextEnv):
    """
    ## Description
    A single-turn reasoning env: the agent gets one integer arithmetic problem such as
    ``(37 - 5) * 12 + 8`` and answers once. The problem is generated from the env's ``np_random``
    (operands of up to ``digits`` digits joined by ``+``, ``-``, ``*``, with parentheses where the
    expression tree needs them) or drawn from a given list of ``Task``s. The gold answer is computed
    by evaluating the expression tree, never with ``eval``.

    ## Action Space
    Free text: the agent's working and its final answer, preferably in ``\\boxed{}``. The verifier
    reads the final answer (see ``plyground.verifiers.numeric``).

    ## Observation Space
    Text. At reset: the question and the answer format. After the answer: whether it was correct.

    ## Starting State
    A new problem at each reset; ``reset(options={"task": Task(...)})`` poses a given one.

    ## Rewards
    The verifier's score: 1.0 for a correct answer, 0.0 otherwise (another verifier may give
    partial credit).

    ## Episode End
    Terminated after the one answer.

    ## Information
    At reset: ``task`` (the ``Task`` as a dict). After the answer: ``success`` (the verdict says
    correct), ``valid_action`` (a final answer could be read), and ``verdict`` (the ``Verdict`` as a
    dict, without ``elapsed_s``, which would make identical steps differ).

    ## Arguments
    ``digits`` (default 2): the most digits an operand has. ``num_operands`` (default ``(2, 4)``):
    an operand count, or an inclusive ``(low, high)`` range to draw it from. ``tasks``: pose these
    tasks (drawn at random) instead of generated ones. ``verifier``: the scorer (default
    ``NumericVerifier``). ``render_mode``: ``"ansi"`` renders the last observation.

    ## Version History
    - v0: first version.
    """

    max_turns = 1
    reward_range = (0.0, 1.0)

    def __init__(
        self,
        digits: int = 2,
        num_operands: int | tuple[int, int] = (2, 4),
        tasks: list[Task] | None = None,
        verifier: Verifier | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        low, high = (num_operands, num_operands) if isinstance(num_operands, int) else num_operands
        if digits < 1:
            raise ValueError(f"digits must be >= 1, got {digits}")
        if not 1 <= low <= high:
            raise ValueError(f"num_operands must be >= 1 (low <= high), got {num_operands}")
        if tasks is not None and not tasks:
            raise ValueError("tasks is empty; pass None to generate problems")
        self.digits = digits
        self.num_operands = (int(low), int(high))
        self.tasks = list(tasks) if tasks is not None else None
        self.verifier: Verifier = verifier if verifier is not None else NumericVerifier()
        self.instructions = (
            "Solve the arithmetic problem. Show your working if it helps, then give the final "
            "answer as an integer. " + ANSWER_FORMAT
        )
        self.task: Task | None = None

    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        task = options.get("task")
        if isinstance(task, dict):
            task = Task.from_dict(task)
        if task is None:
            task = self._draw_task(rng)
        if not isinstance(task, Task):
            raise TypeError(f"options['task'] must be a Task or its dict, got {type(task).__name__}")
        self.task = task
        return f"{task.prompt}\n\n{ANSWER_FORMAT}", {"task": task.to_dict()}

    def _draw_task(self, rng: np.random.Generator) -> Task:
        if self.tasks is not None:
            return self.tasks[int(rng.integers(len(self.tasks)))]
        count = int(rng.integers(self.num_operands[0], self.num_operands[1] + 1))
        expr = random_expression(rng, count, self.digits)
        text = _render(expr)
        return Task(id=f"arithmetic:{text}", prompt=f"What is {text}?", answer=str(_value(expr)))

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        assert self.task is not None  # reset() ran: the base class refuses step() before it
        verdict = self.verifier.verify(self.task, action)
        record = verdict.to_dict()
        record.pop("elapsed_s", None)
        info = {
            "success": bool(verdict.correct),
            "valid_action": extract_final_answer(action) is not None,
            "verdict": record,
        }
        obs = "Correct." if verdict.correct else f"Incorrect ({verdict.reason})."
        return obs, float(verdict.score), True, info


# -- expression trees ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BinOp:
    """An arithmetic expression tree: operands are ints, nodes are ``+``, ``-`` or ``*``."""

    op: str
    left: BinOp | int
    right: BinOp | int

    def value(self) -> int:
        a, b = _value(self.left), _value(self.right)
        if self.op == "+":
            return a + b
        if self.op == "-":
            return a - b
        return a * b

    def render(self) -> str:
        """Infix text with only the parentheses precedence needs, e.g. ``(3 + 4) * 5``."""
        prec = _PRECEDENCE[self.op]
        left = _render(self.left)
        if isinstance(self.left, BinOp) and _PRECEDENCE[self.left.op] < prec:
            left = f"({left})"
        right = _render(self.right)
        # The right operand also needs them under "-" ("a - (b + c)"); "+" and "*" associate.
        if isinstance(self.right, BinOp) and (
            _PRECEDENCE[self.right.op] < prec or (_PRECEDENCE[self.right.op] == prec and self.op == "-")
        ):
            right = f"({right})"
        return f"{left} {self.op} {right}"


def random_expression(rng: np.random.Generator, num_operands: int, digits: int) -> BinOp | int:
    """A random tree over ``num_operands`` operands in ``0..10**digits - 1``."""
    if num_operands == 1:
        return int(rng.integers(0, 10**digits))
    split = int(rng.integers(1, num_operands))
    op = str(rng.choice(["+", "-", "*"]))
    return BinOp(op, random_expression(rng, split, digits), random_expression(rng, num_operands - split, digits))


def _value(node: BinOp | int) -> int:
    return node if isinstance(node, int) else node.value()


def _render(node: BinOp | int) -> str:
    return str(node) if isinstance(node, int) else node.render()
