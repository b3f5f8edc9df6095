"""Registered envs over HTTP: ``plyground serve-envs``.

One env instance per episode id, created on demand and expired when idle; a lock per instance
(an env is not thread-safe, but different instances step in parallel on the thread pool).
Snapshots stay on the server (they may hold objects JSON cannot carry) and are named by id.

Routes (JSON in and out; errors as ``{"detail": ...}`` with 400 for bad input, 404 for an
unknown env or instance, 500 when the env itself raised)::

    GET    /health
    GET    /v1/envs                               registered env ids and specs
    POST   /v1/instances          {env_id, kwargs} -> {instance_id, instructions, max_turns, ...}
    POST   /v1/instances/{id}/reset    {seed, options} -> {observation, info}
    POST   /v1/instances/{id}/step     {action} -> {observation, reward, terminated, truncated, info}
    POST   /v1/instances/{id}/snapshot -> {snapshot_id}
    POST   /v1/instances/{id}/restore  {snapshot_id} -> {observation}
    GET    /v1/instances/{id}/actions  -> {admissible_actions}
    DELETE /v1/instances/{id}

AgentGym-compatible routes for one env id, under ``/agentgym/{env_id}`` (AgentGym clients take
that URL as their env server base): ``GET /``, ``GET /list_envs``, ``POST /create`` -> int,
``POST /reset {env_idx, session_id}`` (session_id = the env seed), ``POST /step {env_idx,
action}`` -> ``{state, reward, done, info}``, ``GET /observation``, ``GET /available_actions``,
``POST /close {env_idx}``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel, Field

from plyground.envs import TextEnv, list_envs, make, spec
from plyground.errors import UnknownNameError


@dataclass
class _Instance:
    env_id: str
    env: TextEnv
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)
    observation: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    snapshots: dict[str, Any] = field(default_factory=dict)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if isinstance(value, dict):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_jsonable(v) for v in value]
        return repr(value)


class EnvPool:
    """The live instances of a server: create, look up, run a call under the instance's lock,
    expire idle ones. Thread-safe."""

    def __init__(self, idle_ttl_s: float = 600.0, max_instances: int = 256) -> None:
        self.idle_ttl_s = idle_ttl_s
        self.max_instances = max_instances
        self._instances: dict[str, _Instance] = {}
        self._lock = threading.Lock()

    def create(self, env_id: str, kwargs: dict[str, Any] | None = None, instance_id: str | None = None) -> str:
        self.expire()
        with self._lock:
            if len(self._instances) >= self.max_instances:
                raise HTTPException(429, f"too many live instances ({self.max_instances}); close some")
        env = make(env_id, **(kwargs or {}))
        instance_id = instance_id or uuid.uuid4().hex
        with self._lock:
            self._instances[instance_id] = _Instance(env_id, env)
        return instance_id

    def get(self, instance_id: str) -> _Instance:
        with self._lock:
            inst = self._instances.get(instance_id)
        if inst is None:
            raise HTTPException(404, f"no live instance {instance_id!r} (closed, expired, or never created)")
        inst.last_used = time.monotonic()
        return inst

    def close(self, instance_id: str) -> bool:
        with self._lock:
            inst = self._instances.pop(instance_id, None)
        if inst is None:
            return False
        with inst.lock:
            inst.env.close()
        return True

    def expire(self) -> int:
        now = time.monotonic()
        with self._lock:
            stale = [k for k, v in self._instances.items() if now - v.last_used > self.idle_ttl_s]
        for key in stale:
            self.close(key)
        return len(stale)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._instances)

    def close_all(self) -> None:
        for key in self.ids():
            self.close(key)


async def _call(inst: _Instance, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking env call on the thread pool, one call at a time per instance."""

    def locked() -> Any:
        with inst.lock:
            return fn(*args, **kwargs)

    try:
        return await asyncio.to_thread(locked)
    except HTTPException:
        raise
    except (RuntimeError, TypeError, ValueError) as exc:
        raise HTTPException(400, f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise HTTPException(500, f"the env raised {type(exc).__name__}: {exc}") from exc


class CreateRequest(BaseModel):
    env_id: str
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ResetRequest(BaseModel):
    seed: int | None = None
    options: dict[str, Any] | None = None


class StepRequest(BaseModel):
    action: str


class RestoreRequest(BaseModel):
    snapshot_id: str


def create_env_app(idle_ttl_s: float = 600.0, max_instances: int = 256) -> FastAPI:
    """The FastAPI app of ``plyground serve-envs``."""
    pool = EnvPool(idle_ttl_s=idle_ttl_s, max_instances=max_instances)
    app = FastAPI(title="plyground envs", version="1")
    app.state.pool = pool

    @app.on_event("shutdown")
    def _shutdown() -> None:
        pool.close_all()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "instances": len(pool.ids())}

    @app.get("/v1/envs")
    def envs() -> list[dict[str, Any]]:
        return [
            {"id": s.id, "kind": s.kind, "max_turns": s.max_turns, "reward_range": list(s.reward_range),
             "components": list(s.components), "description": s.description}
            for s in list_envs()
        ]

    @app.post("/v1/instances")
    async def create(req: CreateRequest) -> dict[str, Any]:
        try:
            spec(req.env_id)
        except UnknownNameError as exc:
            raise HTTPException(404, str(exc)) from exc
        try:
            instance_id = await asyncio.to_thread(pool.create, req.env_id, req.kwargs)
        except HTTPException:
            raise
        except Exception as exc:
            raise HTTPException(400, f"cannot build {req.env_id}: {type(exc).__name__}: {exc}") from exc
        env = pool.get(instance_id).env
        return {
            "instance_id": instance_id,
            "env_id": req.env_id,
            "instructions": env.instructions,
            "max_turns": env.max_turns,
            "reward_range": list(getattr(env, "reward_range", (-float("inf"), float("inf")))),
        }

    @app.post("/v1/instances/{instance_id}/reset")
    async def reset(instance_id: str, req: ResetRequest) -> dict[str, Any]:
        inst = pool.get(instance_id)
        obs, info = await _call(inst, inst.env.reset, seed=req.seed, options=req.options)
        inst.observation, inst.info = obs, info
        return {"observation": obs, "info": _jsonable(info), "instructions": inst.env.instructions}

    @app.post("/v1/instances/{instance_id}/step")
    async def step(instance_id: str, req: StepRequest) -> dict[str, Any]:
        inst = pool.get(instance_id)
        obs, reward, terminated, truncated, info = await _call(inst, inst.env.step, req.action)
        inst.observation, inst.info = obs, info
        return {"observation": obs, "reward": reward, "terminated": terminated, "truncated": truncated,
                "info": _jsonable(info)}

    @app.post("/v1/instances/{instance_id}/snapshot")
    async def snapshot(instance_id: str) -> dict[str, Any]:
        inst = pool.get(instance_id)
        state = await _call(inst, inst.env.snapshot)
        snapshot_id = uuid.uuid4().hex
        inst.snapshots[snapshot_id] = (state, inst.observation, inst.info)
        return {"snapshot_id": snapshot_id}

    @app.post("/v1/instances/{instance_id}/restore")
    async def restore(instance_id: str, req: RestoreRequest) -> dict[str, Any]:
        inst = pool.get(instance_id)
        if req.snapshot_id not in inst.snapshots:
            raise HTTPException(404, f"no snapshot {req.snapshot_id!r} on instance {instance_id!r}")
        state, _, info = inst.snapshots[req.snapshot_id]
        obs = await _call(inst, inst.env.restore, state)
        inst.observation, inst.info = obs, info
        return {"observation": obs, "info": _jsonable(info)}

    @app.get("/v1/instances/{instance_id}/actions")
    def actions(instance_id: str) -> dict[str, Any]:
        inst = pool.get(instance_id)
        return {"admissible_actions": _jsonable(inst.info.get("admissible_actions"))}

    @app.delete("/v1/instances/{instance_id}")
    async def close(instance_id: str) -> dict[str, Any]:
        return {"closed": await asyncio.to_thread(pool.close, instance_id)}

    app.include_router(_agentgym_router(pool))
    return app


