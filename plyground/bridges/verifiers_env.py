"""PrimeIntellect ``verifiers`` environments as plyground ``TextEnv``s.

Written against the classic verifiers API (``import verifiers as vf``; verifiers 0.1.x-0.3.x, where
0.3 keeps it under ``verifiers.legacy``): ``vf.load_environment(env_id, **env_args)`` returns an
``Environment`` (``SingleTurnEnv``, ``MultiTurnEnv``, ``ToolEnv``, ...) with a dataset of rows
(``prompt``, ``answer``, ``info``, ``task``), a ``rubric`` that scores a finished rollout, and
``rollout(input, client, model, sampling_args)`` which asks ``client.get_response(prompt, ...)`` for
each model turn. verifiers 0.4's ``verifiers.v1`` stack (harness runtimes, ``EnvConfig``) is a
different design and is not wrapped here.

Each plyground episode is one dataset row, played by verifiers' own rollout loop and scored by the
env's own rubric: the rollout runs in a helper thread whose model client hands every prompt to
the plyground agent (``reset`` / ``step`` observations) and returns the agent's action as the
model's reply. So single-turn envs take one step; multi-turn envs answer through their
``env_response`` until they stop; the last step's reward is the rubric's reward, and ``success``
is reward >= the env's ``pass_threshold`` (default 0.5). The episode's row is drawn from the seed
(or ``options={"index": i}``); the default snapshot replays seed + actions.

Limits: the agent's reply is passed as plain text (tool-calling envs see no structured tool calls);
rubrics that call an LLM judge need their judge's server.

Requires ``pip install verifiers`` (< 0.4 for this API; the ``adapters`` extra).
"""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from plyground.envs.core import TextEnv
from plyground.envs.registration import EnvSpec, register
from plyground.errors import EnvError

INSTALL_HINT = "pip install 'verifiers<0.4'  (or: pip install 'plyground[adapters]')"
PREFIX = "Verifiers-"
_GENERIC_INSTRUCTIONS = "Solve the task in the user message. Answer in the format it asks for."


def _vf() -> Any:
    try:
        import verifiers as vf

        vf.load_environment  # noqa: B018 - the classic API; verifiers 0.4 has only verifiers.v1
    except (ImportError, AttributeError) as exc:
        raise EnvError(f"verifiers environments need the classic verifiers API: {INSTALL_HINT}") from exc
    return vf


_LOADED: dict[str, Any] = {}
_LOAD_LOCK = threading.Lock()


def load_verifiers_environment(env_id: str, env_args: dict[str, Any] | None = None, cache: bool = True) -> Any:
    """``vf.load_environment(env_id, **env_args)``, loaded once per process (``cache``) and shared by
    the ``VerifiersEnv`` instances built from it (a verifiers env serves many rollouts at once).

    verifiers installs SIGINT/SIGTERM handlers when an env is built, which Python allows only on
    the main thread; built from a worker thread (the eval harness builds envs there), the handler
    installation is skipped.
    """
    args = dict(env_args or {})
    key = json.dumps([env_id, args], sort_keys=True, default=repr)
    with _LOAD_LOCK:
        if cache and key in _LOADED:
            return _LOADED[key]
        vf = _vf()
        if threading.current_thread() is threading.main_thread():
            environment = vf.load_environment(env_id, **args)
        else:
            install = signal.signal
            signal.signal = lambda *a, **k: None  # type: ignore[assignment]
            try:
                environment = vf.load_environment(env_id, **args)
            finally:
                signal.signal = install
        if cache:
            _LOADED[key] = environment
        return environment


class _Abort(Exception):
    """Ends a rollout the plyground side has left (reset, close, truncation)."""


def _message_text(message: Any) -> tuple[str, str]:
    """(role, text) of a verifiers message (a dict or verifiers' pydantic message)."""
    get = message.get if isinstance(message, dict) else lambda k, d=None: getattr(message, k, d)
    role = str(get("role", "user"))
    content = get("content", "")
    if isinstance(content, list):  # content parts
        content = "\n".join(
            str(p.get("text", "") if isinstance(p, dict) else getattr(p, "text", "")) for p in content
        )
    return role, "" if content is None else str(content)


def render_messages(messages: Sequence[Any], skip_system: bool = True) -> str:
    """Messages as one observation: a lone message is its text; several are tagged by role."""
    parts = [_message_text(m) for m in messages]
    if skip_system:
        parts = [p for p in parts if p[0] != "system"]
    if len(parts) == 1:
        return parts[0][1]
    return "\n\n".join(f"[{role}] {text}" for role, text in parts)


