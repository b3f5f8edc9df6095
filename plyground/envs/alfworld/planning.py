"""Goal-relevant pruning of an ALFWorld PDDL problem, for the planner expert.

fast-downward's search over a whole ALFWorld scene can blow up: "put two mugs in a cabinet" in a
kitchen with 40 openable cabinets gives the planner as many interchangeable places to open, fill
and leave, and its greedy search wanders through them for minutes. The goal only concerns a few
things, so the expert first plans on a sub-problem that keeps

* the objects whose type the goal names (the target, a lamp), the objects the goal names, the
  objects the agent holds, and the objects whose type the actions that make a goal predicate true
  need (a knife to slice);
* the receptacles whose type those actions need (sink basin to clean, microwave to heat, fridge to
  cool), the receptacles that hold a kept object, and ``max_goal_receptacles`` receptacles of the
  type the goal names (all of them when ``None``);
* the agent, its location and the locations of the kept receptacles; every fact about these.

Every precondition and effect of ALFWorld's actions mentions only the action's parameters and
type constants, and the goal is existential, so a plan of the sub-problem is a plan of the whole
problem: removing objects only removes actions. The env plays such a plan in the real engine,
which checks each command and the win; when the sub-problem has no plan, the expert plans on
the whole problem (:meth:`plyground.envs.alfworld.engine.Engine.plan`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

# Facts are (predicate, args) in the planner's lower-case names, as TextWorld's state holds them.
Fact = tuple[str, tuple[str, ...]]

_TYPE_CONST = re.compile(r"\b([a-z0-9_]+type)\b")
_NEGATED = re.compile(r"\(not\s*\([^()]*\)\s*\)")
_GOAL_PREDICATES = ("isclean", "ishot", "iscool", "issliced", "ison", "istoggled")


@dataclass(frozen=True)
class GoalNeeds:
    """The types a goal (and the actions that reach it) involve: object types, receptacle types
    of the goal's place, and receptacle types of the tools the goal's actions need."""

    object_types: frozenset[str]
    goal_receptacle_types: frozenset[str]
    tool_receptacle_types: frozenset[str]


def goal_section(problem: str) -> str:
    """The ``(:goal ...)`` part of a PDDL problem, lower-cased."""
    start = problem.lower().find("(:goal")
    if start < 0:
        raise ValueError("the problem has no (:goal ...)")
    depth = 0
    for i in range(start, len(problem)):
        depth += {"(": 1, ")": -1}.get(problem[i], 0)
        if depth == 0:
            return problem[start:i + 1].lower()
    raise ValueError("unbalanced parentheses in the problem's goal")


def _actions(domain: str) -> list[tuple[str, str]]:
    """(precondition, effect) texts of each action of a PDDL domain, lower-cased; commented lines out."""
    text = "\n".join(line.split(";", 1)[0] for line in domain.lower().splitlines())
    out = []
    for block in text.split("(:action")[1:]:
        pre, _, eff = block.partition(":effect")
        out.append((pre.partition(":precondition")[2], eff))
    return out


def goal_needs(domain: str, goal: str, type_kinds: Mapping[str, str]) -> GoalNeeds:
    """What ``goal`` needs: the type constants it names, and those in the preconditions of the
    domain's actions that make one of its state predicates (``isClean``, ``isHot``, ...) true.

    ``type_kinds`` maps a type constant (``mugtype``) to ``otype`` or ``rtype``.
    """
    named = set(_TYPE_CONST.findall(goal))
    tools: set[str] = set()
    for predicate in _GOAL_PREDICATES:
        if f"({predicate} " not in goal:
            continue
        for pre, eff in _actions(domain):
            # Only actions that make the predicate true: drop the "(not (isCool ?o))" of heating.
            made_true = _NEGATED.sub("", eff)
            if re.search(rf"\({predicate}\s", made_true):
                tools.update(_TYPE_CONST.findall(pre))
    return GoalNeeds(
        object_types=frozenset(t for t in named | tools if type_kinds.get(t) == "otype"),
        goal_receptacle_types=frozenset(t for t in named if type_kinds.get(t) == "rtype"),
        tool_receptacle_types=frozenset(t for t in tools if type_kinds.get(t) == "rtype"),
    )


def prune_problem(facts: Iterable[Fact], kinds: Mapping[str, str], needs: GoalNeeds, goal: str,
                  max_goal_receptacles: int | None = None, domain_name: str = "alfred") -> str:
    """A PDDL problem with the current state ``facts`` restricted to what ``needs`` keeps.

    ``kinds`` maps every name to its PDDL type (``object``, ``receptacle``, ``location``, ``agent``,
    ``otype``, ``rtype``). With ``max_goal_receptacles=k``, only ``k`` receptacles of the goal's
    type are kept: first those that already hold a goal object, then those that can be used without
    opening them, then by name (so the choice is deterministic).
    """
    facts = sorted(set(facts))
    by_pred: dict[str, list[tuple[str, ...]]] = {}
    for pred, args in facts:
        by_pred.setdefault(pred, []).append(args)
    obj_type = {a[0]: a[1] for a in by_pred.get("objecttype", [])}
    rec_type = {a[0]: a[1] for a in by_pred.get("receptacletype", [])}
    where = {a[0]: a[1] for a in by_pred.get("inreceptacle", [])}
    opened = {a[0] for a in by_pred.get("opened", [])}
    openable = {a[0] for a in by_pred.get("openable", [])}

    named = set(re.findall(r"[a-z0-9_]+", goal))  # things a goal names outright are kept too
    objects = {o for o, t in obj_type.items() if t in needs.object_types or o in named}
    objects |= {a[1] for a in by_pred.get("holds", [])}
    receptacles = {r for r, t in rec_type.items() if t in needs.tool_receptacle_types or r in named}
    receptacles |= {where[o] for o in objects if o in where}
    goal_places = sorted(
        (r for r, t in rec_type.items() if t in needs.goal_receptacle_types),
        key=lambda r: (r not in receptacles, r in openable and r not in opened, r),
    )
    receptacles |= set(goal_places if max_goal_receptacles is None else goal_places[:max_goal_receptacles])
    locations = {a[1] for a in by_pred.get("atlocation", [])}
    locations |= {a[1] for a in by_pred.get("receptacleatlocation", []) if a[0] in receptacles}

    kept_of_kind = {"object": objects, "receptacle": receptacles, "location": locations}

    def kept(name: str) -> bool:
        kind = kinds.get(name)
        return kind not in kept_of_kind or name in kept_of_kind[kind]

    init = [f"({pred} {' '.join(args)})" for pred, args in facts if all(kept(a) for a in args)]
    names = sorted({a for _, args in facts for a in args if kept(a)})
    decl = [f"{n} - {kinds[n]}" for n in names]
    return (f"(define (problem pruned)\n(:domain {domain_name})\n(:objects\n" + "\n".join(decl)
            + "\n)\n(:init\n" + "\n".join(init) + "\n)\n" + goal + "\n)\n")


def solve(lib: Any, logic: Any, problem: str, infos: Mapping[str, Any]) -> list[str] | None:  # pragma: no cover - worker
    """fast-downward's plan for ``problem`` as commands, in a library copy ``lib`` of its own (not
    the one that holds the game's state); ``None`` when the planner finds no plan."""
    import fast_downward
    from fast_downward.interface import pddl2sas  # not the worker's memoised one: sub-problems are not reused
    from textworld.envs.pddl.logic import PddlState

    task, sas = pddl2sas(logic.domain, problem)
    _, sas_replan = pddl2sas(logic.domain, problem, optimize=True)
    lib.load_sas(sas.encode("utf-8"))
    if lib.check_goal():
        return []
    lib.load_sas_replan(sas_replan.encode("utf-8"))
    if not lib.replan(False):
        return None
    operators = (fast_downward.Operator * lib.get_last_plan_length())()
    lib.get_last_plan(operators)
    # TextWorld's own operator -> command mapping, given this task's actions.
    view = SimpleNamespace(_actions={a.name: a for a in task.actions}, _logic=logic)
    return list(PddlState.plan_to_templated_actions(view, [op.name for op in operators], infos))
