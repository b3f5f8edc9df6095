"""Math reasoning envs scored by ``MathVerifier``: hints (Scaf-GRPO, Guide), self-correction (SCoRe),
and a hint dialogue.

- ``MathHints-v0`` (:class:`MathHintsEnv`): one problem, one answer; the hint level is chosen at
  reset (``options={"hint_level": k}``) and shown in Scaf-GRPO's format.
- ``MathSelfCorrect-v0`` (:class:`MathSelfCorrectEnv`): SCoRe's two-attempt protocol.
- ``MathHintDialogue-v0`` (:class:`MathHintDialogueEnv`): a wrong answer is answered with the
  next hint, up to ``max_turns`` answers.

Problems: ``tasks`` (a list of ``Task``), ``tasks_path`` (a jsonl in GSM8K or MATH format), or by
default a fresh problem generated from the env's seed at each reset (:func:`word_problem`:
multi-step arithmetic word problems with an integer answer, a worked solution and hints in all
three tiers; unlimited and reproducible). ``reset(options={"task": Task})`` poses a given problem.

Hints are the task's :class:`~plyground.tasks.hints.HintSet` (``HintSet.from_task``: its
``metadata["hint_tiers"]``, else its ``hints`` as the planning tier, plus solution hints cut from
``metadata["solution"]``). Hint level ``n`` is step ``n`` of the Scaf-GRPO ladder: Knowledge
levels 1..l, then Planning 1..l, then Solution 1..l (``HintSet.ladder()``); level 0 shows none.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from plyground.envs.core import TextEnv
from plyground.tasks.hints import (
    SCAF_SYSTEM_PROMPT,
    HintSet,
    attach_hints,
    format_hint,
    hinted_prompt,
)
from plyground.types import Task, Verdict
from plyground.verifiers.base import Verifier
from plyground.verifiers.math import MathVerifier, extract_answer

ANSWER_FORMAT = "Put your final answer within \\boxed{}."
SCORE_CORRECTION_PROMPT = (
    "There might be an error in the solution above because of lack of understanding of the question. "
    "Please correct the error, if any, and rewrite the solution."
)
"""SCoRe's correction instruction (Kumar et al. 2024), followed by ``ANSWER_FORMAT``."""