class AgentGymStep(BaseModel):
    env_idx: int
    action: str


class AgentGymReset(BaseModel):
    env_idx: int
    session_id: int | None = None


class AgentGymClose(BaseModel):
    env_idx: int


def _agentgym_router(pool: EnvPool) -> APIRouter:
    """AgentGym's env-server route set (its WebShop server's shapes), for any registered env."""
    router = APIRouter(prefix="/agentgym/{env_id}")
    counter = itertools.count()
    # AgentGym addresses instances by integer; map them onto the pool's string ids per env id.
    numbered: dict[tuple[str, int], str] = {}

    def lookup(env_id: str, env_idx: int) -> _Instance:
        key = numbered.get((env_id, env_idx))
        if key is None:
            raise HTTPException(404, f"no env {env_idx} for {env_id}")
        return pool.get(key)

    @router.get("/")
    def ok(env_id: str) -> str:
        try:
            spec(env_id)
        except UnknownNameError as exc:
            raise HTTPException(404, str(exc)) from exc
        return "ok"

    @router.get("/list_envs")
    def list_instances(env_id: str) -> list[int]:
        live = set(pool.ids())
        return [idx for (eid, idx), key in numbered.items() if eid == env_id and key in live]

    @router.post("/create")
    async def create(env_id: str) -> int:
        try:
            spec(env_id)
        except UnknownNameError as exc:
            raise HTTPException(404, str(exc)) from exc
        idx = next(counter)
        numbered[(env_id, idx)] = await asyncio.to_thread(pool.create, env_id)
        inst = lookup(env_id, idx)
        inst.observation, inst.info = await _call(inst, inst.env.reset)
        return idx

    @router.post("/reset")
    async def reset(env_id: str, req: AgentGymReset) -> list[Any]:
        inst = lookup(env_id, req.env_idx)
        inst.observation, inst.info = await _call(inst, inst.env.reset, seed=req.session_id)
        return [inst.observation, None]

    @router.post("/step")
    async def step(env_id: str, req: AgentGymStep) -> dict[str, Any]:
        inst = lookup(env_id, req.env_idx)
        obs, reward, terminated, truncated, info = await _call(inst, inst.env.step, req.action)
        inst.observation, inst.info = obs, info
        return {"state": obs, "reward": reward, "done": terminated or truncated, "info": None}

    @router.get("/observation")
    def observation(env_id: str, env_idx: int) -> str:
        return lookup(env_id, env_idx).observation

    @router.get("/instruction_text")
    def instruction_text(env_id: str, env_idx: int) -> str:
        return lookup(env_id, env_idx).env.instructions

    @router.get("/available_actions")
    def available_actions(env_id: str, env_idx: int) -> dict[str, Any]:
        actions = lookup(env_id, env_idx).info.get("admissible_actions") or []
        return {"has_search_bar": False, "clickables": [str(a) for a in actions]}

    @router.post("/close")
    async def close(env_id: str, req: AgentGymClose) -> dict[str, bool]:
        key = numbered.pop((env_id, req.env_idx), None)
        return {"closed": bool(key) and await asyncio.to_thread(pool.close, key)}  # type: ignore[arg-type]

    return router


def serve_envs(host: str = "127.0.0.1", port: int = 8100, idle_ttl_s: float = 600.0, log_level: str = "warning") -> None:
    """Serve every registered env over HTTP until interrupted (loopback only unless told)."""
    import uvicorn

    uvicorn.run(create_env_app(idle_ttl_s=idle_ttl_s), host=host, port=port, log_level=log_level)