_CLIENT_CLASS: Any = None


class _Reply(dict):  # type: ignore[type-arg]
    """A reply shaped like verifiers' ``Response`` (``.message.content``, dict access too), for
    duck-typed environments when verifiers itself is not installed."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def _client_class() -> Any:
    """A verifiers ``Client`` whose replies come from the plyground agent (built once, lazily).

    Without verifiers installed (an environment object passed in directly), a plain client with
    the same ``get_response`` is used."""
    global _CLIENT_CLASS
    if _CLIENT_CLASS is not None:
        return _CLIENT_CLASS
    try:
        from verifiers.clients import Client
        from verifiers.types import Response, ResponseMessage
    except ImportError:
        Client, Response, ResponseMessage = object, None, None

    def make_reply(reply: str, model: str) -> Any:
        if Response is None:
            message = _Reply(role="assistant", content=reply, finish_reason="stop", is_truncated=False)
            return _Reply(id=uuid.uuid4().hex, created=int(time.time()), model=model, message=message)
        message = ResponseMessage(content=reply, finish_reason="stop", is_truncated=False)
        return Response(id=uuid.uuid4().hex, created=int(time.time()), model=model, message=message)

    class AgentClient(Client):  # type: ignore[misc,valid-type]
        """Hands each prompt to the plyground side and waits for its action."""

        def __init__(self, bridge: _Bridge) -> None:
            if Client is not object:
                super().__init__(bridge)
            self.bridge = bridge

        def setup_client(self, config: Any) -> Any:
            return self.bridge

        async def to_native_tool(self, tool: Any) -> Any:
            return tool

        async def to_native_prompt(self, messages: Any) -> tuple[Any, dict[str, Any]]:
            return messages, {}

        async def get_native_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError  # get_response is answered directly

        async def raise_from_native_response(self, response: Any) -> None:
            return None

        async def from_native_response(self, response: Any) -> Any:
            return response

        async def close(self) -> None:
            return None

        async def get_response(self, prompt: Any, model: str, sampling_args: Any = None,
                               tools: Any = None, **kwargs: Any) -> Any:
            self.bridge.to_agent.put(("prompt", list(prompt)))
            reply = await asyncio.to_thread(self.bridge.to_env.get)
            if reply is None:
                raise _Abort()
            return make_reply(reply, model)

    _CLIENT_CLASS = AgentClient
    return AgentClient


class _Bridge:
    def __init__(self) -> None:
        self.to_agent: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.to_env: queue.Queue[str | None] = queue.Queue()


class VerifiersEnv(TextEnv):
    """One verifiers environment; each episode is one of its dataset rows.

    ``env_id`` is loaded with ``vf.load_environment(env_id, **env_args)``; or pass a built
    ``environment``. ``split``: ``"eval"`` (the eval dataset, falling back to train) or ``"train"``.
    """

    reward_range = (-float("inf"), float("inf"))

    def __init__(
        self,
        env_id: str | None = None,
        environment: Any = None,
        split: str = "eval",
        max_turns: int | None = None,
        num_examples: int = -1,
        timeout_s: float = 300.0,
        model_name: str = "plyground-agent",
        env_args: dict[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if environment is None:
            if env_id is None:
                raise ValueError("VerifiersEnv needs env_id or environment")
            environment = load_verifiers_environment(env_id, env_args)
        self.vf_env = environment
        self.env_id = env_id or getattr(environment, "env_id", "") or type(environment).__name__
        self.dataset = self._pick_dataset(split, num_examples)
        if len(self.dataset) == 0:
            raise EnvError(f"verifiers env {self.env_id}: its {split} dataset is empty")
        env_turns = int(getattr(environment, "max_turns", -1) or -1)
        self.max_turns = max_turns or (env_turns if env_turns > 0 else 10)
        self.instructions = (getattr(environment, "system_prompt", None) or "").strip() or _GENERIC_INSTRUCTIONS
        self.pass_threshold = float(getattr(environment, "pass_threshold", 0.5))
        self.timeout_s = timeout_s
        self.model_name = model_name
        self._bridge: _Bridge | None = None
        self._thread: threading.Thread | None = None
        self._seen = 0
        self.last_state: Any = None

    def _pick_dataset(self, split: str, n: int) -> Any:
        env = self.vf_env
        getters = ["get_eval_dataset", "get_dataset"] if split == "eval" else ["get_dataset", "get_eval_dataset"]
        for name in getters:
            try:
                dataset = getattr(env, name)(n=n)
            except (ValueError, AttributeError, TypeError):
                continue
            if dataset is not None:
                return dataset
        raise EnvError(f"verifiers env {self.env_id} has no dataset")

    # -- the rollout thread -------------------------------------------------------------------
    def _start(self, row: dict[str, Any]) -> None:
        bridge = _Bridge()
        client = _client_class()(bridge)
        env = self.vf_env

        async def play() -> Any:
            state = await env.rollout(row, client, self.model_name, {})
            if getattr(env, "score_rollouts", True):
                await env.rubric.score_rollout(state)
            else:
                await env.rubric.dummy_score_rollout(state)
            await env.rubric.cleanup(state)
            return state

        def run() -> None:
            try:
                bridge.to_agent.put(("done", asyncio.run(play())))
            except _Abort:
                pass
            except BaseException as exc:  # reported to the agent as the episode's end
                bridge.to_agent.put(("error", exc))

        self._bridge = bridge
        self._thread = threading.Thread(target=run, name=f"verifiers-{self.env_id}", daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        if self._bridge is not None and self._thread is not None and self._thread.is_alive():
            self._bridge.to_env.put(None)
            self._thread.join(timeout=5)
        self._bridge, self._thread = None, None

    def _next(self) -> tuple[str, Any]:
        assert self._bridge is not None
        try:
            return self._bridge.to_agent.get(timeout=self.timeout_s)
        except queue.Empty:
            return "error", TimeoutError(f"the verifiers rollout gave nothing for {self.timeout_s} s")

    # -- TextEnv ---------------------------------------------------------------------------------
    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._stop()
        index = int(options["index"]) if "index" in options else int(rng.integers(len(self.dataset)))
        row = dict(self.dataset[index % len(self.dataset)])
        self._start(row)
        kind, payload = self._next()
        info: dict[str, Any] = {"index": index, "example_id": row.get("example_id", index)}
        if kind != "prompt":
            raise EnvError(f"verifiers env {self.env_id} ended before asking the model: {payload!r}")
        self._seen = len(payload)
        return render_messages(payload), info

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        if self._bridge is None:
            return "The episode is over.", 0.0, True, {"valid_action": False}
        self._bridge.to_env.put(action)
        kind, payload = self._next()
        if kind == "prompt":
            new = payload[self._seen + 1:]  # past our own reply
            self._seen = len(payload)
            if self.turn >= self.max_turns:
                self._stop()
            return render_messages(new, skip_system=False) or "(no reply)", 0.0, False, {}
        self._bridge, self._thread = None, None
        if kind == "error":
            return f"The environment failed: {type(payload).__name__}: {payload}", 0.0, True, {
                "error": f"env: {type(payload).__name__}: {payload}"}
        state = payload
        self.last_state = state
        reward = float(state.get("reward") or 0.0)
        final = state.get("final_env_response")
        obs = render_messages(final, skip_system=False) if final else ""
        obs = (obs + "\n\n" if obs else "") + f"Episode finished. Reward: {reward:g}"
        metrics = {k: float(v) for k, v in dict(state.get("metrics") or {}).items()
                   if isinstance(v, (int, float))}
        return obs, reward, True, {"success": reward >= self.pass_threshold, "metrics": metrics,
                                   "answer": state.get("answer")}

    def close(self) -> None:
        self._stop()


def register_verifiers(
    env_id: str, plyground_id: str | None = None, env_args: dict[str, Any] | None = None, **env_kwargs: Any
) -> EnvSpec:
    """Register ``vf.load_environment(env_id, **env_args)`` as plyground env ``Verifiers-<env_id>``
    (lazily: nothing is loaded until ``plyground.make``). ``env_kwargs`` go to :class:`VerifiersEnv`."""
    name = plyground_id or PREFIX + env_id.replace("/", "_")

    def build(**kwargs: Any) -> VerifiersEnv:
        return VerifiersEnv(env_id, env_args=env_args, **{**env_kwargs, **kwargs})

    return register(
        name,
        build,
        kind="multi-turn",
        max_turns=env_kwargs.get("max_turns"),
        components=("verifiers",),
        description=f"verifiers environment {env_id} (vf.load_environment); rows are episodes, its rubric scores",
    )
