"""Twenty Questions, as in LMRL-Gym: find a hidden object by asking yes/no questions.

Besides the env this module gives :func:`load_objects` / :func:`builtin_objects` (the object table
with the attributes the rule-based oracle answers from) and :class:`TwentyQuestionsSolver`, a
scripted questioner that asks the attribute question splitting the remaining candidates best and
then guesses, for scripted play and behaviour-cloning data. The dialogue machinery shared with
Guess My City (:class:`QuestionGameEnv`, the native snapshot) lives here too.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from plyground.envs.core import EnvSnapshot, TextEnv
from plyground.envs.lmrl.oracle import (
    COLORS_ASKED,
    NO,
    TWENTY_QUESTIONS_ROLE,
    UNKNOWN,
    YES,
    LLMOracle,
    Oracle,
    TwentyQuestionsRuleOracle,
    is_question,
    names_match,
    oracle_backend_source,
    question_remainder,
    yes_no,
)

MAX_QUESTIONS = 20
INITIAL_STR = "Questions:"  # the benchmark's first observation
# Longest agent line kept in the transcript; longer lines are cut (and are not questions anyway).
SHOWN_MAX = 300


# -- the object table --------------------------------------------------------------------------------
ObjectSource = str | os.PathLike[str] | Sequence[Mapping[str, Any]]


def load_objects(source: ObjectSource | None = None) -> tuple[dict[str, Any], ...]:
    """The object table: ``None`` for the shipped one, a path to a JSON file in its format
    (``{"objects": [...]}`` or a bare list), or a sequence of records.

    A record needs ``name``; the other fields (``variants``, ``category``, ``alive``, ``edible``,
    ``man_made``, ``size``, ``materials``, ``locations``, ``colors``, ``tags``) default to empty.
    """
    if source is None:
        return builtin_objects()
    if isinstance(source, str | os.PathLike):
        with open(source, encoding="utf-8") as f:
            data = json.load(f)
        records = data["objects"] if isinstance(data, dict) else data
    else:
        records = source
    out = []
    for record in records:
        obj = {
            "variants": [],
            "category": "",
            "alive": False,
            "edible": False,
            "man_made": True,
            "size": "small",
            "materials": [],
            "locations": [],
            "colors": [],
            "tags": [],
            **dict(record),
        }
        obj["name"] = str(obj["name"]).strip()
        if not obj["name"]:
            raise ValueError(f"an object record has no name: {record!r}")
        out.append(obj)
    if not out:
        raise ValueError("the object table is empty")
    return tuple(out)


@functools.cache
def builtin_objects() -> tuple[dict[str, Any], ...]:
    """The shipped table (``data/twenty_questions_objects.json``; see ``data/README.md``)."""
    text = (
        resources.files("plyground.envs.lmrl")
        .joinpath("data", "twenty_questions_objects.json")
        .read_text("utf-8")
    )
    return load_objects(json.loads(text)["objects"])


def with_article(name: str) -> str:
    """``"apple"`` -> ``"an apple"``; names that already start with "pair of" keep "a"."""
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


# -- the shared dialogue machinery -------------------------------------------------------------------
@dataclass(frozen=True)
class DialogueState:
    """A dialogue env's native snapshot: its own state plus what the base class tracks."""

    game: dict[str, Any]
    turn: int
    done: bool
    last_observation: str
    actions: tuple[str, ...]
    options: dict[str, Any] | None
    episode_rng_state: dict[str, Any]
    rng_state: dict[str, Any]


class DialogueEnv(TextEnv):
    """A ``TextEnv`` whose state is a dict of plain data (``self.game``), snapshotted natively by
    deep copy: cheap (no replay, so no oracle calls) and exact with any oracle."""

    game: dict[str, Any]

    def snapshot(self) -> DialogueState:
        return DialogueState(
            game=copy.deepcopy(self.game),
            **self._episode_fields(),
        )

    def restore(self, state: Any) -> str:
        if isinstance(state, EnvSnapshot):
            return super().restore(state)
        if not isinstance(state, DialogueState):
            raise TypeError(
                f"{type(self).__name__}.restore expects a DialogueState, got {type(state).__name__}"
            )
        self.game = copy.deepcopy(state.game)
        self._restore_episode_fields(state)
        return state.last_observation

    def close(self) -> None:
        close = getattr(getattr(self, "oracle", None), "close", None)
        if callable(close):
            close()
        super().close()


