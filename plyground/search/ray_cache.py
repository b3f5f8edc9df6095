"""The best-first solved-state cache shared by searches on a Ray cluster, and search workers.

BFS-Prover's provers share what they proved: a state one search solved is finished from the
cache by every later search that reaches it (:class:`~plyground.search.best_first.SolvedCache`).
In one process that is a dict behind a lock; across Ray worker processes (and machines) it is one
actor holding that ``SolvedCache``, and :class:`RaySolvedCache` is a handle to it with the same
interface (``get``, ``put``, ``record``, ``in``, ``len``, ``hits``). The handle pickles, so it is
passed to remote tasks and actors like any argument.

- :func:`shared_solved_cache` returns a ``RaySolvedCache`` when Ray is initialised in this process,
  else an in-process ``SolvedCache``: code that takes a cache works alike on one machine or many.
- :func:`SearchWorker` is an actor class that runs searches (``plyground.search.evaluate.run_search``)
  on a registered env, for spreading problems over a cluster with one shared cache.

Ray is imported only when used (``pip install 'plyground[scale]'``).
"""

from __future__ import annotations

from typing import Any

from plyground.search.best_first import SolvedCache, SolvedStates, solved_suffixes
from plyground.search.tree import Node

__all__ = ["RaySolvedCache", "SearchWorker", "shared_solved_cache"]


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("a Ray solved cache needs ray: pip install 'plyground[scale]'") from exc
    return ray


class RaySolvedCache:
    """A :class:`SolvedCache` in a Ray actor; this object is a picklable handle to it.

    ``RaySolvedCache()`` starts the actor (``name=`` makes it a named actor: another driver or
    worker gets the same one with ``RaySolvedCache(name=...)``); ``RaySolvedCache(handle=h)`` wraps
    an existing actor handle. Every method is one round trip to the actor, except ``get`` of a
    state this handle already found solved (solutions only ever get shorter, so a local copy of a
    hit is still a valid way to finish). ``record`` sends the whole path in one call and waits for
    it, so a search that returns has published its solution."""

    def __init__(self, handle: Any = None, name: str | None = None, namespace: str | None = None) -> None:
        ray = _ray()
        if handle is None:
            if not ray.is_initialized():
                raise RuntimeError("RaySolvedCache needs Ray: call plyground.scale.init_ray(...) first")
            options: dict[str, Any] = {"num_cpus": 0}  # bookkeeping only: it must not hold a CPU
            if name is not None:
                options.update(name=name, get_if_exists=True)
            if namespace is not None:
                options["namespace"] = namespace
            handle = ray.remote(SolvedCache).options(**options).remote()
        self.handle = handle
        self._found: dict[str, tuple[str, ...]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"handle": self.handle}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.handle = state["handle"]
        self._found = {}

    def _call(self, method: str, *args: Any) -> Any:
        return _ray().get(getattr(self.handle, method).remote(*args))

    def get(self, key: str) -> tuple[str, ...] | None:
        if key in self._found:
            self._call("get", key)  # counts the hit where every worker's hits are counted
            return self._found[key]
        found = self._call("get", key)
        if found is not None:
            self._found[key] = tuple(found)
            return tuple(found)
        return None

    def put(self, key: str, actions: tuple[str, ...]) -> None:
        self._call("put", key, tuple(actions))

    def put_many(self, items: list[tuple[str, tuple[str, ...]]]) -> None:
        self._call("put_many", list(items))

    def record(self, success: Node) -> None:
        """Cache every state on the path to ``success`` (computed here: the tree stays local)."""
        self.put_many(solved_suffixes(success))

    def info(self) -> dict[str, int]:
        result: dict[str, int] = self._call("info")
        return result

    def items(self) -> list[tuple[str, tuple[str, ...]]]:
        """Every cached state with its actions (one round trip; for checkpoints)."""
        return [(k, tuple(v)) for k, v in self._call("items")]

    @property
    def hits(self) -> int:
        """Lookups that found a solved state, over every search that used the actor."""
        return int(self.info()["hits"])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self._call("contains", key))

    def __len__(self) -> int:
        return int(self.info()["size"])

    def kill(self) -> None:
        """End the actor (and the cache with it)."""
        _ray().kill(self.handle)


def shared_solved_cache(name: str | None = None) -> SolvedStates:
    """A cache to share between searches: a :class:`RaySolvedCache` when Ray is initialised in
    this process, else an in-process :class:`SolvedCache` (shared by threads)."""
    try:
        import ray
    except ImportError:
        return SolvedCache()
    if ray.is_initialized():
        return RaySolvedCache(name=name)
    return SolvedCache()


class _SearchWorker:
    """The body of :class:`SearchWorker`: one env, searches on demand."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None) -> None:
        import plyground

        self.env_id = env_id
        self.env = plyground.make(env_id, **(env_kwargs or {}))

    def search(
        self,
        algo: str,
        proposer: Any,
        budget: int,
        seed: int | None = None,
        options: dict[str, Any] | None = None,
        cache: SolvedStates | None = None,
        config: Any = None,
    ) -> dict[str, Any]:
        """``run_search`` on this worker's env; the result as a dict (``SearchResult.to_dict``)
        with the worker's ``pid``. The tree stays here: it holds env snapshots."""
        import os

        from plyground.search.evaluate import run_search

        result = run_search(algo, self.env, proposer, budget, seed, options, config, cache=cache, env_id=self.env_id)
        out = result.to_dict()
        out["pid"] = os.getpid()
        return out

    def pid(self) -> int:
        import os

        return os.getpid()

    def close(self) -> None:
        self.env.close()


def SearchWorker(num_cpus: float = 1.0, **options: Any) -> Any:
    """The Ray actor class for :class:`_SearchWorker`: ``SearchWorker().remote("Prove-v0")``, then
    ``worker.search.remote("bfs", proposer, budget, seed, options, cache)``."""
    return _ray().remote(num_cpus=num_cpus, **options)(_SearchWorker)
