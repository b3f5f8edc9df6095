"""Asynchronous rollouts: versions recorded per turn and per trajectory, staleness bound, bounded queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

import plyground
from plyground.envs.guess_number import bisection_chat_policy
from plyground.inference.scripted import ScriptedBackend
from plyground.rollout import RolloutConfig, episode_specs
from plyground.rollout.async_rollout import AsyncRollout, policy_lag
from plyground.types import Chat, Completion, SamplingParams


class VersionedScripted(ScriptedBackend):
    """A scripted policy whose ``policy_version`` the 'trainer' advances; each call takes a moment,
    so multi-turn episodes can straddle updates."""

    def __init__(self, delay_s: float = 0.002) -> None:
        super().__init__(bisection_chat_policy)
        self.policy_version = 0
        self.delay_s = delay_s

    async def agenerate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        await asyncio.sleep(self.delay_s)
        return self.generate(chats, params)


def make_env():  # type: ignore[no-untyped-def]
    return plyground.make("GuessNumber-v0")


@pytest.mark.parametrize("max_staleness", [0, 1, 2])
def test_staleness_bound_holds_and_versions_are_recorded(max_staleness: int) -> None:
    backend = VersionedScripted()
    config = RolloutConfig(sampling=SamplingParams(max_tokens=16), concurrency=4)
    rollout = AsyncRollout(make_env, backend, episode_specs(200), config, max_staleness=max_staleness, queue_size=6)
    seen = []
    with rollout:
        for step in range(6):
            batch = rollout.get_batch(4, timeout_s=30)
            assert len(batch) == 4
            for traj in batch:
                versions = traj.metadata["policy_versions"]
                assert versions and len(versions) == traj.num_turns
                assert traj.metadata["policy_version"] == min(versions)
                assert all(t.info["policy_version"] in versions for t in traj.turns)
                assert 0 <= policy_lag(traj, step) <= max_staleness
                assert traj.metadata["policy_lag"] == policy_lag(traj, step)
            seen.extend(batch)
            time.sleep(0.01)  # "training"
            backend.policy_version = step + 1  # the weight push
            rollout.set_version(step + 1)
        assert rollout.stats.max_queue <= 6  # the queue is bounded
    assert max(rollout.stats.lags) <= max_staleness
    assert all(policy_lag(t, 6) > 0 for t in rollout.stale) or not rollout.stale
    # Versions advance: later batches were sampled with newer weights.
    assert max(t.metadata["policy_version"] for t in seen) >= 4


def test_producer_waits_for_weights_and_stale_samples_are_kept_aside() -> None:
    backend = VersionedScripted()
    rollout = AsyncRollout(make_env, backend, episode_specs(40), RolloutConfig(concurrency=2), max_staleness=1, queue_size=4)
    with rollout:
        rollout.get_batch(2, timeout_s=30)
        rollout.set_version(3)  # the trainer moved on, the backend has not been synced
        time.sleep(0.3)
        assert rollout.stats.waits_for_weights > 0
        produced = rollout.stats.produced
        time.sleep(0.2)
        assert rollout.stats.produced == produced  # nothing new while the weights are too old
        backend.policy_version = 3
        batch = rollout.get_batch(3, timeout_s=30)
        assert all(policy_lag(t, 3) <= 1 for t in batch)
    # Queued samples from version 0 were kept aside, not trained on and not lost.
    assert all(policy_lag(t, 3) > 1 for t in rollout.stale)
    assert rollout.stats.consumed + rollout.stats.stale <= rollout.stats.produced


def test_finite_episodes_drain_and_errors_surface() -> None:
    rollout = AsyncRollout(make_env, VersionedScripted(0), episode_specs(5), RolloutConfig(concurrency=2), max_staleness=0)
    with rollout:
        got = rollout.get_batch(10, timeout_s=30)
    assert sorted(t.metadata["episode"] for t in got) == [0, 1, 2, 3, 4]

    class Broken(VersionedScripted):
        async def agenerate(self, chats, params):  # type: ignore[no-untyped-def]
            raise plyground.errors.BackendError("server down")

    failing = AsyncRollout(make_env, Broken(), episode_specs(5), RolloutConfig(concurrency=2))
    with failing, pytest.raises(plyground.errors.BackendError, match="server down"):
        failing.get_batch(2, timeout_s=30)
    with pytest.raises(ValueError):
        AsyncRollout(make_env, VersionedScripted(), [], max_staleness=-1)
