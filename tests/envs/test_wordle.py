from __future__ import annotations

from collections import Counter
from pathlib import Path

import gymnasium
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import plyground
from plyground.envs import EnvSnapshot, check_env
from plyground.envs.checker import MALFORMED_ACTIONS
from plyground.envs.lmrl.wordle import (
    WordleEnv,
    WordleSolver,
    WordleState,
    builtin_words,
    feedback,
    load_words,
    pattern_code,
    pattern_matrix,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "lmrl-gym" / "wordle"
SMALL = ["crane", "slate", "abbey", "babes", "kebab", "speed", "erase", "geese", "those", "mummy"]


# -- feedback --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("guess", "target", "expected"),
    [
        ("crane", "crane", "GGGGG"),
        ("abcde", "fghij", "BBBBB"),
        ("babes", "abbey", "YYGGB"),  # the first b is yellow: the b at 2 is green, one b is left
        ("kebab", "abbey", "BYGYY"),
        ("abbey", "babes", "YYGGB"),
        ("speed", "abide", "BBYBY"),  # one e in the target: only the first e is yellow
        ("speed", "erase", "YBYYB"),  # two e's in the target: both yellow
        ("eerie", "lever", "YGYBB"),  # the green e uses one copy, the first e takes the other
        ("geese", "those", "BBBGG"),  # greens take both copies of s and e before any yellow
        ("mummy", "tummy", "BGGGG"),
        ("lllll", "hello", "BBGGB"),
        ("hello", "lllll", "BBGGB"),
        ("ABBEY", "abbey", "GGGGG"),  # case is ignored
    ],
)
def test_feedback_table(guess: str, target: str, expected: str) -> None:
    assert feedback(guess, target) == expected


@pytest.mark.parametrize(("guess", "target"), [("four", "abbey"), ("abbey", "toolong"), ("", "")])
def test_feedback_needs_five_letters(guess: str, target: str) -> None:
    with pytest.raises(ValueError, match="5-letter"):
        feedback(guess, target)


# A small alphabet makes repeated letters common.
words = st.text(alphabet="abcde", min_size=5, max_size=5)


@given(words, words)
@settings(max_examples=300, deadline=None)
def test_feedback_properties(guess: str, target: str) -> None:
    pattern = feedback(guess, target)
    assert len(pattern) == 5 and set(pattern) <= set("GYB")
    assert (pattern == "GGGGG") == (guess == target)
    assert [p == "G" for p in pattern] == [g == t for g, t in zip(guess, target, strict=True)]
    marked = Counter(g for g, p in zip(guess, pattern, strict=True) if p != "B")
    for letter, count in marked.items():
        assert count <= target.count(letter)
        assert count == min(guess.count(letter), target.count(letter))


@given(st.lists(words, min_size=1, max_size=6), st.lists(words, min_size=1, max_size=6))
@settings(max_examples=100, deadline=None)
def test_pattern_matrix_agrees_with_feedback(guesses: list[str], targets: list[str]) -> None:
    matrix = pattern_matrix(guesses, targets, chunk=4)
    for i, g in enumerate(guesses):
        for j, t in enumerate(targets):
            assert matrix[i, j] == pattern_code(feedback(g, t))
    assert pattern_code("GGGGG") == 242 and pattern_code("BBBBB") == 0


def test_pattern_matrix_agrees_with_feedback_on_real_words() -> None:
    answers = builtin_words("lmrl")
    matrix = pattern_matrix(answers, answers)
    for i in range(0, len(answers), 7):
        for j in range(0, len(answers), 11):
            assert matrix[i, j] == pattern_code(feedback(answers[i], answers[j]))


# -- word lists ------------------------------------------------------------------------------------
def test_builtin_lists() -> None:
    answers, allowed, lmrl = (
        builtin_words("official"),
        builtin_words("official-guesses"),
        builtin_words("lmrl"),
    )
    assert (len(answers), len(allowed), len(lmrl)) == (2315, 12972, 431)
    assert set(answers) <= set(allowed) and set(lmrl) <= set(answers)
    assert answers[:3] == ("aback", "abase", "abate")
    with pytest.raises(ValueError, match="unknown word list"):
        builtin_words("nope")


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared LMRL-Gym data is not here")
@pytest.mark.parametrize(
    ("name", "upstream"),
    [
        ("official", "wordle_official.txt"),
        ("official-guesses", "wordle_official_guess.txt"),
        ("lmrl", "wordle_official_400.txt"),
    ],
)
def test_builtin_lists_match_the_upstream_files(name: str, upstream: str) -> None:
    assert builtin_words(name) == load_words(SHARED / upstream)


