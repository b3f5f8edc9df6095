"""`plyground serve-envs` and RemoteEnv: a served env behaves like the local one."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

import plyground
from plyground.bridges import RemoteEnv
from plyground.bridges.env_server import create_env_app
from plyground.envs.checker import check_env
from plyground.envs.guess_number import bisection_chat_policy
from plyground.errors import EnvError
from plyground.inference.scripted import ScriptedBackend
from plyground.rollout import collect_sync, episode_specs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = _free_port()
    app = create_env_app(idle_ttl_s=600)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield url
    srv.should_exit = True
    thread.join(timeout=10)


def test_remote_env_matches_local(server: str) -> None:
    remote = RemoteEnv(server, "GuessNumber-v0")
    local = plyground.make("GuessNumber-v0")
    assert remote.instructions == local.instructions and remote.max_turns == local.max_turns
    for seed in (0, 1, 2):
        assert remote.reset(seed=seed)[0] == local.reset(seed=seed)[0]
        for guess in ("50", "garbage", "25", "75"):
            r, lo = remote.step(guess), local.step(guess)
            assert r[:4] == lo[:4]
            assert r[4]["valid_action"] == lo[4]["valid_action"]
            if r[2] or r[3]:
                break
    remote.close()


def test_remote_snapshot_restore(server: str) -> None:
    env = RemoteEnv(server, "Maze-v0")
    env.reset(seed=3)
    env.step("move up")
    snap = env.snapshot()
    later = [env.step(a)[0] for a in ("move left", "move down")]
    assert env.restore(snap) is not None
    assert [env.step(a)[0] for a in ("move left", "move down")] == later
    env.close()


def test_gymnasium_checks_pass_on_a_remote_env(server: str) -> None:
    env = RemoteEnv(server, "GuessNumber-v0")
    check_env(env, reward_range=(0.0, 1.0))
    env.close()


def test_collector_plays_remote_envs(server: str) -> None:
    trajs = collect_sync(
        lambda: RemoteEnv(server, "GuessNumber-v0"), ScriptedBackend(bisection_chat_policy), episode_specs(6)
    )
    assert len(trajs) == 6 and all(t.success and t.error is None for t in trajs)


def test_unknown_env_and_closed_instance_are_clear_errors(server: str) -> None:
    with pytest.raises(EnvError, match="Did you mean 'GuessNumber-v0'"):
        RemoteEnv(server, "GuessNumbr-v0")
    env = RemoteEnv(server, "GuessNumber-v0")
    env.reset(seed=0)
    httpx.delete(f"{server}/v1/instances/{env.instance_id}")
    with pytest.raises(EnvError, match="no live instance"):
        env.step("50")


def test_idle_instances_expire() -> None:
    from plyground.bridges.env_server import EnvPool

    pool = EnvPool(idle_ttl_s=0.05)
    key = pool.create("GuessNumber-v0")
    time.sleep(0.1)
    assert pool.expire() == 1 and key not in pool.ids()


def test_agentgym_routes(server: str) -> None:
    base = f"{server}/agentgym/GuessNumber-v0"
    assert httpx.get(f"{base}/").json() == "ok"
    idx = httpx.post(f"{base}/create").json()
    assert isinstance(idx, int) and idx in httpx.get(f"{base}/list_envs").json()
    obs, _ = httpx.post(f"{base}/reset", json={"env_idx": idx, "session_id": 7}).json()
    assert obs == plyground.make("GuessNumber-v0").reset(seed=7)[0]
    assert httpx.get(f"{base}/observation", params={"env_idx": idx}).json() == obs
    out = httpx.post(f"{base}/step", json={"env_idx": idx, "action": "50"}).json()
    assert set(out) == {"state", "reward", "done", "info"} and out["done"] in (True, False)
    assert "guessing game" in httpx.get(f"{base}/instruction_text", params={"env_idx": idx}).json()
    assert httpx.post(f"{base}/close", json={"env_idx": idx}).json() == {"closed": True}
    assert httpx.get(f"{server}/agentgym/Nope-v0/").status_code == 404


def test_cli_serve_envs_subprocess() -> None:
    import os
    import subprocess
    import sys

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "plyground.cli", "serve-envs", "--port", str(port)],
        stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
                time.sleep(0.1)
        ids = {e["id"] for e in httpx.get(f"{url}/v1/envs").json()}
        assert {"GuessNumber-v0", "Arithmetic-v0"} <= ids
        env = RemoteEnv(url, "Arithmetic-v0")
        obs, _ = env.reset(seed=1)
        assert obs == plyground.make("Arithmetic-v0").reset(seed=1)[0]
        env.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
