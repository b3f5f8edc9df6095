"""The rollout collector: episodes, token bookkeeping, batching, and failures at each boundary."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plyground
from plyground.envs.core import TextEnv
from plyground.envs.guess_number import bisection_chat_policy
from plyground.errors import BackendError
from plyground.inference.scripted import ScriptedBackend, ScriptedTokenBackend, scripted_backend
from plyground.rollout import (
    RolloutConfig,
    TokenLedger,
    build_chat,
    collect_sync,
    episode_specs,
    parse_action,
)
from plyground.rollout.tokens import render_text
from plyground.types import Chat, Completion, Message, SamplingParams, Trajectory


@pytest.fixture(scope="module")
def tokenizer(tiny_backend):  # type: ignore[no-untyped-def]
    return tiny_backend.tokenizer


def model_token_stream(traj: Trajectory) -> list[int]:
    return [tok for turn in traj.turns for tok in (turn.completion.token_ids if turn.completion else [])]


def test_scripted_bisection_solves_guess_number(tokenizer: Any) -> None:
    backend = scripted_backend(bisection_chat_policy, tokenizer)
    trajs = collect_sync(lambda: plyground.make("GuessNumber-v0"), backend, episode_specs(6), RolloutConfig(concurrency=3))
    assert len(trajs) == 6
    for traj in trajs:
        assert traj.error is None, traj.error
        assert traj.success and traj.total_reward == 1.0
        assert 1 <= traj.num_turns <= 7  # ceil(log2(101))
        assert traj.tokens is not None
        ids, mask = traj.tokens.token_ids, traj.tokens.loss_mask
        assert [t for t, m in zip(ids, mask, strict=True) if m] == model_token_stream(traj)


def test_ledger_matches_full_chat_rendering(tokenizer: Any) -> None:
    backend = scripted_backend(bisection_chat_policy, tokenizer)
    [traj] = collect_sync(lambda: plyground.make("GuessNumber-v0"), backend, episode_specs(1, base_seed=3))
    env = plyground.make("GuessNumber-v0")
    replies = [t.completion.text for t in traj.turns if t.completion]
    chat = build_chat(env.instructions, traj.turns[:-1], traj.turns[-1].observation, replies[:-1])
    chat.append(Message("assistant", replies[-1]))
    assert traj.tokens is not None
    assert tokenizer.decode(traj.tokens.token_ids) == render_text(tokenizer, chat, add_generation_prompt=False)
    # Canonical replies tokenise the same whichever way: the ledger equals the tokenizer's ids.
    assert traj.tokens.token_ids == tokenizer(render_text(tokenizer, chat, False), add_special_tokens=False)["input_ids"]


reply_text = st.lists(
    st.sampled_from([*"abc XYZ019\n\t.,!?é漢🙂-", "<|im_end|>", "  ", "\n\n"]), max_size=20
).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(replies=st.lists(reply_text, min_size=1, max_size=4))
def test_loss_mask_covers_exactly_the_model_tokens(tokenizer: Any, replies: list[str]) -> None:
    script = iter(replies + ["50"] * 10)
    backend = scripted_backend(lambda chat: next(script), tokenizer)
    config = RolloutConfig(concurrency=1, max_turns=len(replies))
    [traj] = collect_sync(lambda: plyground.make("GuessNumber-v0"), backend, episode_specs(1), config)
    assert traj.error is None, traj.error
    assert traj.tokens is not None
    ids, mask, lps = traj.tokens.token_ids, traj.tokens.loss_mask, traj.tokens.logprobs
    assert len(ids) == len(mask) == len(lps)
    assert [t for t, m in zip(ids, mask, strict=True) if m] == model_token_stream(traj)
    # Every model span is contiguous and starts right after a generation prompt.
    spans = re.findall(r"1+", "".join(map(str, mask)))
    assert len(spans) == traj.num_turns


def test_template_that_rewrites_history_is_reported_with_the_turn(tokenizer: Any) -> None:
    trimming = copy.deepcopy(tokenizer)
    trimming.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    backend = scripted_backend(lambda chat: "  40  ", trimming)
    [traj] = collect_sync(lambda: plyground.make("GuessNumber-v0"), backend, episode_specs(1), RolloutConfig(max_turns=3))
    assert traj.error is not None
    assert traj.error.startswith("tokens: turn 1:"), traj.error
    assert "re-renders earlier turns differently" in traj.error
    assert traj.num_turns == 1  # the first turn is kept


def test_text_backend_records_no_tokens() -> None:
    backend = ScriptedBackend(bisection_chat_policy)
    [traj] = collect_sync(lambda: plyground.make("GuessNumber-v0"), backend, episode_specs(1))
    assert traj.success and traj.tokens is None


@pytest.mark.parametrize("reply", ["", "   ", "no number here", "x" * 5000, "Ω≈ç√∫"])
def test_malformed_action_is_an_observation(reply: str) -> None:
    backend = ScriptedBackend(lambda chat: reply)
    [traj] = collect_sync(lambda: plyground.make("GuessNumber-v0"), backend, episode_specs(1), RolloutConfig(max_turns=2))
    assert traj.error is None
    assert traj.num_turns == 2
    assert all(not t.info["valid_action"] for t in traj.turns)
    assert "Invalid guess" in traj.turns[1].observation


class ExplodingEnv(TextEnv):
    """Raises inside step on odd seeds: a bug in an env must cost only that episode."""

    instructions = "say anything"
    max_turns = 3

    def _reset(self, rng: Any, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.explode = bool(int(rng.integers(0, 2)))
        return "start", {}

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        if self.explode and self.turn == 2:
            raise RuntimeError("engine crashed")
        return "ok", 1.0, self.turn == 3, {"success": self.turn == 3}


def test_env_that_raises_costs_only_its_episode() -> None:
    backend = ScriptedBackend(lambda chat: "go")
    trajs = collect_sync(ExplodingEnv, backend, episode_specs(12), RolloutConfig(concurrency=4))
    assert len(trajs) == 12
    broken = [t for t in trajs if t.error]
    fine = [t for t in trajs if not t.error]
    assert broken and fine
    for t in broken:
        assert t.error == "env: step raised RuntimeError: engine crashed"
        assert t.num_turns == 2  # the turn that raised is kept, marked invalid
    assert all(t.success and t.num_turns == 3 for t in fine)


def test_backend_failure_is_fatal_but_keeps_finished_trajectories() -> None:
    calls = {"n": 0}

    def flaky(chat: Chat) -> str:
        calls["n"] += 1
        if calls["n"] > 20:
            raise BackendError("cannot connect to http://127.0.0.1:9/v1 (is the server running?)")
        return bisection_chat_policy(chat)

    kept: list[Trajectory] = []
    with pytest.raises(BackendError, match="cannot connect"):
        collect_sync(
            lambda: plyground.make("GuessNumber-v0"),
            ScriptedBackend(flaky),
            episode_specs(10),
            RolloutConfig(concurrency=1),
            on_trajectory=kept.append,
        )
    assert kept and all(t.error is None for t in kept)


class _SlowScriptedBackend(ScriptedTokenBackend):
    """A scripted backend that takes model-like time per call (awaited, so the event loop runs
    while it works): episodes whose env step finishes meanwhile queue for the next call."""

    async def agenerate_ids(self, prompts: Sequence[list[int]], params: SamplingParams) -> list[list[Completion]]:
        await asyncio.sleep(0.05)
        return self.generate_ids(prompts, params)


def test_concurrent_episodes_are_batched(tokenizer: Any) -> None:
    # Set by call time, not thread timing: a 50 ms call outlasts any env step, so every episode not
    # in a call is queued when it ends, and a round of 8 takes two calls (about 6 + 2) where an
    # instant backend raced the env threads and could fall near the bound.
    backend = _SlowScriptedBackend(bisection_chat_policy, tokenizer)
    trajs = collect_sync(lambda: plyground.make("GuessNumber-v0"), backend, episode_specs(16), RolloutConfig(concurrency=8))
    generations = sum(t.num_turns for t in trajs)
    assert backend.calls < generations / 3


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("I think <action>42</action>", "42"),
        ("<action>1</action> no, <action> 2 </action>", "2"),
        ("Reasoning...\nAction: go north\n", "go north"),
        ("  plain  ", "plain"),
        ("", ""),
    ],
)
def test_parse_action(text: str, action: str) -> None:
    assert parse_action(text) == action


def test_tiny_model_episodes_keep_tokens_consistent(tiny_backend: Any) -> None:
    """A random model samples arbitrary tokens (bytes, specials): the ledger must still hold."""
    from plyground.types import SamplingParams

    config = RolloutConfig(sampling=SamplingParams(max_tokens=12, temperature=1.0, seed=0), concurrency=4)
    trajs = collect_sync(lambda: plyground.make("GuessNumber-v0"), tiny_backend, episode_specs(4), config)
    for traj in trajs:
        assert traj.error is None, traj.error
        assert traj.tokens is not None
        assert [t for t, m in zip(traj.tokens.token_ids, traj.tokens.loss_mask, strict=True) if m] == model_token_stream(traj)
        sampled = [lp for lp, m in zip(traj.tokens.logprobs, traj.tokens.loss_mask, strict=True) if m]
        assert all(lp <= 0.0 for lp in sampled) and any(lp < 0.0 for lp in sampled)


def test_ledger_unit_prompt_then_completion(tokenizer: Any) -> None:
    ledger = TokenLedger(tokenizer)
    chat = [Message("system", "S"), Message("user", "hi")]
    ids = ledger.prompt(chat, 0)
    assert ids == tokenizer(render_text(tokenizer, chat, True), add_special_tokens=False)["input_ids"]
    assert set(ledger.mask) == {0}


def test_seeded_samples_of_one_episode_differ(tiny_backend: Any) -> None:
    """A fixed sampling seed must not make the K samples of an episode identical draws."""
    from plyground.types import SamplingParams

    config = RolloutConfig(sampling=SamplingParams(max_tokens=8, temperature=1.0, seed=0), concurrency=1, max_turns=1)
    trajs = collect_sync(lambda: plyground.make("GuessNumber-v0"), tiny_backend, episode_specs(1, samples=4), config)
    texts = {t.turns[0].completion.text for t in trajs if t.turns[0].completion}
    assert len(texts) > 1


class SlowServerBackend(ScriptedBackend):
    """A scripted policy behind a 'server': each call takes 0.2 s and calls may overlap."""

    def __init__(self, parallel: bool) -> None:
        super().__init__(bisection_chat_policy)
        self.parallel_calls = parallel
        self.in_flight = 0
        self.most_in_flight = 0

    async def agenerate(self, chats: Any, params: Any) -> Any:
        import asyncio

        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.2)
            return self.generate(chats, params)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("parallel", [False, True])
def test_a_server_backend_gets_overlapping_calls_a_local_one_does_not(parallel: bool) -> None:
    backend = SlowServerBackend(parallel)
    # Episodes reach the model at different times (a turn ends whenever its reply comes), so the
    # batches are uneven; with a server, no batch waits for another's whole generation.
    trajs = collect_sync(
        lambda: plyground.make("GuessNumber-v0"), backend, episode_specs(12), RolloutConfig(concurrency=12, max_batch_size=4)
    )
    assert all(t.success for t in trajs) and len(trajs) == 12
    assert (backend.most_in_flight > 1) == parallel


def test_seeded_episodes_do_not_depend_on_how_the_batches_fall(tiny_backend: Any) -> None:
    """A backend that takes per-prompt seeds gets one per request (env seed, episode, sample,
    turn): one episode at a time and 6 at once in batches of 2 or 6 play the same episodes."""
    from plyground.types import SamplingParams

    def play(concurrency: int, max_batch_size: int) -> list[list[str]]:
        config = RolloutConfig(sampling=SamplingParams(max_tokens=6, temperature=1.0, seed=3), concurrency=concurrency,
                               max_batch_size=max_batch_size, max_turns=3)
        trajs = collect_sync(lambda: plyground.make("GuessNumber-v0"), tiny_backend, episode_specs(3, samples=2), config)
        trajs.sort(key=lambda t: (t.metadata["episode"], t.metadata["sample"]))
        return [[turn.completion.text for turn in t.turns if turn.completion] for t in trajs]

    alone = play(1, 1)
    assert play(6, 2) == alone
    assert play(6, 6) == alone
    assert len({tuple(texts) for texts in alone}) == len(alone)  # every request its own stream


def test_request_seeds_differ_by_every_part_of_the_key() -> None:
    from plyground.inference.base import mix_seed

    keys = [(0, 0, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)]
    assert len({mix_seed(7, *k) for k in keys}) == len(keys)
    assert mix_seed(7, *keys[0]) != mix_seed(8, *keys[0])
    assert all(0 <= mix_seed(7, *k) < 2**63 for k in keys)



@contextlib.contextmanager
def _server_backend_in_process(model_backend: Any) -> Iterator[Any]:
    """The project's server app over ``model_backend`` on a local port (uvicorn in a thread) as the
    one replica of a ``PlygroundServerBackend``: the whole server path, without a subprocess."""
    from live_servers import serve_in_thread, server_backend_over

    from plyground.inference.server import create_app

    with serve_in_thread(create_app(model_backend, model_name="tiny")) as url, server_backend_over(
        url, "tiny", tokenizer=model_backend.tokenizer, request_timeout_s=60
    ) as remote:
        yield remote


def _assert_seeded_episodes_do_not_depend_on_batching(backend: Any, track_tokens: bool) -> None:
    """One episode at a time and 6 at once in batches of 2 or 6 play the same episodes."""
    from plyground.types import SamplingParams

    def play(concurrency: int, max_batch_size: int) -> list[list[list[int]]]:
        config = RolloutConfig(sampling=SamplingParams(max_tokens=6, temperature=1.0, seed=3), concurrency=concurrency,
                               max_batch_size=max_batch_size, max_turns=3, track_tokens=track_tokens)
        trajs = collect_sync(lambda: plyground.make("GuessNumber-v0"), backend, episode_specs(3, samples=2), config)
        assert all(t.error is None for t in trajs), [t.error for t in trajs]
        assert all((t.tokens is not None) == track_tokens for t in trajs)
        trajs.sort(key=lambda t: (t.metadata["episode"], t.metadata["sample"]))
        return [[turn.completion.token_ids for turn in t.turns if turn.completion] for t in trajs]

    alone = play(1, 1)
    assert all(ids for episode in alone for ids in episode)
    assert play(6, 2) == alone
    assert play(6, 6) == alone
    assert len({tuple(map(tuple, episode)) for episode in alone}) == len(alone)  # every request its own stream


@pytest.mark.parametrize("track_tokens", [True, False], ids=["token-ids", "chats"])
def test_seeded_episodes_through_a_server_do_not_depend_on_how_the_batches_fall(
    tiny_backend: Any, track_tokens: bool
) -> None:
    """The server backends take per-prompt seeds too, so each request reaches the server with its
    own seed, and the server gives a seeded request the same sample whatever it batches it with."""
    with _server_backend_in_process(tiny_backend) as remote:
        _assert_seeded_episodes_do_not_depend_on_batching(remote, track_tokens)


@pytest.mark.slow
def test_seeded_episodes_through_a_launched_server_do_not_depend_on_how_the_batches_fall(tiny_backend: Any) -> None:
    """The same through a server subprocess that ``PlygroundServerBackend`` launches (about 15-25 s
    of start-up on a small CPU machine, hence slow)."""
    from plyground.inference.server import PlygroundServerBackend

    with PlygroundServerBackend(
        "tiny", tokenizer=tiny_backend.tokenizer, startup_timeout_s=120, request_timeout_s=60
    ) as remote:
        _assert_seeded_episodes_do_not_depend_on_batching(remote, track_tokens=True)
