"""Guess My City, as in LMRL-Gym: find a hidden city by asking questions, open or yes/no.

Besides the env this module gives :func:`load_cities` (the shipped city table, or the benchmark's
``global_cities.txt`` list from a path) and :class:`GuessMyCitySolver`, a scripted questioner.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np

from plyground.envs.lmrl.oracle import (
    CONTINENTS,
    GUESS_CITY_ROLE,
    QUESTION_STARTS,
    UNKNOWN,
    CityRuleOracle,
    LLMOracle,
    Oracle,
    normalize,
    oracle_backend_source,
)
from plyground.envs.lmrl.twenty_questions import MAX_QUESTIONS, QuestionGameEnv, parse_transcript

CitySource = str | os.PathLike[str] | Sequence[Mapping[str, Any]]
# Open-question words (the benchmark's oracle answers open questions too).
OPEN_STARTS = frozenset(["what", "which", "where", "how", "who", "why", "when", "tell", "describe", "name"])
_MAX_WORDS = 40
# Countries of the benchmark's list that the shipped table spells differently, and continents for
# countries the table has no city of.
_COUNTRY_ALIASES = {
    "ethopia": "Ethiopia",
    "cote d'ivorie": "Ivory Coast",
    "cote d'ivoire": "Ivory Coast",
    "united states": "USA",
    "us": "USA",
    "united kingdom": "UK",
}
_EXTRA_CONTINENTS = {
    "Taiwan": "Asia",
    "Nigeria": "Africa",
    "Kenya": "Africa",
    "South Africa": "Africa",
    "Saudi Arabia": "Asia",
    "Poland": "Europe",
    "Netherlands": "Europe",
}


def load_cities(source: CitySource | None = None) -> tuple[dict[str, Any], ...]:
    """The city table: ``None`` for the shipped one (``data/guess_city_cities.json``), a path to
    a JSON file in that format, a path to a list in the benchmark's format (``global_cities.txt``:
    a header line, then ``rank; city; country; population`` lines), or a sequence of records.

    Cities read from the benchmark's list take their attributes from the shipped table where it
    has them (matched by name or variant, e.g. "Bombay" is Mumbai); others keep the country and
    population from the list and a continent looked up by country.
    """
    if source is None:
        return builtin_cities()
    if isinstance(source, str | os.PathLike):
        with open(source, encoding="utf-8") as f:
            text = f.read()
        if str(source).endswith(".json") or text.lstrip().startswith(("{", "[")):
            data = json.loads(text)
            return _complete(data["cities"] if isinstance(data, dict) else data)
        return _from_upstream(text)
    return _complete(source)


@functools.cache
def builtin_cities() -> tuple[dict[str, Any], ...]:
    text = (
        resources.files("plyground.envs.lmrl").joinpath("data", "guess_city_cities.json").read_text("utf-8")
    )
    return _complete(json.loads(text)["cities"])


def _complete(records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
    out = []
    for record in records:
        city = {"variants": [], "landmarks": [], **dict(record)}
        if not str(city.get("name", "")).strip() or not city.get("country"):
            raise ValueError(f"a city record needs a name and a country: {record!r}")
        if "continent" not in city:
            city["continent"] = _continent(str(city["country"]))
        out.append(city)
    if not out:
        raise ValueError("the city table is empty")
    return tuple(out)


def _continent(country: str) -> str:
    for city in builtin_cities():
        if normalize(city["country"]) == normalize(country):
            return str(city["continent"])
    return _EXTRA_CONTINENTS.get(country, "")


def _from_upstream(text: str) -> tuple[dict[str, Any], ...]:
    known = {normalize(n): c for c in builtin_cities() for n in [c["name"], *c["variants"]]}
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.replace("\u2019", "'").split(";")]
        if len(parts) < 3 or not parts[0].isdigit():
            continue  # the header, blank lines
        name, country = parts[1], parts[2]
        country = _COUNTRY_ALIASES.get(country.lower(), country)
        population = None
        if len(parts) > 3 and re.fullmatch(r"[\d,]+", parts[3]):
            population = round(int(parts[3].replace(",", "")) / 1e6, 2)
        if normalize(name) in known:
            city = dict(known[normalize(name)])
            if name != city["name"] and name not in city["variants"]:
                city["variants"] = [*city["variants"], name]
        else:
            city = {
                "name": name,
                "variants": [],
                "country": country,
                "continent": _continent(country),
                "population_millions": population,
                "landmarks": [],
            }
        out.append(city)
    if not out:
        raise ValueError("no 'rank; city; country; population' lines in the city list")
    return _complete(out)


class GuessMyCityEnv(QuestionGameEnv):
    """
    ## Description
    Guess My City as LMRL-Gym defines it: the env hides a city (one of the world's large
    cities); the agent asks questions, open ("What language do people speak there?") or yes/no
    ("Is it in Asia?"), and must name the city within twenty questions. The oracle answers
    truthfully without naming the city or its country.

    ## Action Space
    Free text: one question of at most 40 words that ends with "?" or starts with a question word
    (what, which, where, how, is, does, can, ...). A guess names the city: "Is it Paris?", "Is the
    city Paris, France?" (a name or variant, such as "Bombay" for Mumbai). Anything else (empty,
    junk, a statement) is an invalid question: it is answered "No.", marked invalid in ``info``,
    and costs ``invalid_reward``.

    ## Observation Space
    Text: ``"Questions:"`` then one line per question and its answer, and at the end a line saying
    how the game ended, as in Twenty Questions.

    ## Starting State
    The city is drawn uniformly from the table with the env's ``np_random``, or set with
    ``reset(options={"city": "Paris"})`` or ``options={"index": i}``.

    ## Rewards
    As in Twenty Questions (the benchmark uses the same reward): -1 per question, 0 for the
    question that names the city (as ArCHer's version decides it, whatever the oracle answers); an
    invalid question gives ``invalid_reward`` (default -1). An oracle answer that names the city
    to a question that does not is replaced by "I can't answer that question." (as ArCHer).

    ## Episode End
    Terminated when the city is guessed (success) or after ``max_questions`` questions (20,
    failure; the last observation reveals the city).

    ## Information
    ``success``, ``valid_action``, ``question``, ``answer``, ``city`` once the episode has ended,
    and ``oracle_error`` when an LLM oracle failed and its fallback answer was used.

    ## Arguments
    ``cities``: the table (default: the shipped one, 69 cities with attributes); a path to the
    benchmark's ``global_cities.txt`` (its 100 cities), a JSON file in the shipped format, or a
    sequence of records; see :func:`load_cities`. ``oracle``: any :class:`Oracle` (default: the
    rule-based :class:`CityRuleOracle`). ``oracle_backend``: an inference backend to answer
    instead, as an :class:`LLMOracle` with the benchmark's role: a backend object, a registered
    backend name or a spec ``{"name": ..., **kwargs}``, with ``oracle_model`` the model of a name or
    spec (as in :class:`~plyground.envs.lmrl.twenty_questions.TwentyQuestionsEnv`). ``max_questions`` (20),
    ``invalid_reward`` (-1.0), ``render_mode`` (``"ansi"``).

    ## Version History
    - v0: first version. Differences from upstream: the default city table is plyground's own with
      attributes (the benchmark ships only names, countries and populations, readable with
      ``cities=<path>``), a rule-based oracle replaces the fine-tuned T5 oracle by default, and a
      guess is recognised by matching names rather than part-of-speech tags.
    """

    reward_range = (-1.0, 0.0)
    secret_word = "city"
    guess_needs_yes = False

    def __init__(
        self,
        cities: CitySource | None = None,
        oracle: Oracle | None = None,
        oracle_backend: Any = None,
        max_questions: int = MAX_QUESTIONS,
        invalid_reward: float = -1.0,
        render_mode: str | None = None,
        oracle_model: str | None = None,
    ) -> None:
        super().__init__(max_questions, invalid_reward, render_mode)
        self.secrets = self.cities = load_cities(cities)
        self.rule_oracle = CityRuleOracle(self.cities)
        if oracle is not None and oracle_backend is not None:
            raise ValueError("pass oracle= or oracle_backend=, not both")
        if oracle_backend is not None:
            oracle = LLMOracle(
                oracle_backend_source(oracle_backend, oracle_model),
                GUESS_CITY_ROLE,
                describe=_describe_city,
                fallback=UNKNOWN,
                max_tokens=48,
            )
        elif oracle_model is not None:
            raise ValueError("oracle_model= names the model of oracle_backend=; give oracle_backend= too")
        self.oracle = oracle if oracle is not None else self.rule_oracle
        self.instructions = (
            f"Let's play a game: I am thinking of a city, and you have {self.max_questions} "
            "questions to find it. Ask one question per turn; it can be open (What language do "
            "people speak there?) or yes/no (Is it in Europe?). I answer truthfully but never say "
            "the city's name or its country. To guess, name the city in a question, for example: "
            "Is it Paris? Each question costs 1 point, unless it names the city correctly, which "
            "ends the game."
        )

    def answer_for(self, question: str, secret: dict[str, Any], history: list[tuple[str, str]]) -> str:
        answer = super().answer_for(question, secret, history)
        if self.names_secret(question, [secret["name"], *secret.get("variants", ())]):
            return answer  # a guess: the answer may confirm the name
        for name in (secret["name"], *secret.get("variants", ())):
            if re.search(rf"\b{re.escape(name.lower())}\b", answer.lower()):
                return "I can't answer that question."  # as ArCHer: an answer must not leak the city
        return answer

    def valid(self, action: str) -> bool:
        words = normalize(action).split()
        if not words or len(words) > _MAX_WORDS or not re.search(r"[a-z]", " ".join(words)):
            return False
        return action.strip().endswith("?") or words[0] in QUESTION_STARTS or words[0] in OPEN_STARTS


def _describe_city(secret: Any) -> str:
    if isinstance(secret, Mapping):
        return f"{secret['name']}, {secret['country']}"
    return str(secret)


class GuessMyCitySolver:
    """A scripted questioner for Guess My City: keeps the cities consistent with every answer,
    asks the question (continent, language, capital, coast, hemisphere, population, climate,
    country) whose answers split them most evenly, then guesses. It does not ask what a city is
    known for (that answer alone names it). ``cities`` must be the env's table.
    """

    def __init__(self, cities: CitySource | None = None) -> None:
        self.cities = load_cities(cities)
        self.oracle = CityRuleOracle(self.cities)
        bank = [
            "What continent is the city in?",
            "What language do most people speak there?",
            "Is it a capital city?",
            "Is it on the coast?",
            "Is it in the southern hemisphere?",
            "What is the climate like?",
            *(f"Does it have more than {n} million people?" for n in (2, 3, 4, 5, 7, 9, 11, 14)),
            *(f"Is it in {c}?" for c in CONTINENTS),
            *(f"Is it in {c}?" for c in sorted({city["country"] for city in self.cities})),
        ]
        self._cache: dict[str, list[str]] = {}
        self.bank = [q for q in bank if len(set(self._answers(q))) > 1]

    @classmethod
    def for_env(cls, env: GuessMyCityEnv) -> GuessMyCitySolver:
        return cls(env.cities)

    def reset(self) -> None:
        """Nothing to forget between episodes: ``act`` reads the whole transcript each time."""

    def _answers(self, question: str) -> list[str]:
        if question not in self._cache:
            self._cache[question] = [self.oracle.answer(question, city) for city in self.cities]
        return self._cache[question]

    def act(self, observation: str) -> str:
        lines = parse_transcript(observation)
        alive = np.arange(len(self.cities))
        for question, answer in lines:
            row = self._answers(question)
            kept = alive[[row[i] == answer for i in alive]] if len(alive) else alive
            alive = kept if len(kept) else alive  # an answer no city gives (another oracle): ignore it
        asked = {q for q, _ in lines}
        if len(alive) > 2:
            best, best_score = None, float("inf")
            for question in self.bank:
                if question in asked:
                    continue
                row = self._answers(question)
                counts: dict[str, int] = {}
                for i in alive:
                    counts[row[i]] = counts.get(row[i], 0) + 1
                if len(counts) < 2:
                    continue
                score = sum(c * c for c in counts.values())
                if score < best_score:
                    best, best_score = question, score
            if best is not None:
                return best
        for i in alive:
            guess = f"Is it {self.cities[int(i)]['name']}?"
            if guess not in asked:
                return guess
        return f"Is it {self.cities[int(alive[0])]['name']}?"
