"""Wordle, as in LMRL-Gym: find a hidden five-letter word in six guesses from letter feedback.

Besides the env this module gives :func:`feedback` (the colour pattern of a guess, standard rules
for repeated letters), :func:`load_words` / :func:`builtin_words` (word lists in the upstream
one-word-a-line format) and :class:`WordleSolver`, a maximum-entropy solver for scripted play and
behaviour-cloning data.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from plyground.envs.core import EnvSnapshot, TextEnv

WORD_LENGTH = 5
MAX_GUESSES = 6
GREEN, YELLOW, GREY = "G", "Y", "B"
ALL_GREEN = GREEN * WORD_LENGTH
# Instructions list the accepted words when there are at most this many, as the benchmark's
# prompts list its 431-word vocabulary.
LIST_WORDS_UP_TO = 1000

# The word lists shipped in ``data/`` (see data/README.md): a name here or a path to a file.
BUILTIN_LISTS = {
    "lmrl": "wordle_lmrl_vocab.txt",  # the benchmark's vocabulary (431 words): answers and guesses
    "official": "wordle_answers.txt",  # the 2,315 official answers
    "official-guesses": "wordle_allowed.txt",  # the 12,972 official allowed guesses
}

_A_TO_Z = re.compile(r"[a-z]{5}")
# A five-letter word, or one spelled letter by letter as the benchmark's prompts write words
# ("c r a n e"); letters of any script, so that a word with a non-ASCII letter is refused whole.
_L = r"[^\W\d_]"
_GUESS = re.compile(rf"(?<!{_L})(?:{_L}(?:[ \t]+{_L}){{4}}|{_L}{{5}})(?!{_L})")
_BOARD_LINE = re.compile(r"^Guess \d+: ([a-z]{5}) -> ([GYB]{5})$", re.MULTILINE)
_SHOWN_MAX = 20


# -- feedback --------------------------------------------------------------------------------------
def feedback(guess: str, target: str) -> str:
    """The colour pattern of ``guess`` against ``target``: five characters of G, Y and B.

    G: right letter, right place. Y: the letter is in the word elsewhere. B: absent. Repeated
    letters follow the game's rules: greens are marked first; then, left to right, a letter is
    yellow only while the target still has unmatched copies of it. Guessing "babes" for "abbey"
    gives ``"YYGGB"``, and "kebab" gives ``"BYGYY"`` (its second b finds no unmatched b left).
    Case is ignored. Raises ``ValueError`` unless both words have five characters.
    """
    guess, target = guess.lower(), target.lower()
    if len(guess) != WORD_LENGTH or len(target) != WORD_LENGTH:
        raise ValueError(f"feedback needs two {WORD_LENGTH}-letter words, got {guess!r} and {target!r}")
    result = [GREY] * WORD_LENGTH
    unmatched: Counter[str] = Counter()
    for i, (g, t) in enumerate(zip(guess, target, strict=True)):
        if g == t:
            result[i] = GREEN
        else:
            unmatched[t] += 1
    for i, g in enumerate(guess):
        if result[i] != GREEN and unmatched[g] > 0:
            result[i] = YELLOW
            unmatched[g] -= 1
    return "".join(result)


def pattern_code(pattern: str) -> int:
    """A pattern as a number in 0..242 (base 3, B=0 Y=1 G=2, first letter most significant)."""
    code = 0
    for ch in pattern:
        code = code * 3 + "BYG".index(ch)
    return code


def _encode(words: Sequence[str]) -> np.ndarray:
    """Words as an (n, 5) int8 array of letter indices 0..25."""
    if not words:
        return np.zeros((0, WORD_LENGTH), dtype=np.int8)
    raw = np.frombuffer("".join(words).encode("ascii"), dtype=np.uint8).reshape(len(words), WORD_LENGTH)
    return (raw - ord("a")).astype(np.int8)


def pattern_matrix(guesses: Sequence[str], targets: Sequence[str], chunk: int = 1024) -> np.ndarray:
    """``pattern_code(feedback(g, t))`` for every guess (rows) and target (columns), vectorised.

    A non-green guess letter is yellow when fewer earlier non-green copies of it in the guess than
    unmatched copies in the target exist: the same left-to-right rule as :func:`feedback`.
    """
    t = _encode(targets)
    out = np.empty((len(guesses), len(targets)), dtype=np.uint8)
    for start in range(0, len(guesses), chunk):
        g = _encode(guesses[start : start + chunk])
        green = g[:, None, :] == t[None, :, :]  # (G, T, 5)
        code = np.zeros(green.shape[:2], dtype=np.int16)
        for i in range(WORD_LENGTH):
            letter = g[:, i][:, None]  # (G, 1)
            unmatched = np.zeros(green.shape[:2], dtype=np.int8)
            for k in range(WORD_LENGTH):
                unmatched += (t[None, :, k] == letter) & ~green[:, :, k]
            earlier = np.zeros(green.shape[:2], dtype=np.int8)
            for j in range(i):
                earlier += (g[:, j] == g[:, i])[:, None] & ~green[:, :, j]
            yellow = ~green[:, :, i] & (earlier < unmatched)
            code = code * 3 + 2 * green[:, :, i] + yellow
        out[start : start + chunk] = code
    return out


# -- word lists ------------------------------------------------------------------------------------
WordSource = str | os.PathLike[str] | Iterable[str]


def load_words(source: WordSource) -> tuple[str, ...]:
    """A word list: a built-in name (``BUILTIN_LISTS``), a path, or an iterable of words.

    Files are in the upstream format, one word a line. Each entry is stripped and lower-cased;
    those that are not five letters a-z are skipped. Duplicates are dropped, order is kept.
    """
    if isinstance(source, str) and source in BUILTIN_LISTS:
        return builtin_words(source)
    if isinstance(source, str | os.PathLike):
        with open(source, encoding="utf-8") as f:
            entries: Iterable[str] = f.read().splitlines()
    else:
        entries = source
    words = (str(w).strip().lower() for w in entries)
    return tuple(dict.fromkeys(w for w in words if _A_TO_Z.fullmatch(w)))


@functools.cache
def builtin_words(name: str) -> tuple[str, ...]:
    """A word list shipped with the package: ``"lmrl"``, ``"official"`` or ``"official-guesses"``."""
    if name not in BUILTIN_LISTS:
        raise ValueError(f"unknown word list {name!r}; built-in lists: {sorted(BUILTIN_LISTS)}")
    text = resources.files("plyground.envs.lmrl").joinpath("data", BUILTIN_LISTS[name]).read_text("utf-8")
    return load_words(text.splitlines())


# -- the env ---------------------------------------------------------------------------------------
class WordleEnv(TextEnv):
    """
    ## Description
    Wordle as LMRL-Gym defines it: the env hides a word from its answer list; the agent has six
    guesses, and after each valid guess sees which letters are right and in place (G), in the word
    elsewhere (Y) or absent (B). The game tests whether a model narrows down candidates from the
    feedback it has collected.

    ## Action Space
    Free text. The last five-letter word in the reply is the guess (``"crane"``, ``"CRANE"``,
    ``"My guess: crane"``); a reply spelled letter by letter (``"c r a n e"``, the benchmark's
    tokenised form) is read as one word. A reply with no five-letter word, a word with letters
    outside a-z, or a word not in the allowed-guess list is an invalid guess: the observation says
    what was wrong, and the guess counts as one of the six.

    ## Observation Space
    Text: the board so far, one line per guess (``"Guess 1: crane -> BYGBB"``; an invalid guess is
    shown with the reason), then a line with the guesses left or the end of the game. The board
    carries the whole history, as the benchmark's text history does.

    ## Starting State
    The hidden word is drawn uniformly from the answer list with the env's ``np_random``, or set
    with ``reset(options={"target": "crane"})`` (a five-letter word a-z).

    ## Rewards
    As in LMRL-Gym: -1 for every guess that does not solve the puzzle, 0 for the guess that does;
    an invalid guess gives ``invalid_reward`` (the benchmark's default, -1).

    ## Episode End
    Terminated when the word is guessed (success) or after ``max_guesses`` guesses, valid or not
    (failure; the last observation reveals the word). The game's own limit ends it, so it is
    never truncated.

    ## Information
    ``success``, ``valid_action``, ``guess`` (the parsed word or None), ``feedback`` (the pattern
    or None) and ``target`` once the episode has ended.

    ## Arguments
    ``answers`` (default ``"lmrl"``, the benchmark's 431-word vocabulary): the words the target is
    drawn from: a built-in list name (``"lmrl"``, ``"official"``, ``"official-guesses"``), a path to
    a file with one word a line (the upstream format), or a sequence of words. ``allowed``
    (default: the same as ``answers``, as upstream with ``require_words_in_vocab=True``): the words
    accepted as guesses, same forms; the answers are always allowed. ``max_guesses`` (default 6).
    ``invalid_reward`` (default -1.0; the benchmark's PPO script uses -10). ``list_words``: whether
    the instructions list the allowed words (default: when there are at most 1,000, as the
    benchmark's prompts list its vocabulary). ``render_mode``:
    ``"ansi"`` renders the last observation.

    ## Version History
    - v0: first version. Differences from upstream: the target is fixed at reset rather than
      redrawn each turn among the words consistent with the feedback (the same distribution for a
      uniform prior), feedback follows the game's repeated-letter rules exactly, and replies are
      parsed leniently (case, surrounding text) instead of compared verbatim.
    """

    reward_range = (-1.0, 0.0)

    def __init__(
        self,
        answers: WordSource = "lmrl",
        allowed: WordSource | None = None,
        max_guesses: int = MAX_GUESSES,
        invalid_reward: float = -1.0,
        list_words: bool | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if max_guesses < 1:
            raise ValueError(f"max_guesses must be >= 1, got {max_guesses}")
        self.answers = load_words(answers)
        if not self.answers:
            raise ValueError("the answer list has no five-letter words")
        extra = load_words(allowed) if allowed is not None else ()
        self.allowed = tuple(dict.fromkeys(self.answers + extra))
        self._allowed_set = frozenset(self.allowed)
        self.max_guesses = self.max_turns = int(max_guesses)
        self.invalid_reward = float(invalid_reward)
        self.reward_range = (min(-1.0, self.invalid_reward), 0.0)
        self.instructions = (
            "Let's play Wordle. I am thinking of a five-letter English word. You have "
            f"{self.max_guesses} guesses to find it. After each guess I show the board: every guess "
            "with five feedback letters, one per position: G means the letter is in the word at "
            "that position, Y means the letter is in the word at another position, B means the "
            "letter is not in the word (or not as many times as you used it). Every guess must be a "
            "real five-letter word from the game's word list; any other reply is an invalid guess "
            "and still uses up a turn. Each guess that does not find the word costs 1 point. Reply "
            "with your guess as a single word, for example: crane. If your reply has more text, "
            "the last five-letter word in it is taken as your guess."
        )
        if list_words or (list_words is None and len(self.allowed) <= LIST_WORDS_UP_TO):
            self.instructions += " The words the game accepts are: " + " ".join(self.allowed) + "."
        self.target = ""
        self.board: list[tuple[str, str | None, str]] = []  # (word shown, pattern or None, reason)

    # -- dynamics ------------------------------------------------------------------------------
    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if "target" in options:
            target = str(options["target"]).strip().lower()
            if not _A_TO_Z.fullmatch(target):
                raise ValueError(f"target must be five letters a-z, got {options['target']!r}")
        else:
            target = self.answers[int(rng.integers(len(self.answers)))]
        self.target = target
        self.board = []
        obs = (
            f"Wordle: guess the hidden five-letter word. You have {self.max_guesses} guesses. "
            "What is your first guess?"
        )
        return obs, {"guess": None, "feedback": None}

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        guess, problem = self.parse(action)
        left = self.max_guesses - self.turn
        if guess is None:
            self.board.append((_shorten(action), None, problem))
            info: dict[str, Any] = {"guess": None, "feedback": None, "valid_action": False}
            over = left <= 0
            status = f"Invalid guess: {problem}. " + self._status(left, solved=False)
            if over:
                info["target"] = self.target
            return self._render(status), self.invalid_reward, over, info
        pattern = feedback(guess, self.target)
        self.board.append((guess, pattern, ""))
        solved = pattern == ALL_GREEN
        info = {"guess": guess, "feedback": pattern, "valid_action": True, "success": solved}
        over = solved or left <= 0
        if over:
            info["target"] = self.target
        return self._render(self._status(left, solved)), 0.0 if solved else -1.0, over, info

    def parse(self, action: str) -> tuple[str | None, str]:
        """The guess in ``action`` (lower case, allowed), or None and what was wrong with it."""
        last = deque(_GUESS.finditer(action), maxlen=1)
        if not last:
            return None, "the reply contains no five-letter word"
        word = "".join(last[0].group(0).split())
        lowered = word.lower()
        if not _A_TO_Z.fullmatch(lowered):
            return None, f"{word!r} is not five letters a-z"
        if lowered not in self._allowed_set:
            return None, f"{lowered!r} is not in the word list"
        return lowered, ""

    def _status(self, left: int, solved: bool) -> str:
        if solved:
            return f"Solved! The word was {self.target}."
        if left <= 0:
            return f"You are out of guesses. The word was {self.target}."
        return f"You have {left} guess{'es' if left != 1 else ''} left."

    def _render(self, status: str) -> str:
        lines = []
        for n, (word, pattern, reason) in enumerate(self.board, start=1):
            lines.append(
                f"Guess {n}: {word} -> {pattern}" if pattern else f"Guess {n}: {word!r} (invalid: {reason})"
            )
        return "\n".join([*lines, status])

    # -- native snapshot ----------------------------------------------------------------------
    def snapshot(self) -> WordleState:
        return WordleState(
            target=self.target,
            board=tuple(self.board),
            **self._episode_fields(),
        )

    def restore(self, state: Any) -> str:
        if isinstance(state, EnvSnapshot):
            return super().restore(state)
        if not isinstance(state, WordleState):
            raise TypeError(f"WordleEnv.restore expects a WordleState, got {type(state).__name__}")
        self.target, self.board = state.target, list(state.board)
        self._restore_episode_fields(state)
        return state.last_observation


def _shorten(text: str) -> str:
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 3] + "..."


@dataclass(frozen=True)
class WordleState:
    """``WordleEnv.snapshot()``: the target and board plus what the base class tracks."""

    target: str
    board: tuple[tuple[str, str | None, str], ...]
    turn: int
    done: bool
    last_observation: str
    actions: tuple[str, ...]
    options: dict[str, Any] | None
    episode_rng_state: dict[str, Any]
    rng_state: dict[str, Any]


# -- the solver ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _cached_matrix(guesses: tuple[str, ...], targets: tuple[str, ...]) -> np.ndarray:
    matrix = pattern_matrix(guesses, targets)
    matrix.setflags(write=False)
    return matrix


class WordleSolver:
    """Plays Wordle from the board in the observation: keep the answers consistent with every
    feedback line, then guess the word whose feedback splits them most evenly (maximum entropy of
    the pattern distribution; ties and near-ties go to a word that could itself be the answer).

    ``answers`` must be the env's answer list (same forms as ``WordleEnv``). ``guess_pool``:
    ``"answers"`` (default; guesses come from the answer list, fast) or ``"allowed"`` (any allowed
    word; a 13k x 2.3k pattern table for the official lists, a few seconds to build). The first
    guess is computed once and cached. ``reset()`` at the start of an episode, ``act(observation)``
    after every observation; the observation's board is all the solver reads.
    """

    def __init__(
        self,
        answers: WordSource = "lmrl",
        allowed: WordSource | None = None,
        guess_pool: str = "answers",
    ) -> None:
        self.answers = load_words(answers)
        extra = load_words(allowed) if allowed is not None else ()
        self.allowed = tuple(dict.fromkeys(self.answers + extra))
        if guess_pool not in ("answers", "allowed"):
            raise ValueError(f"guess_pool must be 'answers' or 'allowed', got {guess_pool!r}")
        self.pool = self.answers if guess_pool == "answers" else self.allowed
        self._pool_index = {w: i for i, w in enumerate(self.pool)}
        self._answer_index = {w: i for i, w in enumerate(self.answers)}
        self._matrix = _cached_matrix(self.pool, self.answers)
        self._is_answer = np.array([w in self._answer_index for w in self.pool])
        self._decisions: dict[tuple[tuple[str, str], ...], str] = {}

    @classmethod
    def for_env(cls, env: WordleEnv, guess_pool: str = "answers") -> WordleSolver:
        """A solver over ``env``'s answer and allowed lists."""
        return cls(env.answers, env.allowed, guess_pool)

    def reset(self) -> None:
        """Nothing to forget between episodes: ``act`` reads the whole board each time."""

    def candidates(self, history: Sequence[tuple[str, str]]) -> np.ndarray:
        """Indices into ``answers`` of the words consistent with every (guess, pattern)."""
        alive = np.arange(len(self.answers))
        for word, pattern in history:
            if word in self._pool_index:
                row = self._matrix[self._pool_index[word]]
            else:
                row = pattern_matrix([word], self.answers)[0]
            alive = alive[row[alive] == pattern_code(pattern)]
        return alive

    def act(self, observation: str) -> str:
        history = tuple((m.group(1), m.group(2)) for m in _BOARD_LINE.finditer(observation))
        if history in self._decisions:
            return self._decisions[history]
        alive = self.candidates(history)
        guessed = {word for word, _ in history}
        if len(alive) == 0:  # the feedback fits no answer (a target outside the list): any new word
            choice = next((w for w in self.allowed if w not in guessed), self.allowed[0])
        elif len(alive) <= 2:
            choice = self.answers[int(alive[0])]
        else:
            choice = self._best_split(alive)
        self._decisions[history] = choice
        return choice

    def _best_split(self, alive: np.ndarray) -> str:
        sub = self._matrix[:, alive].astype(np.int64)  # (pool, candidates)
        n_pool, n_alive = sub.shape
        counts = np.bincount((sub + 243 * np.arange(n_pool)[:, None]).ravel(), minlength=243 * n_pool)
        p = counts.reshape(n_pool, 243) / n_alive
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
        # A guess that may be the answer wins outright with probability 1/n: worth that much
        # information, which breaks ties and near-ties in its favour.
        in_alive = np.zeros(n_pool, dtype=bool)
        alive_words = {self.answers[int(i)] for i in alive}
        in_alive[[self._pool_index[w] for w in alive_words if w in self._pool_index]] = True
        score = entropy + in_alive * (math.log(n_alive) / n_alive)
        return self.pool[int(np.argmax(score))]