def test_load_words_reads_the_upstream_format(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("Crane\n  slate \n\ntoolong\nab1de\ncrane\nabbey")  # no trailing newline
    assert load_words(path) == ("crane", "slate", "abbey")
    assert load_words(str(path)) == ("crane", "slate", "abbey")
    env = WordleEnv(answers=str(path))
    assert env.answers == env.allowed == ("crane", "slate", "abbey")


# -- the env ---------------------------------------------------------------------------------------
def play(env: WordleEnv, actions: list[str], target: str) -> list[tuple]:
    env.reset(options={"target": target})
    return [env.step(a) for a in actions]


def test_solving_gives_zero_and_each_other_guess_minus_one() -> None:
    env = WordleEnv(answers=SMALL)
    steps = play(env, ["slate", "babes", "abbey"], "abbey")
    assert [s[1] for s in steps] == [-1.0, -1.0, 0.0]
    assert [s[2] for s in steps] == [False, False, True] and not any(s[3] for s in steps)
    obs, _, _, _, info = steps[-1]
    assert info == {
        "guess": "abbey",
        "feedback": "GGGGG",
        "valid_action": True,
        "success": True,
        "target": "abbey",
    }
    assert obs == (
        "Guess 1: slate -> BBYBY\nGuess 2: babes -> YYGGB\nGuess 3: abbey -> GGGGG\nSolved! The word was abbey."
    )
    assert steps[0][0] == "Guess 1: slate -> BBYBY\nYou have 5 guesses left."


def test_six_wrong_guesses_end_the_game_as_a_loss() -> None:
    env = WordleEnv(answers=SMALL)
    steps = play(env, ["crane", "slate", "speed", "erase", "geese", "those"], "abbey")
    assert [s[1] for s in steps] == [-1.0] * 6
    assert [s[2] for s in steps] == [False] * 5 + [True] and not any(s[3] for s in steps)
    assert steps[-1][0].endswith("You are out of guesses. The word was abbey.")
    assert not steps[-1][4]["success"] and steps[-1][4]["target"] == "abbey"
    assert env.done


@pytest.mark.parametrize("action", ["xyzzy", "zzzzz", "aaaaa"])
def test_a_word_not_in_the_list_is_invalid_and_costs_a_guess(action: str) -> None:
    env = WordleEnv(answers=SMALL)
    env.reset(options={"target": "abbey"})
    obs, reward, terminated, truncated, info = env.step(action)
    assert (reward, terminated, truncated, info["valid_action"], env.turn) == (-1.0, False, False, False, 1)
    assert obs == (
        f"Guess 1: '{action}' (invalid: '{action}' is not in the word list)\n"
        f"Invalid guess: '{action}' is not in the word list. You have 5 guesses left."
    )


@pytest.mark.parametrize("action", [*MALFORMED_ACTIONS, "toolong", "four", "éclat", "12345", "a" * 1_000_000])
def test_malformed_actions_are_invalid_with_the_benchmark_penalty(action: str) -> None:
    env = WordleEnv(answers=SMALL)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    assert (reward, terminated, truncated, info["valid_action"], info["guess"]) == (
        -1.0,
        False,
        False,
        False,
        None,
    )
    assert "Invalid guess" in obs and len(obs) < 300
    assert env.turn == 1


def test_invalid_reward_is_configurable() -> None:
    env = WordleEnv(answers=SMALL, invalid_reward=-10.0)
    assert env.reward_range == (-10.0, 0.0)
    env.reset(seed=0)
    assert env.step("xyzzy")[1] == -10.0
    check_env(env)


def test_six_invalid_guesses_lose() -> None:
    env = WordleEnv(answers=SMALL)
    env.reset(options={"target": "crane"})
    steps = [env.step("") for _ in range(6)]
    assert [s[2] for s in steps] == [False] * 5 + [True]
    assert steps[-1][4]["target"] == "crane" and not steps[-1][4]["success"]


@pytest.mark.parametrize(
    ("action", "guess"),
    [
        ("crane", "crane"),
        ("CRANE", "crane"),
        ("  crane\n", "crane"),
        ("My guess is slate.", "slate"),
        ("c r a n e", "crane"),
        ('{"thought": "maybe abbey", "guess": "s l a t e"}', "slate"),
        ("Guess: crane", "crane"),
    ],
)
def test_lenient_parse_takes_the_last_five_letter_word(action: str, guess: str) -> None:
    env = WordleEnv(answers=SMALL)
    assert env.parse(action) == (guess, "")


def test_allowed_guesses_are_accepted_but_never_the_target() -> None:
    env = WordleEnv(answers=["abbey"], allowed=["crane"])
    assert env.allowed == ("abbey", "crane")
    for seed in range(5):
        env.reset(seed=seed)
        assert env.target == "abbey"
    assert env.step("crane")[4]["valid_action"]


def test_reset_target_option() -> None:
    env = WordleEnv(answers=SMALL)
    env.reset(options={"target": "Those"})
    assert env.target == "those"
    with pytest.raises(ValueError, match="five letters"):
        env.reset(options={"target": "nope"})


def test_targets_cover_the_answer_list() -> None:
    env = WordleEnv(answers=SMALL)
    seen = set()
    for seed in range(200):
        env.reset(seed=seed)
        seen.add(env.target)
    assert seen == set(SMALL)


def test_instructions_list_a_small_vocabulary_only() -> None:
    small, official = WordleEnv(), plyground.make("Wordle-Official-v0")
    assert "The words the game accepts are: " in small.instructions
    assert all(f" {w}" in small.instructions for w in small.allowed[:20])
    assert "accepts are" not in official.instructions and len(official.instructions) < 2000


def test_native_snapshot_restores_the_game() -> None:
    env = WordleEnv(answers=SMALL)
    env.reset(options={"target": "abbey"})
    first = env.step("slate")[0]
    state = env.snapshot()
    assert isinstance(state, WordleState)
    later = [env.step(a) for a in ["babes", "abbey"]]
    for _ in range(2):
        env.reset(options={"target": "crane"})
        env.step("crane")
        assert env.restore(state) == first
        assert env.turn == 1 and not env.done and env.target == "abbey"
        assert [env.step(a) for a in ["babes", "abbey"]] == later
    with pytest.raises(TypeError):
        env.restore("nope")


def test_replay_snapshot_still_works() -> None:
    env = WordleEnv(answers=SMALL)
    env.reset(seed=3)
    obs = env.step("crane")[0]
    replay = EnvSnapshot(env._episode_rng_state, env._options, ["crane"])
    env.reset(seed=4)
    assert env.restore(replay) == obs


def test_registered_variants() -> None:
    v0, official = plyground.make("Wordle-v0"), plyground.make("Wordle-Official-v0")
    assert isinstance(v0, WordleEnv) and isinstance(official, WordleEnv)
    assert (len(v0.answers), len(v0.allowed), v0.max_turns) == (431, 431, 6)
    assert (len(official.answers), len(official.allowed), official.max_turns) == (2315, 12972, 6)
    wrapped = gymnasium.make("plyground/Wordle-v0")
    assert wrapped.reset(seed=0)[0] == v0.reset(seed=0)[0]
    check_env(WordleEnv(answers=SMALL, max_guesses=3))


# -- the solver ------------------------------------------------------------------------------------
def solve_rate(env: WordleEnv, solver: WordleSolver, targets: tuple[str, ...]) -> tuple[float, float]:
    solved, guesses = 0, 0
    for target in targets:
        obs, _ = env.reset(options={"target": target})
        solver.reset()
        while not env.done:
            obs, _, _, _, info = env.step(solver.act(obs))
        solved += info["success"]
        guesses += env.turn
    return solved / len(targets), guesses / len(targets)


@pytest.mark.parametrize("env_id", ["Wordle-v0", "Wordle-Official-v0"])
def test_solver_solves_the_whole_answer_list_within_six(env_id: str) -> None:
    env = plyground.make(env_id)
    assert isinstance(env, WordleEnv)
    rate, mean_guesses = solve_rate(env, WordleSolver.for_env(env), env.answers)
    assert rate >= 0.99, rate
    assert mean_guesses < 4.0, mean_guesses


@pytest.mark.slow
def test_solver_over_all_allowed_guesses() -> None:
    env = plyground.make("Wordle-Official-v0")
    assert isinstance(env, WordleEnv)
    rate, _ = solve_rate(env, WordleSolver.for_env(env, guess_pool="allowed"), env.answers)
    assert rate >= 0.99, rate


def test_solver_reads_the_board_and_skips_invalid_lines() -> None:
    solver = WordleSolver(answers=SMALL)
    board = "Guess 1: 'xyzzy' (invalid: 'xyzzy' is not in the word list)\nGuess 2: slate -> BBYBY\n"
    # slate -> BBYBY: an a and an e, neither where slate has them; no s, l or t.
    assert [SMALL[i] for i in solver.candidates([("slate", "BBYBY")])] == ["abbey", "kebab"]
    assert solver.act(board) in {"abbey", "kebab"}
    assert solver.act(board + "Guess 3: kebab -> BYGYY\n") == "abbey"
    assert solver.act("Wordle: guess the hidden five-letter word.") in SMALL
    # Feedback no answer fits: it still answers with a word.
    assert solver.act("Guess 1: crane -> GGGGY") in SMALL


def test_solver_rejects_an_unknown_pool() -> None:
    with pytest.raises(ValueError, match="guess_pool"):
        WordleSolver(guess_pool="everything")
