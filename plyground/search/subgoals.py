"""BFS-Prover V2's planner: split a theorem into subgoal lemmas, prove them with parallel provers
that share what they proved, prove the theorem from the lemmas, and replan when stuck.

One attempt on a Coq theorem ``Theorem t : P.`` with header ``H``:

1. the planner (:class:`LLMPlanner`, or any :class:`SubgoalPlanner`) proposes closed lemma
   statements ``L1 .. Lk`` (``Lemma name : statement.``, one a line), given the theorem and what
   failed before;
2. provers run best-first search (:func:`~plyground.search.best_first.best_first`) on every lemma
   not proved yet, ``provers`` at a time (threads, each with its own ``coqtop``; or Ray workers,
   see :class:`SubgoalProver`), all sharing one solved-state cache (``shared_solved_cache()``: a
   Ray actor on a cluster, in-process otherwise), so a state one prover closed is finished by
   replay in every later search, and a lemma proved for one theorem is reused by the next;
3. a prover searches ``Theorem t_planned : (L1) -> .. -> (Lk) -> (P).`` over the proved lemmas, where
   they appear as hypotheses once introduced;
4. the whole script, ``H`` + the lemmas with their proofs + ``t_planned`` + ``Theorem t : P. Proof.
   apply (t_planned L1 .. Lk). Qed.``, is checked by ``coqc`` with ``Print Assumptions t``
   (:class:`~plyground.proving.coq.CoqProofVerifier`): only a checked proof counts;
5. if a lemma or the final search failed, the planner is asked again with that as feedback
   (``max_plans`` attempts in all); proved lemmas are kept across plans.

``direct_first`` first searches the theorem itself, as the V2 pipeline does before planning. The
searches' trajectories (:attr:`PlannedProof.searches`) are the expert-iteration data: SFT on the
proved ones, error siblings from their trees.
"""

from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from plyground.envs.core import TextEnv
from plyground.proving.coq import DEFAULT_HEADER, CoqProofVerifier, proof_script
from plyground.search.best_first import BestFirstConfig, SolvedStates, best_first
from plyground.search.proposer import ActionProposer
from plyground.search.ray_cache import shared_solved_cache
from plyground.search.tree import SearchResult
from plyground.types import Chat, Message, SamplingParams, Task

__all__ = [
    "LLMPlanner",
    "PlannedProof",
    "PlannerConfig",
    "Subgoal",
    "SubgoalPlanner",
    "SubgoalProver",
    "parse_subgoals",
    "prove_with_subgoals",
    "split_statement",
]

_DECL_RE = re.compile(r"^\s*(Theorem|Lemma|Example|Fact|Remark|Corollary|Proposition)\s+([A-Za-z_][\w']*)\s*", re.DOTALL)
_LINE_RE = re.compile(r"^\s*(?:[-*]\s*|\d+[.)]\s*)?(?:Lemma|Fact|Remark|Theorem|Claim)\s+[A-Za-z_][\w']*\s*:(?!=)\s*(.+?)\s*\.?\s*$")


def split_statement(statement: str) -> tuple[str, str]:
    """``(name, proposition)`` of ``Theorem name binders : prop.``; binders before the colon
    become a ``forall``, so the proposition is closed."""
    m = _DECL_RE.match(statement)
    if m is None:
        raise ValueError(f"not a Coq theorem statement: {statement[:80]!r}")
    rest = statement[m.end() :].strip()
    if rest.endswith("."):
        rest = rest[:-1].rstrip()
    depth = 0
    for i, ch in enumerate(rest):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == ":" and depth == 0 and rest[i : i + 2] != ":=":
            binders, prop = rest[:i].strip(), rest[i + 1 :].strip()
            return m.group(2), (f"forall {binders}, {prop}" if binders else prop)
    raise ValueError(f"no ':' in the statement {statement[:80]!r}")


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth < 0:
            return False
    return depth == 0


def parse_subgoals(text: str, max_subgoals: int = 8) -> list[str]:
    """The lemma statements of a planner's reply: lines ``Lemma name : statement.`` (also
    ``Fact``/``Claim``/..., an optional list marker in front); anything else is ignored, as are
    statements with unbalanced brackets, a ``:=`` (a definition, not a statement) or a second
    sentence. Deduplicated (whitespace-normalised), at most ``max_subgoals``."""
    out: list[str] = []
    for line in text.replace("```coq", "").replace("```", "").splitlines():
        m = _LINE_RE.match(line)
        if m is None:
            continue
        statement = " ".join(m.group(1).split())
        if not statement or ":=" in statement or ". " in statement or not _balanced(statement):
            continue
        if statement not in out:
            out.append(statement)
        if len(out) >= max_subgoals:
            break
    return out


