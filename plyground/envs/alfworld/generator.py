"""Seeded ALFRED-style PDDL problems for the six ALFWorld task types, and official-format game files.

Scenes come from the layouts the ``alfworld`` wheel ships (``alfworld/gen/layouts``: the receptacles
of each AI2-THOR floor plan); objects are placed on them at random. Names follow ALFRED's mangled
form (``Apple_bar__plus_00_dot_10_bar_...``) so that ALFWorld's demangler turns them into
``apple 1``. A game is the JSON that ALFWorld's ``game.tw-pddl`` holds: the domain, the grammar with
the goal sentence, the problem, ``solvable`` and ``walkthrough``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
# Portable things and what can be done to them (clean / heat / cool).
_OBJECTS = {
    "Apple": "hcC", "Potato": "hcC", "Tomato": "hcC", "Egg": "hcC", "Bread": "hc", "Lettuce": "cC",
    "Mug": "hcC", "Cup": "hcC", "Plate": "hcC", "Bowl": "cC", "Pan": "cC", "Pot": "cC",
    "Fork": "C", "Spoon": "C", "Knife": "C", "Spatula": "C", "Ladle": "C", "DishSponge": "C",
    "Book": "", "CellPhone": "", "KeyChain": "", "Pen": "", "Pencil": "", "CreditCard": "",
    "Pillow": "", "Vase": "", "Statue": "", "AlarmClock": "", "CD": "", "Watch": "",
}
_PLACE_TARGETS = ("CounterTop", "DiningTable", "Shelf", "Cabinet", "Drawer", "SideTable", "Desk",
                  "Dresser", "CoffeeTable", "Bed", "Sofa", "Armchair", "GarbageCan", "Safe", "Fridge")
_OPENABLE = {"Cabinet", "Drawer", "Fridge", "Microwave", "Safe", "Box"}
_NEEDS = {
    "pick_clean_then_place_in_recep": ("SinkBasin", "C"),
    "pick_heat_then_place_in_recep": ("Microwave", "h"),
    "pick_cool_then_place_in_recep": ("Fridge", "c"),
}
_TEMPLATES = {
    "pick_and_place_simple": "put some {obj} on {recep}",
    "look_at_obj_in_light": "look at {obj} under the {toggle}",
    "pick_clean_then_place_in_recep": "put a clean {obj} in {recep}",
    "pick_heat_then_place_in_recep": "put a hot {obj} in {recep}",
    "pick_cool_then_place_in_recep": "put a cool {obj} in {recep}",
    "pick_two_obj_and_place": "put two {obj} in {recep}",
}


def _data_text(name: str) -> str:
    return resources.files("alfworld").joinpath("data", name).read_text()


def domain_text() -> str:
    return _data_text("alfred.pddl")


def grammar_text() -> str:
    return _data_text("alfred.twl2")


def layout_receptacles() -> dict[str, list[str]]:
    """Floor plan -> receptacle types (``Sink|...|SinkBasin`` counts as ``SinkBasin``)."""
    folder = resources.files("alfworld").joinpath("gen", "layouts")
    scenes: dict[str, list[str]] = {}
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith("-openable.json"):
            continue
        keys = json.loads(entry.read_text())
        types = ["SinkBasin" if k.endswith("SinkBasin") else k.split("|")[0] for k in keys]
        scenes[entry.name.removesuffix("-openable.json")] = types
    return scenes


def _mangle(kind: str, index: int, rng: np.random.Generator) -> str:
    x, y, z = (float(v) for v in rng.uniform(-3, 3, size=3))

    def num(v: float) -> str:
        sign = "plus" if v >= 0 else "minus"
        return f"_{sign}_{abs(v):05.2f}".replace(".", "_dot_")

    return f"{kind}_bar_{num(x)}_bar_{num(y)}_bar_{num(z)}{index:02d}"


@dataclass
class GeneratedGame:
    task_type: str
    scene: str
    params: dict[str, str]
    goal_text: str
    problem: str
    data: dict[str, Any]


def generate_game(task_type: str, rng: np.random.Generator) -> GeneratedGame:
    """One seeded problem of ``task_type`` in a random shipped floor plan."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}; one of {TASK_TYPES}")
    scenes = layout_receptacles()
    need = _NEEDS.get(task_type)
    names = sorted(s for s, recs in scenes.items() if need is None or need[0] in recs)
    scene = names[int(rng.integers(len(names)))]
    rtypes = list(dict.fromkeys(scenes[scene]))
    recs: list[tuple[str, str]] = []  # (pddl name, type)
    for i, rt in enumerate(scenes[scene]):
        recs.append((_mangle(rt if rt != "SinkBasin" else "Sink", i, rng) + ("_bar_SinkBasin" if rt == "SinkBasin" else ""), rt))
    flag = need[1] if need else ""
    candidates = sorted(o for o, f in _OBJECTS.items() if flag in f)
    target = candidates[int(rng.integers(len(candidates)))]
    places = [rt for rt in rtypes if rt in _PLACE_TARGETS and (need is None or rt != need[0])]
    if not places:
        places = [rt for rt in rtypes if rt != (need[0] if need else None)]
    parent = places[int(rng.integers(len(places)))]
    holders = [r for r in recs if r[1] not in ("Microwave", "Fridge", "SinkBasin", parent)] or recs
    objects: list[tuple[str, str, str]] = []  # (name, type, receptacle)
    n_target = 2 if task_type == "pick_two_obj_and_place" else 1
    n_target += int(rng.integers(0, 2))
    for k in range(n_target):
        objects.append((_mangle(target, k, rng), target, holders[int(rng.integers(len(holders)))][0]))
    distractors = sorted(o for o in _OBJECTS if o != target)
    for k in range(int(rng.integers(3, 8))):
        kind = distractors[int(rng.integers(len(distractors)))]
        objects.append((_mangle(kind, 50 + k, rng), kind, recs[int(rng.integers(len(recs)))][0]))
    toggle = ""
    if task_type == "look_at_obj_in_light":
        toggle = "DeskLamp" if rng.random() < 0.5 else "FloorLamp"
        objects.append((_mangle(toggle, 90, rng), toggle, holders[int(rng.integers(len(holders)))][0]))
    params = {"object_target": target, "parent_target": parent if task_type != "look_at_obj_in_light" else "",
              "mrecep_target": "", "toggle_target": toggle, "object_sliced": ""}
    goal_text = _TEMPLATES[task_type].format(obj=target.lower(), recep=parent.lower(), toggle=toggle.lower())
    problem = _problem(task_type, recs, objects, target, parent, toggle, rng)
    grammar = grammar_text().replace("UNKNOWN GOAL", goal_text)
    data = {"pddl_domain": domain_text(), "grammar": grammar, "pddl_problem": problem, "solvable": True, "walkthrough": None}
    return GeneratedGame(task_type, scene, params, goal_text, problem, data)