class _MathEnv(TextEnv):
    """Shared parts: where problems come from, the verifier, the hint set of the current task."""

    max_turns = 1
    reward_range = (0.0, 1.0)

    def __init__(
        self,
        tasks: list[Task] | None = None,
        tasks_path: str | Path | None = None,
        verifier: Verifier | None = None,
        hint_levels: int = 4,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if tasks is not None and tasks_path is not None:
            raise ValueError("pass tasks or tasks_path, not both")
        if tasks_path is not None:
            from plyground.tasks.loaders import load_problems

            tasks = load_problems(tasks_path)
        if tasks is not None and not tasks:
            raise ValueError("no tasks given; pass None to generate problems")
        if hint_levels < 1:
            raise ValueError(f"hint_levels must be >= 1, got {hint_levels}")
        self.tasks = list(tasks) if tasks is not None else None
        self.verifier: Verifier = verifier if verifier is not None else MathVerifier()
        self.hint_levels = hint_levels
        self.instructions = SCAF_SYSTEM_PROMPT
        self.task: Task | None = None
        self.hints = HintSet()

    def _pick_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        task = options.get("task")
        if isinstance(task, dict):
            task = Task.from_dict(task)
        if task is None:
            if self.tasks is not None:
                task = self.tasks[int(rng.integers(len(self.tasks)))]
            else:
                task = word_problem(rng)
        if not isinstance(task, Task):
            raise TypeError(f"options['task'] must be a Task or its dict, got {type(task).__name__}")
        self.task = task
        self.hints = HintSet.from_task(task, self.hint_levels)
        return task

    def _hint_level(self, options: dict[str, Any], default: int = 0) -> int:
        level = options.get("hint_level", default)
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 0:
            raise ValueError(f"options['hint_level'] must be an int >= 0, got {level!r}")
        return int(level)

    def _check(self, action: str) -> tuple[Verdict, dict[str, Any]]:
        assert self.task is not None  # reset() ran: the base class refuses step() before it
        verdict = self.verifier.verify(self.task, action)
        record = verdict.to_dict()
        record.pop("elapsed_s", None)  # timing would make identical steps differ
        answer = extract_answer(action)
        return verdict, {
            "success": bool(verdict.correct),
            "valid_action": answer is not None,
            "answer": answer,
            "verdict": record,
        }

    def _hint_step(self, level: int) -> dict[str, Any]:
        step = self.hints.at(level)
        return {
            "hint_level": level,
            "hint_tier": step[0] if step else None,
            "hint": step[1] if step else None,
            "num_hint_levels": len(self.hints),
        }


class MathHintsEnv(_MathEnv):
    """
    ## Description
    One math problem, one answer, with a chosen amount of help: the Scaf-GRPO setting. The
    observation is ``"Question: {q}"`` plus, at hint level ``n >= 1``, the ladder's step ``n`` as
    ``"\\n{Tier} Hints: {hints}"`` (Knowledge levels first, then Planning, then Solution).

    ## Action Space
    Free text: the solution, ending with the final answer in ``\\boxed{}``.

    ## Observation Space
    Text: the question (and hints); after the answer, whether it was correct.

    ## Starting State
    ``reset(options={"hint_level": n})``, ``{"task": Task, "hint_level": n}``, or
    ``{"hint_tier": "planning", "hint_level": k}`` for level ``k`` of one tier. Levels beyond the
    ladder show the last step; a task without hints shows none.

    ## Rewards
    The verifier's score: 1.0 for a correct final answer, else 0.0.

    ## Episode End
    Terminated after the one answer.

    ## Information
    At reset: ``task`` (dict), ``hint_level``, ``hint_tier``, ``hint`` (the text shown, or None),
    ``num_hint_levels``. After the answer: ``success``, ``valid_action`` (a final answer could be
    read), ``answer`` (the extracted final answer), ``verdict`` (dict, without ``elapsed_s``).

    ## Arguments
    ``tasks`` / ``tasks_path`` (jsonl, GSM8K or MATH format): the problems (default: generated
    word problems). ``hint_level``: the default level when reset gives none (0). ``hint_levels``:
    levels per tier when solution hints are cut from a worked solution (4). ``verifier``: the
    scorer (``MathVerifier``).

    ## Version History
    - v0: first version.
    """

    def __init__(
        self,
        tasks: list[Task] | None = None,
        tasks_path: str | Path | None = None,
        hint_level: int = 0,
        verifier: Verifier | None = None,
        hint_levels: int = 4,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(tasks, tasks_path, verifier, hint_levels, render_mode)
        if hint_level < 0:
            raise ValueError(f"hint_level must be >= 0, got {hint_level}")
        self.hint_level = hint_level

    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        task = self._pick_task(rng, options)
        level = self._hint_level(options, self.hint_level)
        tier = options.get("hint_tier")
        info: dict[str, Any] = {"task": task.to_dict()}
        if tier is not None:
            text = self.hints.level(str(tier), level)
            obs = f"Question: {task.prompt}" + (f"\n{format_hint(str(tier), text)}" if text else "")
            info.update(hint_level=level, hint_tier=str(tier).lower() if text else None, hint=text or None)
            info["num_hint_levels"] = len(self.hints)
            return obs, info
        info.update(self._hint_step(level))
        return hinted_prompt(task.prompt, self.hints, level), info

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        verdict, info = self._check(action)
        obs = "Correct." if verdict.correct else f"Incorrect ({verdict.reason})."
        return obs, float(verdict.score), True, info


class MathSelfCorrectEnv(_MathEnv):
    """
    ## Description
    SCoRe's self-correction protocol (Kumar et al. 2024): the agent answers (attempt 1), is shown
    the correction instruction "There might be an error in the solution above ... rewrite the
    solution." with the answer-format line, and answers again (attempt 2). The reward is the
    second attempt's score; both attempts' correctness are reported, so Acc@t1, Acc@t2 and the
    i->c / c->i transitions can be counted.

    ## Action Space
    Free text: a solution ending with ``\\boxed{answer}``, twice.

    ## Observation Space
    Text: the question (``"Question: {q}"``); then the correction prompt; then the outcome.

    ## Starting State
    A new problem at each reset; ``options={"task": Task}`` poses a given one.

    ## Rewards
    Turn 1: 0. Turn 2: ``r2 + alpha * (r2 - r1)`` with ``alpha`` = ``shaping_alpha`` (default 0:
    just the second attempt's score; SCoRe's Stage II uses 10, giving +11 for wrong -> right and
    -10 for right -> wrong). ``reward_range`` is ``(-alpha, 1 + alpha)``.

    ## Episode End
    Terminated after the second attempt.

    ## Information
    Every step: ``attempt`` (1 or 2), ``success`` (this attempt correct), ``valid_action``,
    ``answer``, ``verdict``. After attempt 1: ``first_correct``. After attempt 2:
    ``attempts`` (``[{"attempt", "correct", "score", "answer"}]`` for both),
    ``first_correct``, ``second_correct``, ``transition`` (``"c->c"``, ``"i->c"``, ``"c->i"``,
    ``"i->i"``) and ``similarity`` (difflib ratio of the two attempts' texts, first 2,000
    characters each: near 1 means the model repeated itself).

    ## Arguments
    ``tasks`` / ``tasks_path``: problems (default: generated word problems). ``shaping_alpha``:
    the Stage II bonus weight. ``correction_prompt``: the instruction between attempts.
    ``verifier``: the scorer (``MathVerifier``).

    ## Version History
    - v0: first version.
    """

    max_turns = 2

    def __init__(
        self,
        tasks: list[Task] | None = None,
        tasks_path: str | Path | None = None,
        shaping_alpha: float = 0.0,
        correction_prompt: str = SCORE_CORRECTION_PROMPT + " " + ANSWER_FORMAT,
        verifier: Verifier | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(tasks, tasks_path, verifier, render_mode=render_mode)
        if shaping_alpha < 0:
            raise ValueError(f"shaping_alpha must be >= 0, got {shaping_alpha}")
        self.shaping_alpha = float(shaping_alpha)
        self.reward_range = (min(0.0, -self.shaping_alpha), 1.0 + self.shaping_alpha)
        self.correction_prompt = correction_prompt
        self._attempts: list[dict[str, Any]] = []
        self._texts: list[str] = []

    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        task = self._pick_task(rng, options)
        self._attempts, self._texts = [], []
        return f"Question: {task.prompt}", {"task": task.to_dict()}

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        verdict, info = self._check(action)
        attempt = len(self._attempts) + 1
        self._attempts.append(
            {"attempt": attempt, "correct": bool(verdict.correct), "score": float(verdict.score), "answer": info["answer"]}
        )
        self._texts.append(action[:2000])
        info["attempt"] = attempt
        info["first_correct"] = self._attempts[0]["correct"]
        if attempt == 1:
            return self.correction_prompt, 0.0, False, info
        r1, r2 = self._attempts[0]["score"], self._attempts[1]["score"]
        first, second = self._attempts[0]["correct"], self._attempts[1]["correct"]
        info.update(
            attempts=[dict(a) for a in self._attempts],
            second_correct=second,
            transition=f"{'c' if first else 'i'}->{'c' if second else 'i'}",
            similarity=round(difflib.SequenceMatcher(None, self._texts[0], self._texts[1]).ratio(), 6),
        )
        reward = r2 + self.shaping_alpha * (r2 - r1)
        obs = "Correct." if second else f"Incorrect ({verdict.reason})."
        return obs, float(reward), True, info


class MathHintDialogueEnv(_MathEnv):
    """
    ## Description
    A tutoring dialogue: the agent answers; a wrong answer is met with the next hint on the
    Scaf-GRPO ladder (Knowledge, then Planning, then Solution levels) and a request to try again,
    until the answer is right or ``max_turns`` answers have been given.

    ## Action Space
    Free text: a solution ending with ``\\boxed{answer}``.

    ## Observation Space
    Text: ``"Question: {q}"`` (with a starting hint if asked); after a wrong answer,
    ``"Incorrect. {Tier} Hints: {hints}\\nTry again. ..."``, or "No more hints" when the ladder is
    used up; after a right answer, "Correct.".

    ## Starting State
    A new problem at each reset; options ``{"task": Task}`` and ``{"hint_level": n}`` (the hint
    shown with the question; later hints continue from there).

    ## Rewards
    1.0 (the verifier's score) for a correct answer, else 0.0.

    ## Episode End
    Terminated on a correct answer; truncated after ``max_turns`` answers.

    ## Information
    Every step: ``success``, ``valid_action``, ``answer``, ``verdict``, and the hint now shown:
    ``hint_level``, ``hint_tier``, ``hint``, ``num_hint_levels``; ``hints_used`` (how many hints
    the agent has seen).

    ## Arguments
    ``tasks`` / ``tasks_path``: problems (default: generated word problems). ``max_turns``: the
    most answers (K, default 5). ``hint_levels``: levels per tier for solution hints (4).
    ``verifier``: the scorer (``MathVerifier``).

    ## Version History
    - v0: first version.
    """

    def __init__(
        self,
        tasks: list[Task] | None = None,
        tasks_path: str | Path | None = None,
        max_turns: int = 5,
        hint_levels: int = 4,
        verifier: Verifier | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(tasks, tasks_path, verifier, hint_levels, render_mode)
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.max_turns = max_turns
        self.level = 0
        self._first_level = 0

    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        task = self._pick_task(rng, options)
        self.level = self._first_level = min(self._hint_level(options), len(self.hints))
        info: dict[str, Any] = {"task": task.to_dict(), **self._hint_step(self.level)}
        info["hints_used"] = self.level
        return hinted_prompt(task.prompt, self.hints, self.level), info

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        verdict, info = self._check(action)
        if verdict.correct:
            info.update(self._hint_step(self.level), hints_used=self.level)
            return "Correct.", float(verdict.score), True, info
        if self.level < len(self.hints):
            self.level += 1
            tier, text = self.hints.at(self.level) or ("", "")
            obs = f"Incorrect. {format_hint(tier, text)}\nTry again. {ANSWER_FORMAT}"
        else:
            obs = f"Incorrect. No more hints. Try again. {ANSWER_FORMAT}"
        info.update(self._hint_step(self.level), hints_used=self.level)
        return obs, float(verdict.score), False, info


# -- built-in problems: seeded multi-step word problems ---------------------------------------------
_NAMES = ("Ada", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jon", "Kemi", "Luis")
_ITEMS = (("notebook", "pen"), ("apple", "pear"), ("ticket", "snack"), ("shirt", "cap"), ("book", "poster"))

Problem = tuple[str, int, list[str], list[str], list[str]]
"""(question, answer, knowledge pieces, planning pieces, solution steps ending with the answer)."""


def _shopping(rng: np.random.Generator) -> Problem:
    name = str(rng.choice(_NAMES))
    first, second = _ITEMS[int(rng.integers(len(_ITEMS)))]
    a, p, b, q = (int(rng.integers(2, 10)), int(rng.integers(2, 15)), int(rng.integers(2, 10)), int(rng.integers(2, 15)))
    cost_a, cost_b = a * p, b * q
    total = cost_a + cost_b
    paid = (total // 50 + 1) * 50 + 50 * int(rng.integers(0, 2))
    question = (
        f"{name} buys {a} {first}s at ${p} each and {b} {second}s at ${q} each, and pays with "
        f"${paid}. How many dollars of change does {name} get?"
    )
    return (
        question,
        paid - total,
        ["The cost of several items at the same price is the number of items times the price.",
         "Change is the amount paid minus the total cost."],
        [f"Find what the {first}s cost.", f"Find what the {second}s cost.",
         "Add the two costs to get the total.", "Subtract the total from the amount paid."],
        [f"The {first}s cost {a} * {p} = {cost_a} dollars.", f"The {second}s cost {b} * {q} = {cost_b} dollars.",
         f"The total is {cost_a} + {cost_b} = {total} dollars.", f"The change is {paid} - {total} = {paid - total} dollars."],
    )  # fmt: skip


def _travel(rng: np.random.Generator) -> Problem:
    v, t1, w, t2 = (int(rng.integers(4, 13)) * 5, int(rng.integers(2, 6)), int(rng.integers(4, 13)) * 5, int(rng.integers(2, 6)))
    d1, d2 = v * t1, w * t2
    back = int(rng.integers(1, (d1 + d2) // 10 + 1)) * 5
    question = (
        f"A bus drives at {v} km per hour for {t1} hours, then at {w} km per hour for {t2} hours, "
        f"then drives {back} km back the way it came. How many km is the bus from its start?"
    )
    return (
        question,
        d1 + d2 - back,
        ["Distance equals speed times time.", "Driving back the way it came reduces the distance from the start."],
        ["Find the distance of the first leg.", "Find the distance of the second leg.",
         "Add the two legs.", "Subtract the distance driven back."],
        [f"The first leg is {v} * {t1} = {d1} km.", f"The second leg is {w} * {t2} = {d2} km.",
         f"Together that is {d1} + {d2} = {d1 + d2} km.", f"The bus is {d1 + d2} - {back} = {d1 + d2 - back} km from its start."],
    )  # fmt: skip


def _savings(rng: np.random.Generator) -> Problem:
    name = str(rng.choice(_NAMES))
    start, weekly, weeks = int(rng.integers(10, 100)), int(rng.integers(3, 25)), int(rng.integers(3, 12))
    saved = weekly * weeks
    spent = int(rng.integers(1, start + saved))
    question = (
        f"{name} has ${start} and saves ${weekly} every week for {weeks} weeks. Then {name} spends "
        f"${spent} on a gift. How many dollars does {name} have left?"
    )
    return (
        question,
        start + saved - spent,
        ["Saving the same amount every week for several weeks gives the weekly amount times the number of weeks.",
         "Money left is money had minus money spent."],
        ["Find how much is saved over all the weeks.", "Add it to the starting amount.", "Subtract what is spent."],
        [f"Over {weeks} weeks {name} saves {weekly} * {weeks} = {saved} dollars.",
         f"{name} then has {start} + {saved} = {start + saved} dollars.",
         f"After the gift {name} has {start + saved} - {spent} = {start + saved - spent} dollars."],
    )  # fmt: skip


def _fence(rng: np.random.Generator) -> Problem:
    length, width, price = int(rng.integers(5, 40)), int(rng.integers(3, 30)), int(rng.integers(2, 12))
    gate = int(rng.integers(1, min(length, width)))
    perimeter = 2 * (length + width)
    fenced = perimeter - gate
    question = (
        f"A rectangular garden is {length} m long and {width} m wide. A fence goes all around it except "
        f"for a gate {gate} m wide. Fencing costs ${price} per metre. How many dollars does the fence cost?"
    )
    return (
        question,
        fenced * price,
        ["The perimeter of a rectangle is 2 * (length + width).",
         "The total price is the price per metre times the number of metres."],
        ["Find the perimeter of the garden.", "Subtract the width of the gate.", "Multiply by the price per metre."],
        [f"The perimeter is 2 * ({length} + {width}) = {perimeter} m.",
         f"Without the gate that is {perimeter} - {gate} = {fenced} m of fence.",
         f"The fence costs {fenced} * {price} = {fenced * price} dollars."],
    )  # fmt: skip


def _discount(rng: np.random.Generator) -> Problem:
    percent = int(rng.choice([10, 20, 25, 50]))
    price = int(rng.integers(2, 30)) * 20
    count = int(rng.integers(2, 7))
    off = price * percent // 100
    sale = price - off
    question = (
        f"A jacket costs ${price}. In a sale every jacket is {percent}% off. A club buys {count} "
        f"jackets in the sale. How many dollars does the club pay?"
    )
    return (
        question,
        sale * count,
        ["p% of an amount is the amount times p / 100.", "A discount is subtracted from the original price."],
        ["Find the discount on one jacket.", "Find the sale price of one jacket.", "Multiply by the number of jackets."],
        [f"The discount is {percent}% of {price} = {off} dollars.",
         f"One jacket costs {price} - {off} = {sale} dollars in the sale.",
         f"{count} jackets cost {count} * {sale} = {sale * count} dollars."],
    )  # fmt: skip


def _sharing(rng: np.random.Generator) -> Problem:
    children, each_box, boxes = int(rng.integers(2, 9)), int(rng.integers(3, 13)), int(rng.integers(2, 10))
    total = boxes * each_box
    # What is eaten leaves a multiple of the number of children (and at least one cookie each).
    eaten = total % children + children * int(rng.integers(0, 3))
    if total - eaten < children:
        eaten = total % children
    left = total - eaten
    question = (
        f"There are {boxes} boxes with {each_box} cookies in each. The baker eats {eaten} cookies and "
        f"shares the rest equally among {children} children. How many cookies does each child get?"
    )
    return (
        question,
        left // children,
        ["The number of things in equal groups is the number of groups times the group size.",
         "Sharing equally means dividing by the number of people."],
        ["Find the total number of cookies.", "Subtract the cookies eaten.", "Divide the rest by the number of children."],
        [f"There are {boxes} * {each_box} = {total} cookies.", f"After the baker eats, {total} - {eaten} = {left} are left.",
         f"Each child gets {left} / {children} = {left // children} cookies."],
    )  # fmt: skip


TEMPLATES: dict[str, Callable[[np.random.Generator], Problem]] = {
    "shopping": _shopping,
    "travel": _travel,
    "savings": _savings,
    "fence": _fence,
    "discount": _discount,
    "sharing": _sharing,
}


def word_problem(rng: np.random.Generator, template: str | None = None) -> Task:
    """One generated multi-step word problem as a ``Task`` with its answer, a worked solution in
    ``metadata["solution"]`` (GSM8K style, ending ``#### answer``) and hints in all three tiers:
    knowledge (the facts used), planning (the steps, not carried out) and solution (the worked
    steps without the final one)."""
    name = template if template is not None else str(rng.choice(sorted(TEMPLATES)))
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; templates: {', '.join(sorted(TEMPLATES))}")
    question, answer, knowledge, planning, steps = TEMPLATES[name](rng)
    solution = "\n".join(steps) + f"\n#### {answer}"
    task = Task(
        id=f"word/{name}/{hashlib.sha256(question.encode()).hexdigest()[:12]}",
        prompt=question,
        answer=str(answer),
        metadata={"source": "plyground.word_problems", "template": name, "solution": solution},
    )
    return attach_hints(task, HintSet(knowledge=knowledge, planning=planning, solution=steps[:-1]))


def word_problems(n: int, seed: int = 0, template: str | None = None) -> list[Task]:
    """``n`` generated word problems, reproducible from ``seed`` (see :func:`word_problem`)."""
    rng = np.random.default_rng(seed)
    return [word_problem(rng, template) for _ in range(n)]