class SubgoalPlanner(Protocol):
    """Proposes closed lemma statements that would help prove ``theorem``."""

    def plan(self, theorem: str, header: str, feedback: str) -> list[str]: ...


PLANNER_PROMPT = """You plan Coq proofs. Split the proof of the theorem below into at most {k} intermediate lemmas \
that are each easier to prove and together make the theorem easy. Each lemma must be a closed Coq statement \
(quantify every variable). Write one per line, exactly as `Lemma name : statement.`, and nothing else.

Context:
{header}

{theorem}
{feedback}"""


@dataclass
class LLMPlanner:
    """A planner from any chat :class:`~plyground.inference.base.Backend`: the prompt asks for
    ``Lemma name : statement.`` lines, which :func:`parse_subgoals` reads."""

    backend: Any
    params: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=256, temperature=0.7))
    max_subgoals: int = 4
    prompt: str = PLANNER_PROMPT
    calls: int = 0

    def chat(self, theorem: str, header: str, feedback: str) -> Chat:
        note = f"\nEarlier attempts failed:\n{feedback}\nPropose a different split." if feedback else ""
        text = self.prompt.format(k=self.max_subgoals, header=header.strip(), theorem=theorem.strip(), feedback=note)
        return [Message("user", text)]

    def plan(self, theorem: str, header: str, feedback: str) -> list[str]:
        self.calls += 1
        [[completion]] = self.backend.generate([self.chat(theorem, header, feedback)], self.params)
        return parse_subgoals(completion.text, self.max_subgoals)


@dataclass
class PlannerConfig:
    """How hard to try: plans, parallel provers, and the search each prover runs."""

    max_plans: int = 3
    """Planner calls per theorem (the first plan and the replans)."""
    max_subgoals: int = 4
    provers: int = 2
    """Searches run at once (threads, each with its own env; or Ray workers)."""
    direct_first: bool = True
    """Search the theorem itself before planning (and stop there if that proves it)."""
    search: BestFirstConfig = field(default_factory=lambda: BestFirstConfig(max_nodes=64, time_limit_s=120.0))
    check_timeout_s: float = 60.0
    """``coqc`` time limit for the final whole-script check."""

    def __post_init__(self) -> None:
        if self.max_plans < 1 or self.provers < 1 or self.max_subgoals < 1:
            raise ValueError("max_plans, provers and max_subgoals must be >= 1")


@dataclass
class Subgoal:
    """A lemma of a plan: its statement, and the tactics that proved it (``None`` if not proved)."""

    name: str
    statement: str
    tactics: list[str] | None = None
    error: str | None = None
    """Why it is not proved: the search failed, or Coq rejected the statement."""

    @property
    def proved(self) -> bool:
        return self.tactics is not None

    def coq(self) -> str:
        """``Lemma name : statement. Proof. tactics. Qed.``"""
        return f"Lemma {self.name} : {self.statement}.\nProof.\n{proof_script(self.tactics or [])}\nQed."


@dataclass
class PlannedProof:
    """The outcome of :func:`prove_with_subgoals` on one theorem."""

    task_id: str
    success: bool = False
    script: str = ""
    """The checked Coq file body (lemmas, planned theorem, theorem) after the header, or the direct
    proof's tactics; empty if not proved."""
    lemmas: list[Subgoal] = field(default_factory=list)
    """The lemmas the final proof uses (all proved) or, on failure, every lemma tried."""
    plans: list[list[str]] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    searches: list[SearchResult] = field(default_factory=list)
    """Every search run for this theorem (direct, lemmas, planned theorem), in order."""
    check: str = ""
    """The final ``coqc`` verdict's reason."""
    wall_s: float = 0.0

    @property
    def direct(self) -> bool:
        """Proved by the direct search, without a plan."""
        return self.success and not self.plans


