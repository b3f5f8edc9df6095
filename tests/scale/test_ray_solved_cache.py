"""The best-first solved cache as a Ray actor: two searches in two Ray worker processes share it.

Ray in local mode (two CPUs, no dashboard); skipped where Ray is not installed. The Ray test is
``slow`` (starting Ray and two worker processes takes 20-30 s here): ``pytest -m slow tests/scale``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from plyground.envs import make  # noqa: E402
from plyground.scale import init_ray  # noqa: E402
from plyground.search import RandomProposer, SolvedCache  # noqa: E402
from plyground.search.evaluate import run_search  # noqa: E402
from plyground.search.ray_cache import RaySolvedCache, SearchWorker, shared_solved_cache  # noqa: E402


def test_without_ray_the_shared_cache_is_in_process() -> None:
    if ray.is_initialized():
        pytest.skip("Ray is already up in this process (another test module started it)")
    cache = shared_solved_cache()
    assert isinstance(cache, SolvedCache)
    with pytest.raises(RuntimeError, match="init_ray"):
        RaySolvedCache()


@pytest.fixture(scope="module")
def ray_session():  # type: ignore[no-untyped-def]
    os.environ["RAY_AUTH_MODE"] = "disabled"
    root = str(Path(__file__).resolve().parents[2])
    init_ray(num_cpus=2, runtime_env={"env_vars": {"PYTHONPATH": root, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


@pytest.mark.slow  # ~35 s on the shared 2-core machine, most of it starting Ray; run with -m slow
def test_two_ray_workers_share_solved_states(ray_session) -> None:  # type: ignore[no-untyped-def]
    cache = shared_solved_cache()
    assert isinstance(cache, RaySolvedCache) and len(cache) == 0
    actor = SearchWorker(num_cpus=0.5)
    first, second = actor.remote("Maze-v0"), actor.remote("Maze-v0")
    try:
        pids = ray.get([first.pid.remote(), second.pid.remote()])
        assert pids[0] != pids[1] and os.getpid() not in pids  # two worker processes, not the driver
        # Worker 1 solves maze seed 1 with the random proposer and publishes every state of its path.
        a = ray.get(first.search.remote("bfs", RandomProposer(1), 64, 1, None, cache))
        assert a["success"] and a["pid"] == pids[0] and a["stats"]["proposer_calls"] > 0
        actions = [t["action"] for t in a["trajectory"]["turns"]]
        assert len(cache) == len(actions)  # the root and every state before the goal
        # Worker 2, another process with another proposer, finishes the same problem from the
        # cache: no proposer call, the same actions, one hit counted in the actor.
        b = ray.get(second.search.remote("bfs", RandomProposer(101), 64, 1, None, cache))
        assert b["success"] and b["pid"] == pids[1] and b["stats"]["proposer_calls"] == 0
        assert [t["action"] for t in b["trajectory"]["turns"]] == actions
        assert cache.hits == 1
        # The driver sees the same states, and the cached actions really solve the maze here too.
        env = make("Maze-v0")
        obs, _ = env.reset(seed=1)
        assert obs in cache and "no such state" not in cache and cache.hits == 1  # `in` is no hit
        assert cache.get(obs) == tuple(actions)
        for act in actions:
            obs, _, terminated, _, info = env.step(act)
        assert terminated and info["success"]
        # A search in the driver with the same handle is also finished by the cache.
        local = run_search("bfs", env, RandomProposer(7), 64, 1, cache=cache)
        assert local.success and local.stats.proposer_calls == 0 and cache.hits == 3
    finally:
        for worker in (first, second):
            ray.get(worker.close.remote())
            ray.kill(worker)
        cache.kill()
