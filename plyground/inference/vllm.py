"""``VLLMBackend``: launch ``vllm serve`` replicas, route requests over them, push new weights.

The server command line is built by :func:`vllm_command` (pure, tested). Requests go through
:class:`~plyground.inference.openai_compat.OpenAIBackend` clients (one per replica, with
``return_token_ids`` so token ids come back) behind a :class:`~plyground.inference.router.Router`
(least outstanding requests, sticky per episode, restart + retry on a dead replica, a time limit
on every attempt).

Weight sync (``update_weights(model_or_path, version)``, what ``SyncWeights(push=...)`` calls):

* ``weight_sync="lora"`` (default with ``enable_lora=True``): the adapter is saved (a PEFT model's
  ``save_pretrained``, or an adapter folder path is used as is) and hot-loaded into every replica
  with ``POST /v1/load_lora_adapter {"lora_name", "lora_path"}``; requests then name the new
  adapter, and the previous one is removed with ``POST /v1/unload_lora_adapter {"lora_name"}``.
  These endpoints exist since vLLM 0.6.1 and need ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` in the
  server's environment (set here).
* ``weight_sync="reload"``: full weights are saved (``save_pretrained``, a state dict as
  safetensors, or a folder path) into ``sync_dir`` and the server is asked to reload them through
  ``POST /collective_rpc {"method": "reload_weights"}`` (vLLM's dev-mode endpoint, present in
  recent versions with ``VLLM_SERVER_DEV_MODE=1``, set here). Which vLLM versions accept which
  payload has not been verified on a real server in this repository; ``reload_request`` lets a
  caller adapt the request without code changes.
* ``weight_sync="restart"``: save the full weights and restart each replica on them (slow but
  works on every version).

``base_urls=["http://host:8000", ...]`` attaches to servers that already run (one replica per URL)
instead of launching them: routing and failover work the same, a replica that stops answering is
waited for rather than relaunched, and ``close`` leaves the servers running. Weight pushes then
write to ``sync_dir``, which those servers must be able to read (the same machine or a shared file
system); ``weight_sync="restart"`` needs launched servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import httpx

from plyground.errors import BackendError
from plyground.inference.openai_compat import OpenAIBackend, _check_seeds, _each_prompt_params, _LoopThread
from plyground.inference.router import AttachedServer, ManagedServer, Replica, Router, free_port
from plyground.types import Chat, Completion, SamplingParams

__all__ = ["ServerBackend", "VLLMBackend", "vllm_command"]

log = logging.getLogger(__name__)

WeightSync = Literal["lora", "reload", "restart", "none"]


def vllm_command(
    model: str,
    port: int | str = "{port}",
    host: str = "127.0.0.1",
    served_model_name: str | None = None,
    enable_lora: bool = False,
    max_lora_rank: int | None = None,
    max_loras: int | None = None,
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
    dtype: str | None = None,
    tensor_parallel_size: int | None = None,
    seed: int | None = None,
    extra_args: Sequence[str] = (),
    executable: str = "vllm",
) -> list[str]:
    """The ``vllm serve`` command line for one replica."""
    cmd = [executable, "serve", model, "--host", host, "--port", str(port)]
    if served_model_name:
        cmd += ["--served-model-name", served_model_name]
    if enable_lora:
        cmd.append("--enable-lora")
        if max_lora_rank is not None:
            cmd += ["--max-lora-rank", str(max_lora_rank)]
        if max_loras is not None:
            cmd += ["--max-loras", str(max_loras)]
    if max_model_len is not None:
        cmd += ["--max-model-len", str(max_model_len)]
    if gpu_memory_utilization is not None:
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        cmd += ["--gpu-memory-utilization", f"{gpu_memory_utilization:g}"]
    if dtype:
        cmd += ["--dtype", dtype]
    if tensor_parallel_size is not None:
        cmd += ["--tensor-parallel-size", str(tensor_parallel_size)]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    return [*cmd, *extra_args]


class ServerBackend:
    """What the vLLM and SGLang backends share: replicas, routing, a private loop, versions."""

    name = "server"
    health_paths: tuple[str, ...] = ("/health", "/v1/models")
    return_token_ids = False
    # Calls may overlap: the server batches them (the rollout collector reads this).
    parallel_calls = True

    def __init__(
        self,
        model: str,
        num_replicas: int = 1,
        launch_command: Sequence[str] | None = None,
        host: str = "127.0.0.1",
        ports: Sequence[int] | None = None,
        served_model_name: str | None = None,
        startup_timeout_s: float = 900.0,
        request_timeout_s: float = 300.0,
        max_attempts: int = 4,
        max_concurrency: int = 64,
        env: dict[str, str] | None = None,
        sync_dir: str | None = None,
        tokenizer: Any = None,
        start: bool = True,
        base_urls: Sequence[str] | None = None,
    ) -> None:
        if base_urls is not None:
            # Attach to servers that already run instead of launching them: one replica per URL.
            if isinstance(base_urls, str) or not base_urls:
                raise ValueError(f"base_urls must be a non-empty list of server URLs, got {base_urls!r}")
            if launch_command is not None or ports is not None:
                raise ValueError("base_urls names running servers: launch_command and ports do not apply")
            num_replicas = len(base_urls)
        self.base_urls = list(base_urls) if base_urls is not None else None
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if ports is not None and len(ports) != num_replicas:
            raise ValueError(f"{len(ports)} ports given for {num_replicas} replicas")
        self.model = model
        self.model_name = served_model_name or model
        self.request_model = self.model_name
        self.num_replicas = num_replicas
        self.launch_command = list(launch_command) if launch_command is not None else None
        self.host = host
        self.ports = list(ports) if ports is not None else None
        self.startup_timeout_s = startup_timeout_s
        self.request_timeout_s = request_timeout_s
        self.max_attempts = max_attempts
        self.max_concurrency = max_concurrency
        self.env = env
        self._tokenizer = tokenizer
        self._own_sync_dir = sync_dir is None
        # Made on the first weight push: a backend that never syncs (or never starts) leaves no folder.
        self._sync_dir = Path(sync_dir) if sync_dir is not None else None
        self.policy_version = 0
        self.sync_log: list[dict[str, Any]] = []
        self.replicas: list[Replica] = []
        self.router: Router | None = None
        self._runner: _LoopThread | None = None
        self._lock = threading.Lock()
        if start:
            self.start()

    @property
    def sync_dir(self) -> Path:
        """Where pushed weights are written (a temporary folder of this backend's unless given)."""
        if self._sync_dir is None:
            self._sync_dir = Path(tempfile.mkdtemp(prefix=f"plyground-{self.name}-weights-"))
        return self._sync_dir

    @property
    def tokenizer(self) -> Any:
        """The served model's tokenizer (the ``tokenizer`` argument: an object or a name/folder,
        default the model's), loaded on first use from local files. With it the backend is a
        :class:`~plyground.inference.base.TokenBackend`: rollouts then track token ids exactly
        (token-in, token-out) and trainers can learn from the samples."""
        if self._tokenizer is None or isinstance(self._tokenizer, str):
            from plyground.inference.models import load_tokenizer

            try:
                self._tokenizer = load_tokenizer(self._tokenizer or self.model)
            except BackendError as exc:
                # AttributeError: isinstance(backend, TokenBackend) is then False instead of raising.
                raise AttributeError(f"{self.name} backend has no tokenizer: {exc}") from exc
        return self._tokenizer

    # -- to be provided by subclasses --------------------------------------------------------------
    def server_command(self, port: int) -> list[str]:
        raise NotImplementedError  # abstract: each server kind builds its own command line

    def server_env(self) -> dict[str, str]:
        return dict(os.environ if self.env is None else self.env)

    def _push_to_replica(self, replica: Replica, sync: dict[str, Any]) -> None:
        raise NotImplementedError  # abstract: each server kind has its own weight-sync request

    # -- lifecycle ---------------------------------------------------------------------------------
    def command_for(self, port: int) -> list[str]:
        """The launched command: ``launch_command`` (``{port}``/``{host}`` filled in) if given."""
        if self.launch_command is not None:
            return [p.replace("{port}", str(port)).replace("{host}", self.host) for p in self.launch_command]
        return self.server_command(port)

    def start(self) -> None:
        """Launch every replica (concurrently) and wait until all are healthy; with ``base_urls``,
        wait until each of those servers answers."""
        if self.router is not None:
            return
        servers: list[ManagedServer | AttachedServer]
        if self.base_urls is not None:
            servers = [
                AttachedServer(url, self.health_paths, self.startup_timeout_s, name=f"{self.name}-{i}")
                for i, url in enumerate(self.base_urls)
            ]
        else:
            ports = self.ports or [free_port(self.host) for _ in range(self.num_replicas)]
            servers = [
                ManagedServer(
                    self.command_for(port),
                    host=self.host,
                    port=port,
                    health_paths=self.health_paths,
                    startup_timeout_s=self.startup_timeout_s,
                    env=self.server_env(),
                    name=f"{self.name}-{i}",
                )
                for i, port in enumerate(ports)
            ]
        errors: list[BaseException] = []

        def launch(server: ManagedServer | AttachedServer) -> None:
            try:
                server.start()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=launch, args=(s,)) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            for s in servers:
                s.stop()
            raise errors[0]
        self.replicas = [Replica(i, s, self._make_client(s)) for i, s in enumerate(servers)]
        self.router = Router(
            self.replicas,
            request_timeout_s=self.request_timeout_s,
            max_attempts=self.max_attempts,
            on_restart=self._on_restart,
            restart_timeout_s=self.startup_timeout_s,
        )

    def _make_client(self, server: ManagedServer | AttachedServer) -> Any:
        return OpenAIBackend(
            self.request_model,
            base_url=f"{server.root_url}/v1",
            max_concurrency=self.max_concurrency,
            timeout_s=self.request_timeout_s,
            max_retries=0,  # the router retries, on another replica
            return_token_ids=self.return_token_ids,
        )

    def _on_restart(self, replica: Replica) -> None:
        """A restarted server has the base weights: bring it to the current version."""
        with contextlib.suppress(Exception):
            replica.client.close()
        replica.client = self._make_client(replica.server)
        if self.sync_log:
            self._push_to_replica(replica, self.sync_log[-1])

    def close(self) -> None:
        if self.router is not None:
            self.router.wait_restarts(timeout_s=5.0)
        for replica in self.replicas:
            with contextlib.suppress(Exception):
                replica.client.close()
            replica.server.stop()
        self.replicas = []
        self.router = None
        if self._runner is not None:
            self._runner.stop()
            self._runner = None
        if self._own_sync_dir and self._sync_dir is not None:
            shutil.rmtree(self._sync_dir, ignore_errors=True)
            self._sync_dir = None

    def __enter__(self) -> ServerBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- generation --------------------------------------------------------------------------------
    def _require_router(self) -> Router:
        if self.router is None:
            raise BackendError(f"{self.name} backend is not started (or was closed)")
        return self.router

    async def _routed(self, prompt: Any, method: str, params: SamplingParams) -> list[Completion]:
        """One prompt (a chat, or token ids) through ``method`` of a replica's client, routed sticky
        by its prefix; its request carries ``params.seed`` (this prompt's own seed)."""

        async def call(replica: Replica) -> list[Completion]:
            replica.client.model = self.request_model
            result: list[list[Completion]] = await getattr(replica.client, method)(
                [prompt], params, seeds=[params.seed]
            )
            return result[0]

        router = self._require_router()
        return await router.call(
            call,
            lookup=router.sticky.lookup_keys(prompt),
            register=lambda out: [router.sticky.continuation_key(prompt, c) for c in out],
        )

    async def _one_chat(self, chat: Chat, params: SamplingParams) -> list[Completion]:
        return await self._routed(chat, "agenerate", params)

    async def agenerate(
        self, chats: Sequence[Chat], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[list[Completion]]:
        """``params.n`` completions per chat, each chat a request of its own (the servers batch
        them). ``seeds[i]`` (one per chat, ``None`` = unseeded) is chat ``i``'s request seed; without
        ``seeds``, a seeded call gives chat ``i`` the seed ``OpenAIBackend`` would."""
        each = _each_prompt_params(params, len(chats), seeds)
        return list(await asyncio.gather(*(self._one_chat(c, p) for c, p in zip(chats, each, strict=True))))

    async def _one_ids(self, prompt: list[int], params: SamplingParams) -> list[Completion]:
        return await self._routed(prompt, "agenerate_ids", params)

    async def agenerate_ids(
        self, prompts: Sequence[list[int]], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[list[Completion]]:
        """Token-id prompts through ``/v1/completions`` (a list of ids as the prompt); ``seeds`` as
        in :meth:`agenerate`."""
        each = _each_prompt_params(params, len(prompts), seeds)
        return list(await asyncio.gather(*(self._one_ids(list(p), q) for p, q in zip(prompts, each, strict=True))))

    def generate_ids(
        self, prompts: Sequence[list[int]], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[list[Completion]]:
        if seeds is not None:
            _check_seeds(seeds, len(prompts))
        result: list[list[Completion]] = self._run_sync(self.agenerate_ids(prompts, params, seeds=seeds))
        return result

    def generate(
        self, chats: Sequence[Chat], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[list[Completion]]:
        if seeds is not None:
            _check_seeds(seeds, len(chats))
        result: list[list[Completion]] = self._run_sync(self.agenerate(chats, params, seeds=seeds))
        return result

    def _run_sync(self, coro: Any) -> Any:
        with self._lock:
            if self._runner is None:
                self._runner = _LoopThread()
            runner = self._runner
        return runner.run(coro)

    def stats(self) -> dict[str, Any]:
        out = self._require_router().stats()
        out["policy_version"] = self.policy_version
        out["request_model"] = self.request_model
        return out

    # -- weights -----------------------------------------------------------------------------------
    def update_weights(self, model_or_path: Any, version: int | None = None) -> dict[str, Any]:
        """Push new weights to every replica; returns the sync record. ``version`` defaults to the
        previous version + 1 and becomes :attr:`policy_version` once every replica has it."""
        version = self.policy_version + 1 if version is None else int(version)
        started = time.perf_counter()
        sync = self._prepare_sync(model_or_path, version)
        saved = time.perf_counter()
        for replica in self.replicas:
            self._push_to_replica(replica, sync)
        self._after_sync(sync)
        sync["save_s"] = saved - started
        sync["push_s"] = time.perf_counter() - saved
        previous = self.sync_log[-1]["path"] if self.sync_log else None
        self.sync_log.append(sync)
        self.policy_version = version
        self._drop_weights(previous, sync["path"])
        return sync

    def _drop_weights(self, previous: str | None, current: str) -> None:
        """Delete the previous push's folder once every replica has the new one, if this backend
        wrote it (``sync_dir/v<N>``): a replica that restarts is given the last push only, and a
        long run would otherwise keep a full copy of the weights per push on disk."""
        if previous is None or previous == current or self._sync_dir is None:
            return
        folder = Path(previous)
        if folder.parent.resolve() == self._sync_dir.resolve() and folder.name.startswith("v"):
            shutil.rmtree(folder, ignore_errors=True)

    def _prepare_sync(self, model_or_path: Any, version: int) -> dict[str, Any]:
        return {"version": version, "path": save_weights(model_or_path, self.sync_dir / f"v{version}")}

    def _after_sync(self, sync: dict[str, Any]) -> None:
        pass

    def _post(self, replica: Replica, path: str, payload: dict[str, Any], timeout_s: float | None = None) -> Any:
        url = f"{replica.server.root_url}{path}"
        try:
            response = httpx.post(url, json=payload, timeout=timeout_s or self.request_timeout_s)
        except httpx.HTTPError as exc:
            raise BackendError(f"{self.name}: POST {url} failed: {exc}") from exc
        if response.status_code != 200:
            raise BackendError(f"{self.name}: POST {url} -> HTTP {response.status_code}: {response.text[:300]}")
        try:
            return response.json()
        except ValueError:
            return response.text


def save_weights(model_or_path: Any, target: Path) -> str:
    """A folder holding the weights: a path is used as is; a model with ``save_pretrained`` (a
    transformers or PEFT model: PEFT saves only the adapter) is saved to ``target``; a state dict is
    written as ``target/model.safetensors``."""
    if isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path)
        if not path.exists():
            raise FileNotFoundError(f"weights path {path} does not exist")
        return str(path.resolve())
    target.mkdir(parents=True, exist_ok=True)
    save = getattr(model_or_path, "save_pretrained", None)
    if callable(save):
        save(str(target))
        return str(target.resolve())
    if isinstance(model_or_path, dict):
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous().cpu() for k, v in model_or_path.items()}, str(target / "model.safetensors"))
        return str(target.resolve())
    raise TypeError(
        f"cannot save weights from {type(model_or_path).__name__}: pass a folder path, a model with "
        "save_pretrained(), or a state dict"
    )


class VLLMBackend(ServerBackend):
    """vLLM server replicas as one backend (see the module docstring).

    Args (beyond :class:`ServerBackend`'s): ``enable_lora``, ``max_lora_rank``, ``max_loras``,
    ``max_model_len``, ``gpu_memory_utilization``, ``dtype``, ``tensor_parallel_size``,
    ``extra_args`` go to :func:`vllm_command`; ``weight_sync`` picks how
    :meth:`update_weights` pushes; ``reload_request`` is ``(path, json)`` for ``"reload"``.
    """

    name = "vllm"
    return_token_ids = True

    def __init__(
        self,
        model: str,
        *,
        enable_lora: bool = False,
        max_lora_rank: int | None = None,
        max_loras: int | None = None,
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        dtype: str | None = None,
        tensor_parallel_size: int | None = None,
        extra_args: Sequence[str] = (),
        weight_sync: WeightSync | None = None,
        reload_request: tuple[str, dict[str, Any]] = ("/collective_rpc", {"method": "reload_weights"}),
        lora_prefix: str = "policy",
        **kwargs: Any,
    ) -> None:
        self.enable_lora = enable_lora
        self.max_lora_rank = max_lora_rank
        self.max_loras = max_loras
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.dtype = dtype
        self.tensor_parallel_size = tensor_parallel_size
        self.extra_args = list(extra_args)
        self.weight_sync: WeightSync = weight_sync or ("lora" if enable_lora else "reload")
        if self.weight_sync == "lora" and not enable_lora:
            raise ValueError("weight_sync='lora' needs enable_lora=True")
        self.reload_request = reload_request
        self.lora_prefix = lora_prefix
        self._loaded_adapter: str | None = None
        if self.weight_sync == "restart" and kwargs.get("base_urls") is not None:
            raise ValueError(
                "weight_sync='restart' relaunches the servers: it needs servers this backend launched, not base_urls"
            )
        super().__init__(model, **kwargs)

    def server_command(self, port: int) -> list[str]:
        return vllm_command(
            self.model,
            port=port,
            host=self.host,
            served_model_name=self.model_name,
            enable_lora=self.enable_lora,
            max_lora_rank=self.max_lora_rank,
            max_loras=self.max_loras,
            max_model_len=self.max_model_len,
            gpu_memory_utilization=self.gpu_memory_utilization,
            dtype=self.dtype,
            tensor_parallel_size=self.tensor_parallel_size,
            extra_args=self.extra_args,
            executable=_vllm_executable(),
        )

    def server_env(self) -> dict[str, str]:
        env = super().server_env()
        if self.enable_lora:
            env.setdefault("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")
        if self.weight_sync == "reload":
            env.setdefault("VLLM_SERVER_DEV_MODE", "1")
        return env

    def _prepare_sync(self, model_or_path: Any, version: int) -> dict[str, Any]:
        sync = super()._prepare_sync(model_or_path, version)
        sync["mode"] = self.weight_sync
        if self.weight_sync == "lora":
            sync["lora_name"] = f"{self.lora_prefix}-v{version}"
        return sync

    def _push_to_replica(self, replica: Replica, sync: dict[str, Any]) -> None:
        mode = sync["mode"]
        if mode == "lora":
            self._post(replica, "/v1/load_lora_adapter", {"lora_name": sync["lora_name"], "lora_path": sync["path"]})
        elif mode == "reload":
            path, payload = self.reload_request
            body = {k: (sync["path"] if v == "{path}" else v) for k, v in payload.items()}
            self._post(replica, path, body)
        elif mode == "restart":
            assert isinstance(replica.server, ManagedServer)  # refused with base_urls in __init__
            replica.server.command_template = self._command_with_model(replica.server.port or 0, sync["path"])
            replica.server.restart()
            with contextlib.suppress(Exception):
                replica.client.close()
            replica.client = self._make_client(replica.server)

    def _after_sync(self, sync: dict[str, Any]) -> None:
        if sync["mode"] != "lora":
            return
        previous, self._loaded_adapter = self._loaded_adapter, sync["lora_name"]
        self.request_model = sync["lora_name"]
        if previous is not None:
            for replica in self.replicas:
                try:
                    self._post(replica, "/v1/unload_lora_adapter", {"lora_name": previous})
                except BackendError as exc:  # an adapter left loaded only costs memory
                    log.warning("unloading %s from replica %d failed: %s", previous, replica.index, exc)

    def _command_with_model(self, port: int, path: str) -> list[str]:
        if self.launch_command is not None:
            return self.command_for(port)
        cmd = self.server_command(port)
        cmd[2] = path
        return cmd


def _vllm_executable() -> str:
    """``vllm`` next to this interpreter if there is one, else from PATH."""
    candidate = Path(sys.executable).with_name("vllm")
    return str(candidate) if candidate.exists() else "vllm"


def lora_push(backend: ServerBackend) -> Callable[[Any, int], None]:
    """``SyncWeights(push=lora_push(backend))``: the trainer's model and step go to ``update_weights``."""

    def push(model: Any, version: int) -> None:
        backend.update_weights(model, version)

    return push