class SubgoalProver:
    """Runs best-first searches on lemma tasks, ``provers`` at a time, sharing ``cache``.

    In-process: a thread pool; each thread takes an env from a pool filled by ``env_factory``
    (envs are reused across searches and closed by :meth:`close`). With ``ray_workers`` (Ray
    initialised), searches go to :func:`~plyground.search.ray_cache.SearchWorker` actors on
    ``env_id`` instead, and ``cache`` should be a ``RaySolvedCache`` (``shared_solved_cache()``
    gives one); the proposer is then pickled to each worker."""

    def __init__(
        self,
        env_factory: Callable[[], TextEnv],
        proposer: ActionProposer,
        config: PlannerConfig,
        cache: SolvedStates | None = None,
        ray_workers: int = 0,
        env_id: str = "Prove-v0",
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.env_factory = env_factory
        self.proposer = proposer
        self.config = config
        self.cache = cache if cache is not None else shared_solved_cache()
        self._envs: list[TextEnv] = []
        self._all_envs: list[TextEnv] = []
        self._lock = threading.Lock()
        # One proposer call at a time: a model backend need not be thread-safe.
        self._proposer_lock = threading.Lock()
        self._workers: list[Any] = []
        if ray_workers:
            from plyground.search.ray_cache import SearchWorker

            self._workers = [SearchWorker().remote(env_id, env_kwargs) for _ in range(ray_workers)]

    def _take_env(self) -> TextEnv:
        with self._lock:
            if self._envs:
                return self._envs.pop()
        env = self.env_factory()
        with self._lock:
            self._all_envs.append(env)
        return env

    def _give_env(self, env: TextEnv) -> None:
        with self._lock:
            self._envs.append(env)

    def _search_here(self, task: Task) -> SearchResult:
        env = self._take_env()
        try:
            return best_first(env, _Serialised(self.proposer, self._proposer_lock), self.config.search, self.cache,
                              options={"task": task}, env_id="Prove-v0")
        finally:
            self._give_env(env)

    def search_all(self, tasks: Sequence[Task]) -> list[SearchResult | BaseException]:
        """One search per task; an exception (a statement Coq rejects, say) is returned in its
        place rather than raised, so one bad lemma does not sink the others."""
        if self._workers:
            return self._search_ray(tasks)
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.config.provers) as pool:
            futures = [pool.submit(self._search_here, task) for task in tasks]
            out: list[SearchResult | BaseException] = []
            for future in futures:
                exc = future.exception()
                out.append(exc if exc is not None else future.result())
            return out

    def _search_ray(self, tasks: Sequence[Task]) -> list[SearchResult | BaseException]:
        import ray

        from plyground.types import Trajectory

        refs = [
            self._workers[i % len(self._workers)].search.remote(
                "bfs", self.proposer, self.config.search.max_calls or 10**9, None, {"task": task}, self.cache, self.config.search
            )
            for i, task in enumerate(tasks)
        ]
        out: list[SearchResult | BaseException] = []
        for ref in refs:
            try:
                data = ray.get(ref)
            except Exception as exc:  # reported per lemma, like the in-process path
                out.append(exc)
                continue
            trajectory = Trajectory.from_dict(data["trajectory"]) if data.get("trajectory") else None
            out.append(SearchResult(algo="bfs", env_id=data.get("env_id", ""), success=bool(data["success"]), trajectory=trajectory))
        return out

    def close(self) -> None:
        for env in self._all_envs:
            env.close()
        self._all_envs.clear()
        self._envs.clear()
        if self._workers:
            import ray

            for worker in self._workers:
                ray.kill(worker)
            self._workers = []

    def __enter__(self) -> SubgoalProver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Serialised:
    """A proposer behind a lock (searches on several threads share one model)."""

    def __init__(self, inner: ActionProposer, lock: threading.Lock) -> None:
        self.inner = inner
        self.lock = lock
        self.instructions = inner.instructions

    def prepare(self, env: TextEnv) -> None:
        with self.lock:
            self.inner.prepare(env)
            self.instructions = self.inner.instructions

    def propose(self, nodes: Sequence[Any], k: int) -> Any:
        with self.lock:
            return self.inner.propose(nodes, k)

    def usage(self) -> dict[str, float]:
        return self.inner.usage()


def _tactics(result: SearchResult) -> list[str] | None:
    if not result.success or result.trajectory is None:
        return None
    return [turn.action for turn in result.trajectory.turns]


def _key(statement: str) -> str:
    return " ".join(statement.split())


