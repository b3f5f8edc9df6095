from __future__ import annotations

import json
from pathlib import Path

import pytest

from plyground.inference.scripted import ScriptedBackend
from plyground.tasks.hints import (
    SCAF_SYSTEM_PROMPT,
    HintSet,
    attach_hints,
    generate_hints,
    hint_tasks,
    hinted_prompt,
    leaks_answer,
    parse_hint_reply,
    solution_hints,
    solution_steps,
)
from plyground.types import Chat, Task

GSM8K_SOLUTION = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n"
    "#### 72"
)
MATH_SOLUTION = (
    "We have $x + y = 10$ and $x - y = 2$. Adding the equations gives $2x = 12$. "
    "So $x = 6$. Then $y = 10 - 6 = 4$. Hence $xy = \\boxed{24}$."
)


def _hints() -> HintSet:
    return HintSet(knowledge=["k1", "k2"], planning=["p1", "p2", "p3"], solution=["s1"])


def test_level_is_cumulative_and_clipped() -> None:
    hints = _hints()
    assert hints.level("knowledge", 1) == "k1"
    assert hints.level("planning", 2) == "p1\np2"
    assert hints.level("Planning", 9) == "p1\np2\np3"
    assert hints.level("solution", 0) == ""
    with pytest.raises(ValueError, match="unknown hint tier"):
        hints.level("wisdom", 1)


def test_to_list_and_ladder_go_abstract_to_concrete() -> None:
    hints = _hints()
    assert hints.to_list() == ["k1", "k2", "p1", "p2", "p3", "s1"]
    assert hints.ladder() == [
        ("knowledge", 1), ("knowledge", 2), ("planning", 1), ("planning", 2), ("planning", 3), ("solution", 1)
    ]  # fmt: skip
    assert len(hints) == 6
    assert hints.at(0) is None
    assert hints.at(3) == ("planning", "p1")
    assert hints.at(99) == ("solution", "s1")  # clipped to the last step


def test_hinted_prompt_uses_the_scaf_grpo_format() -> None:
    hints = _hints()
    assert hinted_prompt("What is 2+2?") == "Question: What is 2+2?"
    assert hinted_prompt("What is 2+2?", hints, 4) == "Question: What is 2+2?\nPlanning Hints: p1\np2"
    assert SCAF_SYSTEM_PROMPT == "Please reason step by step, and put your final answer within \\boxed{}."


def test_attach_and_from_task_round_trip_through_json() -> None:
    task = attach_hints(Task("t", "q", "5"), _hints())
    assert task.hints == _hints().to_list()
    again = Task.from_json(task.to_json())
    assert HintSet.from_task(again) == _hints()


def test_from_task_without_tiers_uses_hints_as_planning_and_cuts_the_solution() -> None:
    task = Task("gsm", "q", "72", hints=["think about May"], metadata={"solution": GSM8K_SOLUTION})
    hints = HintSet.from_task(task)
    assert hints.planning == ["think about May"]
    assert hints.solution == ["Natalia sold 48/2 = 24 clips in May."]  # the step stating 72 is held back
    assert hint_tasks([task])[0].metadata["hint_tiers"]["solution"] == hints.solution


def test_solution_steps_and_chunks() -> None:
    assert solution_steps(GSM8K_SOLUTION) == [
        "Natalia sold 48/2 = 24 clips in May.",
        "Natalia sold 48+24 = 72 clips altogether in April and May.",
    ]
    steps = solution_steps(MATH_SOLUTION)
    assert steps[0] == "We have $x + y = 10$ and $x - y = 2$."
    chunks = solution_hints(MATH_SOLUTION, levels=2, answer="24")
    assert len(chunks) == 2
    assert all("boxed" not in c and not leaks_answer(c, "24") for c in chunks)
    assert " ".join(chunks) == " ".join(steps[:-1])
    four = solution_hints(MATH_SOLUTION, levels=4, answer="24")
    assert len(four) == 4 and four[0] == steps[0]
    # Fewer steps than levels: one chunk per step; the answer can be kept on request.
    assert solution_hints(GSM8K_SOLUTION, levels=4, answer="72", hide_answer=False)[-1].endswith("April and May.")
    assert solution_hints("", levels=4) == []
    with pytest.raises(ValueError):
        solution_hints("a", levels=0)


@pytest.mark.parametrize(
    ("text", "answer", "leaks"),
    [
        ("so the total is 1,200 apples", "1200", True),
        ("the total is 12.0", "12", True),
        ("use the formula for 120", "12", False),
        ("there are 2 cases", "2", False),  # single digits are too common to tell
        ("the answer is \\frac{3}{4}", "\\frac{3}{4}", True),
        ("the answer is \\frac{3}{5}", "\\frac{3}{4}", False),
        ("", "5", False),
        ("anything", None, False),
    ],
)
def test_leaks_answer(text: str, answer: str | None, leaks: bool) -> None:
    assert leaks_answer(text, answer) is leaks


def test_parse_hint_reply_json_sections_and_garbage() -> None:
    reply = 'Sure!\n```json\n{"Knowledge": ["rule of sum"], "planning": "count by last digit", "solution": ["a", "b", "c", "d", "e"]}\n```'
    hints = parse_hint_reply(reply, levels=4)
    assert hints == HintSet(knowledge=["rule of sum"], planning=["count by last digit"], solution=["a", "b", "c", "d"])
    sections = "Knowledge hints:\n- Pythagoras\nPlanning: \n1. find the legs\n2) add squares\nSolution: 3^2 + 4^2"
    assert parse_hint_reply(sections) == HintSet(
        knowledge=["Pythagoras"], planning=["find the legs", "add squares"], solution=["3^2 + 4^2"]
    )
    assert len(parse_hint_reply("no idea")) == 0


def test_generate_hints_caches_on_disk_and_drops_leaks(tmp_path: Path) -> None:
    prompts: list[Chat] = []

    def writer(chat: Chat) -> str:
        prompts.append(chat)
        return json.dumps(
            {"knowledge": ["May is half of April", "the answer is 72"], "planning": ["add months"], "solution": ["48/2=24"]}
        )

    backend = ScriptedBackend(writer, model_name="writer-1")
    task = Task("gsm/0", "Natalia sold 48 clips in April and half as many in May...", "72",
                metadata={"solution": GSM8K_SOLUTION})  # fmt: skip
    first = generate_hints(task, backend, cache_dir=tmp_path)
    assert first == HintSet(knowledge=["May is half of April"], planning=["add months"], solution=["48/2=24"])
    assert "Reference solution" in prompts[0][0].content and "72" in prompts[0][0].content
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert record["task_id"] == "gsm/0" and record["model"] == "writer-1"
    again = generate_hints(task, backend, cache_dir=tmp_path)
    assert again == first and backend.calls == 1  # a cache hit: no second call
    # Another model is another key.
    generate_hints(task, ScriptedBackend(writer, model_name="writer-2"), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 2