def shown(action: str) -> str:
    """An agent line as the transcript shows it: one line, at most ``SHOWN_MAX`` characters."""
    line = " ".join(action.split())
    return line if len(line) <= SHOWN_MAX else line[: SHOWN_MAX - 3] + "..."


class QuestionGameEnv(DialogueEnv):
    """Twenty Questions and Guess My City: the agent asks, the oracle answers; -1 per question,
    0 for the question that names the secret (answered yes), at most ``max_questions``.

    Subclasses set ``self.secrets`` (records with ``name`` and ``variants``), ``self.oracle`` and
    the texts, and may override :meth:`valid` and :meth:`postprocess`.
    """

    secrets: tuple[dict[str, Any], ...]
    oracle: Oracle
    secret_word = "object"
    # Whether a guess also needs the oracle's "Yes." to count (LMRL-Gym's rule; ArCHer's Guess My
    # City counts a question that names the city whatever the oracle says).
    guess_needs_yes = True

    def __init__(self, max_questions: int, invalid_reward: float, render_mode: str | None) -> None:
        super().__init__(render_mode=render_mode)
        if max_questions < 1:
            raise ValueError(f"max_questions must be >= 1, got {max_questions}")
        self.max_questions = self.max_turns = int(max_questions)
        self.invalid_reward = float(invalid_reward)
        self.reward_range = (min(-1.0, self.invalid_reward), 0.0)
        self.game = {}

    def _pick(self, rng: np.random.Generator, options: dict[str, Any]) -> dict[str, Any]:
        if self.secret_word in options:
            wanted = str(options[self.secret_word])
            for record in self.secrets:
                if names_match(question_remainder(wanted)[0], [record["name"], *record.get("variants", ())]):
                    return record
            raise ValueError(f"unknown {self.secret_word} {wanted!r}")
        if "index" in options:  # the benchmark's "deterministic" mode: a fixed index into the list
            return self.secrets[int(options["index"]) % len(self.secrets)]
        return self.secrets[int(rng.integers(len(self.secrets)))]

    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        secret = self._pick(rng, options)
        self.game = {"secret": secret["name"], "lines": []}
        return INITIAL_STR, {}

    @property
    def secret(self) -> dict[str, Any]:
        """The record of the hidden object or city of this episode."""
        return self._by_name[self.game["secret"]]

    @functools.cached_property
    def _by_name(self) -> dict[str, dict[str, Any]]:
        return {record["name"]: record for record in self.secrets}

    def valid(self, action: str) -> bool:
        return is_question(action)

    def postprocess(self, answer: str) -> str:
        return " ".join(answer.split())[:SHOWN_MAX] or UNKNOWN

    def answer_for(self, question: str, secret: dict[str, Any], history: list[tuple[str, str]]) -> str:
        return self.postprocess(self.oracle.answer(question, secret, history))

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        question = shown(action)
        secret = self.secret
        info: dict[str, Any] = {"question": question}
        history = [(q, a) for q, a in self.game["lines"]]
        if not self.valid(action):
            answer = NO  # the benchmark answers its invalid-question marker with "No."
            info["valid_action"] = False
        else:
            answer = self.answer_for(question, secret, history)
            error = getattr(self.oracle, "last_error", None)
            if error:
                info["oracle_error"] = error
        names = [secret["name"], *secret.get("variants", ())]
        solved = bool(info.get("valid_action", True)) and self.names_secret(question, names)
        if self.guess_needs_yes:
            solved = solved and yes_no(answer) == YES
        self.game["lines"].append((question, answer))
        info.update(answer=answer, success=solved)
        over = solved or self.turn >= self.max_questions
        status = ""
        if solved:
            status = f"Correct! The {self.secret_word} was {secret['name']}."
        elif over:
            status = f"You are out of questions. The {self.secret_word} was {secret['name']}."
        if over:
            info[self.secret_word] = secret["name"]
        reward = 0.0 if solved else (-1.0 if info.get("valid_action", True) else self.invalid_reward)
        return self._render(status), reward, over, info

    def names_secret(self, question: str, names: Sequence[str]) -> bool:
        return names_match(question_remainder(question)[0], names)

    def _render(self, status: str = "") -> str:
        lines = [INITIAL_STR] + [f"{q} {a}" for q, a in self.game["lines"]]
        if status:
            lines.append(status)
        return "\n".join(lines)