def prove_with_subgoals(
    task: Task,
    planner: SubgoalPlanner,
    prover: SubgoalProver,
    lemma_store: dict[str, list[str]] | None = None,
) -> PlannedProof:
    """Prove ``task`` (a Coq theorem: ``prompt`` = the statement, ``metadata["header"]``) with the
    plan-prove-replan loop described in the module docstring. ``lemma_store`` (statement ->
    tactics) carries proved lemmas from theorem to theorem; pass the same dict to every call."""
    start = time.perf_counter()
    config = prover.config
    store = lemma_store if lemma_store is not None else {}
    header = str(task.metadata.get("header", DEFAULT_HEADER))
    name, prop = split_statement(task.prompt)
    out = PlannedProof(task_id=task.id)

    def finish() -> PlannedProof:
        out.wall_s = time.perf_counter() - start
        return out

    if config.direct_first:
        [direct] = prover.search_all([task])
        if isinstance(direct, SearchResult):
            out.searches.append(direct)
            tactics = _tactics(direct)
            if tactics is not None:
                out.success, out.script, out.check = True, proof_script(tactics), "proved by the direct search"
                return finish()
    tried: dict[str, Subgoal] = {}
    for attempt in range(config.max_plans):
        statements = planner.plan(task.prompt, header, "\n".join(out.feedback))[: config.max_subgoals]
        out.plans.append(statements)
        if not statements:
            out.feedback.append(f"plan {attempt + 1}: no lemma could be read from the planner's reply")
            continue
        lemmas = [Subgoal(f"{name}_sg{len(tried) + i + 1}", s) for i, s in enumerate(statements)]
        todo = []
        for lemma in lemmas:
            if _key(lemma.statement) in store:
                lemma.tactics = list(store[_key(lemma.statement)])
            else:
                todo.append(lemma)
        lemma_tasks = [
            Task(id=f"{task.id}/{lemma.name}", prompt=f"Lemma {lemma.name} : {lemma.statement}.", metadata={"header": header})
            for lemma in todo
        ]
        for lemma, result in zip(todo, prover.search_all(lemma_tasks), strict=True):
            if isinstance(result, BaseException):
                lemma.error = f"{type(result).__name__}: {result}"
                continue
            out.searches.append(result)
            lemma.tactics = _tactics(result)
            if lemma.tactics is None:
                lemma.error = "not proved within the search budget"
            else:
                store[_key(lemma.statement)] = list(lemma.tactics)
        for lemma in lemmas:
            tried[lemma.name] = lemma
        proved = [lemma for lemma in lemmas if lemma.proved]
        failed = [f"`{lemma.statement}` ({lemma.error})" for lemma in lemmas if not lemma.proved]
        if not proved:
            out.feedback.append(f"plan {attempt + 1}: no lemma was proved: " + "; ".join(failed))
            continue
        premises = " -> ".join(f"({lemma.statement})" for lemma in proved)
        planned = Task(
            id=f"{task.id}/planned{attempt + 1}",
            prompt=f"Theorem {name}_planned : {premises} -> ({prop}).",
            metadata={"header": header},
        )
        [result] = prover.search_all([planned])
        if isinstance(result, BaseException):
            out.feedback.append(f"plan {attempt + 1}: Coq rejected the combined statement: {result}")
            continue
        out.searches.append(result)
        main_tactics = _tactics(result)
        if main_tactics is None:
            out.feedback.append(
                f"plan {attempt + 1}: the lemmas did not lead to a proof of the theorem"
                + (f"; unproved: {'; '.join(failed)}" if failed else "")
            )
            continue
        body = "\n\n".join(
            [lemma.coq() for lemma in proved]
            + [f"{planned.prompt}\nProof.\n{proof_script(main_tactics)}\nQed."]
        )
        verifier = CoqProofVerifier(header=header + "\n\n" + body, timeout_s=config.check_timeout_s)
        verdict = verifier.verify(Task(id=task.id, prompt=task.prompt), f"apply ({name}_planned {' '.join(lemma.name for lemma in proved)}).")
        out.check = verdict.reason
        if verdict.correct:
            out.success = True
            out.lemmas = proved
            out.script = f"{body}\n\n{task.prompt.strip()}\nProof.\napply ({name}_planned {' '.join(lemma.name for lemma in proved)}).\nQed."
            return finish()
        out.feedback.append(f"plan {attempt + 1}: the assembled proof failed the final check: {verdict.reason}")
    out.lemmas = list(tried.values())
    return finish()