def _problem(task_type: str, recs: list[tuple[str, str]], objects: list[tuple[str, str, str]],
             target: str, parent: str, toggle: str, rng: np.random.Generator) -> str:
    loc = {r: f"loc_bar_{i}_bar_{int(rng.integers(-9, 9))}_bar_{90 * int(rng.integers(4))}_bar_30" for i, (r, _) in enumerate(recs)}
    start = "loc_bar_start_bar_0_bar_0_bar_30"
    otypes = sorted({t for _, t, _ in objects})
    rtypes = sorted({t for _, t in recs})
    decl = ["agent1 - agent"] + [f"{t}Type - otype" for t in otypes] + [f"{t}Type - rtype" for t in rtypes]
    decl += [f"{n} - object" for n, _, _ in objects] + [f"{r} - receptacle" for r, _ in recs]
    decl += [f"{v} - location" for v in sorted(set(loc.values()))] + [f"{start} - location"]
    init = [f"(atLocation agent1 {start})"]
    for r, t in recs:
        init += [f"(receptacleAtLocation {r} {loc[r]})", f"(receptacleType {r} {t}Type)"]
        if t in _OPENABLE:
            init.append(f"(openable {r})")
    for rt in rtypes:
        for ot in otypes:
            if ot not in ("DeskLamp", "FloorLamp"):
                init.append(f"(canContain {rt}Type {ot}Type)")
    for n, t, r in objects:
        init += [f"(inReceptacle {n} {r})", f"(objectAtLocation {n} {loc[r]})", f"(objectType {n} {t}Type)"]
        if t in ("DeskLamp", "FloorLamp"):
            init.append(f"(toggleable {n})")
            continue
        init.append(f"(pickupable {n})")
        flags = _OBJECTS[t]
        for letter, pred in (("h", "heatable"), ("c", "coolable"), ("C", "cleanable")):
            if letter in flags:
                init.append(f"({pred} {n})")
    goal = _goal(task_type, target, parent, toggle)
    return ("(define (problem plan_trial)\n(:domain alfred)\n(:objects\n" + "\n".join(decl) + "\n)\n(:init\n"
            + "\n".join(init) + "\n)\n" + goal + "\n)\n")