# -- the env -------------------------------------------------------------------------------------------
class TwentyQuestionsEnv(QuestionGameEnv):
    """
    ## Description
    Twenty Questions as LMRL-Gym defines it: the env hides an object (from a table of common
    things: animals, food, vehicles, tools, ...); the agent asks yes/no questions and must name the
    object in at most twenty. The oracle answers each question; the game tests whether a model
    gathers information strategically over many turns.

    ## Action Space
    Free text: one question. A question must start with a yes/no question word (is, does, can, do,
    are, could, ...) and have at most 40 words, as the benchmark's asker post-processing demands; a
    short line ending in "?" ("Cat?") counts as a guess. Anything else (empty, junk, a statement)
    is an invalid question: it is answered "No." as the benchmark answers its invalid-question
    marker, shown as invalid in ``info``, and costs ``invalid_reward``. A guess names the object:
    "Is it a cat?", "Could it be a pair of socks?" (the object's name or a variant, optionally
    plural, nothing else after the question lead).

    ## Observation Space
    Text: ``"Questions:"`` then one line per question and its answer (``"Is it alive? No."``), as
    the benchmark's conversation lines, and at the end a line saying how the game ended.

    ## Starting State
    The object is drawn uniformly from the table with the env's ``np_random``, or set with
    ``reset(options={"object": "cat"})`` or ``options={"index": i}`` (the benchmark's deterministic
    mode: a fixed index into the list).

    ## Rewards
    As in LMRL-Gym and ArCHer: -1 for every question, 0 for the question that names the object and
    is answered "Yes."; an invalid question gives ``invalid_reward`` (default -1, the same cost).

    ## Episode End
    Terminated when the object is guessed (success) or after ``max_questions`` questions (20,
    failure; the last observation reveals the object).

    ## Information
    ``success``, ``valid_action``, ``question`` (as shown), ``answer``, ``object`` once the episode
    has ended, and ``oracle_error`` when an LLM oracle failed and its fallback answer was used.

    ## Arguments
    ``objects``: the table (default: the shipped one; a path to a JSON file in its format, or a
    sequence of records; see :func:`load_objects`). ``oracle``: any :class:`Oracle` (default: the
    rule-based :class:`TwentyQuestionsRuleOracle` over the table). ``oracle_backend``: an inference
    backend to answer instead, as an :class:`LLMOracle` with the benchmark's role (replies reduced
    to "Yes."/"No." as upstream): a backend object, a registered backend name (``"hf"``,
    ``"openai"``, ...) or a spec ``{"name": ..., **kwargs}``, with ``oracle_model`` the model of a
    name or spec (``oracle_backend="hf", oracle_model="default"``); a name or spec is built on the
    first question and closed with the env (see :func:`~plyground.envs.lmrl.oracle.oracle_backend_source`). ``max_questions`` (20), ``invalid_reward`` (-1.0),
    ``render_mode`` (``"ansi"``).

    ## Version History
    - v0: first version. Differences from upstream: the object table is plyground's own (169
      objects with attributes; the benchmark's list of 158 lives in its code), a rule-based oracle
      replaces the fine-tuned T5 oracle by default, a guess is recognised by matching names rather
      than part-of-speech tags, and the rule-based oracle may answer "I don't know.".
    """

    reward_range = (-1.0, 0.0)
    secret_word = "object"

    def __init__(
        self,
        objects: ObjectSource | None = None,
        oracle: Oracle | None = None,
        oracle_backend: Any = None,
        max_questions: int = MAX_QUESTIONS,
        invalid_reward: float = -1.0,
        render_mode: str | None = None,
        oracle_model: str | None = None,
    ) -> None:
        super().__init__(max_questions, invalid_reward, render_mode)
        self.secrets = self.objects = load_objects(objects)
        self.rule_oracle = TwentyQuestionsRuleOracle(self.objects)
        if oracle is not None and oracle_backend is not None:
            raise ValueError("pass oracle= or oracle_backend=, not both")
        if oracle_backend is not None:
            oracle = LLMOracle(
                oracle_backend_source(oracle_backend, oracle_model),
                TWENTY_QUESTIONS_ROLE,
                describe=_describe_object,
                postprocess=yes_no,
                fallback=NO,
                max_tokens=4,
            )
        elif oracle_model is not None:
            raise ValueError("oracle_model= names the model of oracle_backend=; give oracle_backend= too")
        self.oracle = oracle if oracle is not None else self.rule_oracle
        self.instructions = (
            f"Let's play twenty questions. I am thinking of an object. You have {self.max_questions} "
            "yes/no questions to find it. Ask one question per turn, starting with a word such as "
            "Is, Does, Can, Do or Are, for example: Is it alive? I answer Yes or No. To guess, name "
            "the object in a question, for example: Is it a cat? Each question costs 1 point, "
            "unless it names the object correctly, which ends the game."
        )

    def postprocess(self, answer: str) -> str:
        a = answer.strip()
        return a if a in (YES, NO, UNKNOWN) else yes_no(a)


