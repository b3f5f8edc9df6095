"""``RemoteEnv``: a TextEnv whose state lives in a ``plyground serve-envs`` process.

Envs with heavy parts (a browser, an engine, a proof checker) can run on another machine while
the agent, the search and the trainer see an ordinary local TextEnv. Snapshots are ids of
server-side snapshots, so search works across the wire too.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from plyground.envs.core import TextEnv
from plyground.errors import EnvError


class RemoteEnv(TextEnv):
    """A served env, driven over HTTP. ``close()`` frees the server-side instance."""

    def __init__(self, base_url: str, env_id: str, timeout_s: float = 60.0, **kwargs: Any) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.env_id = env_id
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s)
        created = self._post("/v1/instances", {"env_id": env_id, "kwargs": kwargs})
        self.instance_id: str = created["instance_id"]
        self.instructions = created["instructions"]
        self.max_turns = int(created["max_turns"])
        self.reward_range = tuple(created["reward_range"])  # type: ignore[assignment]
        self._seed_for_server: int | None = None

    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._http.post(path, json=body or {})
        except httpx.HTTPError as exc:
            raise EnvError(f"cannot reach the env server at {self.base_url}: {exc}") from exc
        if response.status_code != 200:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise EnvError(f"env server {self.base_url} answered {response.status_code} on {path}: {detail}")
        data: dict[str, Any] = response.json()
        return data

    def _url(self, action: str) -> str:
        return f"/v1/instances/{self.instance_id}/{action}"

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        # The seed goes to the server as given, so RemoteEnv(seed=s) plays the local env's episode s;
        # unseeded resets continue the server-side generator, as a local env's would.
        self._seed_for_server = seed
        return super().reset(seed=seed, options=options)

    # The remote env keeps its own turn counter and truncation; mirror them here.
    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        data = self._post(self._url("reset"), {"seed": self._seed_for_server, "options": options or None})
        return data["observation"], data["info"]

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        data = self._post(self._url("step"), {"action": action})
        info = dict(data["info"])
        info["_truncated"] = data["truncated"]
        return data["observation"], float(data["reward"]), bool(data["terminated"]), info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        remote_truncated = bool(info.pop("_truncated", False))
        if remote_truncated and not terminated:
            truncated = True
            self._done = True
        return obs, reward, terminated, truncated, info

    def snapshot(self) -> dict[str, Any]:
        data = self._post(self._url("snapshot"))
        return {"snapshot_id": data["snapshot_id"], "turn": self.turn, "done": self._done,
                "actions": list(self._actions)}

    def restore(self, state: Any) -> str:
        data = self._post(self._url("restore"), {"snapshot_id": state["snapshot_id"]})
        self.turn, self._done, self._actions = state["turn"], state["done"], list(state["actions"])
        self._last_observation = data["observation"]
        return str(data["observation"])

    def close(self) -> None:
        try:
            self._http.delete(self._url("")[:-1])
        except httpx.HTTPError:
            pass  # the server expires idle instances anyway
        finally:
            self._http.close()