def _goal(task_type: str, obj: str, recep: str, toggle: str) -> str:
    place = f"(objectType ?o {obj}Type) (receptacleType ?r {recep}Type) (inReceptacle ?o ?r)"
    if task_type == "pick_and_place_simple":
        body = f"(exists (?r - receptacle) (exists (?o - object) (and {place})))"
    elif task_type == "pick_clean_then_place_in_recep":
        body = f"(exists (?r - receptacle) (exists (?o - object) (and {place} (isClean ?o))))"
    elif task_type == "pick_heat_then_place_in_recep":
        body = f"(exists (?r - receptacle) (exists (?o - object) (and {place} (isHot ?o))))"
    elif task_type == "pick_cool_then_place_in_recep":
        body = f"(exists (?r - receptacle) (exists (?o - object) (and {place} (isCool ?o))))"
    elif task_type == "pick_two_obj_and_place":
        body = (f"(exists (?r - receptacle) (exists (?o - object) (exists (?p - object) (and {place} "
                f"(not (= ?o ?p)) (objectType ?p {obj}Type) (inReceptacle ?p ?r)))))")
    else:
        body = (f"(exists (?a - agent) (exists (?l - location) (exists (?o - object) (exists (?t - object) "
                f"(and (objectType ?o {obj}Type) (holds ?a ?o) (objectType ?t {toggle}Type) (toggleable ?t) "
                f"(isOn ?t) (objectAtLocation ?t ?l) (atLocation ?a ?l))))))")
    return f"(:goal (and {body}))"


def write_official_game(game: GeneratedGame, root: str | Path, split: str = "valid_seen", trial: str = "trial_T20190101_000000_000000") -> Path:
    """Write ``game`` as ALFWorld lays games out; returns the ``game.tw-pddl`` path."""
    p = game.params
    folder = Path(root) / split / (
        f"{game.task_type}-{p['object_target']}-{p['mrecep_target'] or 'None'}-{p['parent_target'] or p['toggle_target']}-{game.scene.removeprefix('FloorPlan')}"
    ) / trial
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "initial_state.pddl").write_text(game.problem)
    traj = {"task_id": trial, "task_type": game.task_type, "pddl_params": {**p, "object_sliced": False},
            "scene": {"floor_plan": game.scene}, "turk_annotations": {"anns": [{"task_desc": game.goal_text}]}}
    (folder / "traj_data.json").write_text(json.dumps(traj, indent=1))
    path = folder / "game.tw-pddl"
    path.write_text(json.dumps(game.data))
    return path


def find_games(root: str | Path, task_types: tuple[str, ...] = TASK_TYPES) -> list[Path]:
    """The game files under ``root`` that ALFWorld's loader would keep (see LAYOUT.md)."""
    found = []
    for traj in sorted(Path(root).rglob("traj_data.json")):
        folder = traj.parent
        if "movable" in str(folder) or "Sliced" in str(folder):
            continue
        if json.loads(traj.read_text()).get("task_type") not in task_types:
            continue
        game = folder / "game.tw-pddl"
        if not game.exists():
            continue
        if not json.loads(game.read_text()).get("solvable"):
            continue
        found.append(game)
    return found