def _describe_object(secret: Any) -> str:
    if isinstance(secret, Mapping):
        variants = secret.get("variants") or []
        return str(secret["name"]) + (f" (also called {', '.join(variants)})" if variants else "")
    return str(secret)


# -- the solver ----------------------------------------------------------------------------------------
_CATEGORY_QUESTIONS = {
    "animal": "Is it an animal?",
    "fruit": "Is it a fruit?",
    "vegetable": "Is it a vegetable?",
    "food": "Is it a prepared food?",
    "vehicle": "Is it a vehicle?",
    "clothing": "Is it a piece of clothing?",
    "electronics": "Is it an electronic device?",
    "instrument": "Is it a musical instrument?",
    "furniture": "Is it a piece of furniture?",
    "office": "Is it an office supply?",
    "kitchen": "Is it a kitchen utensil?",
    "tool": "Is it a tool?",
    "sports": "Is it sports equipment?",
    "toy": "Is it a toy?",
    "jewelry": "Is it jewelry?",
    "nature": "Is it a natural feature?",
    "household": "Is it a household item?",
}
_GENERAL_QUESTIONS = (
    "Is it alive?",
    "Can you eat it?",
    "Is it man-made?",
    "Does it use electricity?",
    "Does it fit in your pocket?",
    "Is it bigger than a breadbox?",
    "Is it bigger than a person?",
    "Is it bigger than a house?",
    "Is it found in a kitchen?",
    "Is it found in a house?",
    "Is it found in an office?",
    "Is it found in a garden?",
    "Is it found on a farm?",
    "Does it live in the wild?",
    "Is it found in water?",
    "Is it found on roads?",
    "Is it found in the sky?",
    "Is it found outdoors?",
    "Does it have wheels?",
    "Does it have legs?",
    "Does it have wings?",
    "Can it fly?",
    "Can it swim?",
    "Does it have fur?",
    "Does it have feathers?",
    "Does it have a tail?",
    "Is it a mammal?",
    "Is it a bird?",
    "Is it an insect?",
    "Is it a reptile?",
    "Do people keep it as a pet?",
    "Is it used to make music?",
    "Is it used in sports?",
    "Does it bounce?",
    "Is it used for cooking?",
    "Is it baked?",
    "Is it used for writing?",
    "Can you ride it?",
    "Does it have a screen?",
    "Does it have strings?",
    "Does it have an engine?",
    "Can it hold things?",
    "Do children play with it?",
    "Is it heavy?",
    "Is it a plant?",
    "Is it used for cutting?",
    "Is it used for cleaning?",
    "Does it give light?",
    "Does it make a sound?",
    "Does it have a handle?",
    "Does it have buttons?",
    "Does it have keys?",
    "Does it have a door?",
    "Is it valuable?",
    "Does it tell the time?",
    "Can you call people with it?",
    "Do you read it?",
    "Does it have leaves?",
    "Does it have seeds?",
    "Do you peel it?",
    "Is it fragile?",
    "Is it used for sleeping?",
    "Do you sit on it?",
    "Is it sour?",
    "Is it sweet?",
    "Is it a liquid?",
    "Is it hot?",
    "Is it cold?",
    "Is it sharp?",
    "Is it round?",
    "Is it flat?",
    "Is it soft?",
    "Can you wear it?",
    "Is it worn on the head?",
    "Is it worn on the feet?",
    "Is it worn on the hands?",
    "Does it have windows?",
    "Does it have pockets?",
    "Does it use batteries?",
    "Does it grow on trees?",
    "Does it grow underground?",
)
_MATERIAL_QUESTIONS = tuple(
    f"Is it made of {m}?"
    for m in (
        "metal",
        "wood",
        "plastic",
        "glass",
        "paper",
        "fabric",
        "leather",
        "rubber",
        "stone",
        "ceramic",
        "water",
        "wax",
    )
)
_CODE = {YES: 0, NO: 1, UNKNOWN: 2}


class TwentyQuestionsSolver:
    """A scripted questioner: keeps the objects consistent with every answer in the transcript,
    asks the bank question (category, alive, size, material, place, colour, features) whose
    answers split them most evenly (least expected number left), and guesses once one or two
    are left or no question separates them.

    ``objects`` must be the env's table (same forms as ``TwentyQuestionsEnv``); the solver
    predicts answers with the rule-based oracle over it, so with that oracle it never loses track
    of the object. ``act(observation)`` reads the whole transcript each time (stateless, so it
    works after ``restore``).
    """

    def __init__(self, objects: ObjectSource | None = None) -> None:
        self.objects = load_objects(objects)
        self.oracle = TwentyQuestionsRuleOracle(self.objects)
        bank = [*_CATEGORY_QUESTIONS.values(), *_GENERAL_QUESTIONS, *_MATERIAL_QUESTIONS]
        bank += [f"Is it usually {c}?" for c in COLORS_ASKED]
        self._cache: dict[str, np.ndarray] = {}
        rows = [self._answers(q) for q in bank]
        keep = [i for i, row in enumerate(rows) if len(set(row.tolist())) > 1]
        self.bank = [bank[i] for i in keep]
        self._matrix = (
            np.stack([rows[i] for i in keep]) if keep else np.zeros((0, len(self.objects)), np.int8)
        )

    @classmethod
    def for_env(cls, env: TwentyQuestionsEnv) -> TwentyQuestionsSolver:
        return cls(env.objects)

    def reset(self) -> None:
        """Nothing to forget between episodes: ``act`` reads the whole transcript each time."""

    def _answers(self, question: str) -> np.ndarray:
        """The rule-based oracle's answer code (0 yes, 1 no, 2 unknown) for every object."""
        if question not in self._cache:
            self._cache[question] = np.array(
                [_CODE[self.oracle.answer(question, obj)] for obj in self.objects], dtype=np.int8
            )
        return self._cache[question]

    def candidates(self, lines: Sequence[tuple[str, str]]) -> np.ndarray:
        """Indices of the objects consistent with every (question, answer) line."""
        alive = np.arange(len(self.objects))
        for question, answer in lines:
            if answer not in _CODE:
                continue
            row = self._answers(question)
            alive = alive[row[alive] == _CODE[answer]]
        return alive

    def act(self, observation: str) -> str:
        lines = parse_transcript(observation)
        alive = self.candidates(lines)
        asked = {q for q, _ in lines}
        if len(alive) == 0:  # answers fit no object (another oracle): fall back to the whole table
            alive = np.array([i for i in range(len(self.objects)) if self._guess(i) not in asked])
            if len(alive) == 0:
                return "Is it alive?"
        if len(alive) > 2:
            sub = self._matrix[:, alive]
            counts = np.stack([(sub == k).sum(axis=1) for k in range(3)], axis=1)
            splits = (counts > 0).sum(axis=1) > 1
            if splits.any():
                expected = (counts.astype(np.float64) ** 2).sum(axis=1) / len(alive)
                expected[~splits] = np.inf
                return self.bank[int(np.argmin(expected))]
        return self._guess(int(alive[0]))

    def _guess(self, index: int) -> str:
        return f"Is it {with_article(self.objects[index]['name'])}?"


def parse_transcript(observation: str) -> list[tuple[str, str]]:
    """The (question, answer) lines of a question-game observation."""
    out = []
    for line in observation.splitlines()[1:]:
        question, sep, answer = line.rpartition("? ")
        if sep:
            out.append((question + "?", answer))
    return out
