"""Text-Nav, as in LMRL-Gym: carry the stale food to the fridge in a small text-adventure house.

LMRL-Gym builds its house with TextWorld (eight rooms, three tables, a chest, a fridge, seven
things to carry) and scores the game: 1 when the stale food is in the fridge and the fridge is
closed. This module is a small text-game engine of its own for house definitions in TextWorld's
game-file format (the ``world`` facts, ``infos``, ``quests``, ``objective`` and ``metadata`` keys
of the benchmark's ``textnav_game.json``), so no TextWorld, Inform 7 or game compiler is needed.
The shipped house, ``data/textnav_house.json``, is the benchmark's house as its ``make_game.py``
builds it; a path to another game file in the same format (strict JSON or the Python-literal form
the benchmark's file is written in) can be passed instead.

:func:`shortest_plan` finds a shortest command sequence to the goal (breadth-first search over the
moves and the commands that touch the goal's things) and :class:`TextNavExpert` plays it.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from plyground.envs.core import EnvSnapshot, TextEnv

Fact = tuple[str, tuple[str, ...]]

DIRECTIONS = ("north", "south", "east", "west")
_OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}
_ABBREVIATIONS = {"n": "north", "s": "south", "e": "east", "w": "west"}
# TextWorld's types: room, container, supporter, portable object, food, key, door, thing.
PORTABLE_TYPES = frozenset({"o", "f", "k"})
EDIBLE_TYPES = frozenset({"f"})
INVENTORY = "I"
PLAYER = "P"
# The benchmark drops these from the admissible commands it shows (they change nothing).
_REDUNDANT = ("examine", "look", "inventory")
_TEMPLATE = re.compile(r"\[if .*?\[end if\]|\[[^\]]*\]", re.DOTALL)
HOUSE_FILE = "textnav_house.json"


# -- the house -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class House:
    """A parsed game file: the static map and things, the start state, the goal and the score.

    ``exits[room][direction]`` is the room that way (only passages marked ``free`` both ways);
    ``fixed_room`` places containers and supporters; ``start`` is the file's initial state.
    ``win`` holds one set of facts per scoring quest (each worth ``rewards[i]``); ``fail`` sets
    of facts end the game lost when they hold.
    """

    name: str
    names: Mapping[str, str]
    types: Mapping[str, str]
    descriptions: Mapping[str, str]
    rooms: tuple[str, ...]
    exits: Mapping[str, Mapping[str, str]]
    fixed_room: Mapping[str, str]
    start: HouseState
    locked: frozenset[str]
    win: tuple[tuple[Fact, ...], ...]
    rewards: tuple[float, ...]
    fail: tuple[tuple[Fact, ...], ...]
    static_facts: frozenset[Fact]
    objective: str
    walkthrough: tuple[str, ...] = ()

    @property
    def max_score(self) -> float:
        return float(sum(self.rewards))

    def room_id(self, name_or_id: str) -> str:
        """A room's id from its id or its name (any case)."""
        key = name_or_id.strip().lower()
        for room in self.rooms:
            if room.lower() == key or self.names[room].lower() == key:
                return room
        raise ValueError(f"unknown room {name_or_id!r}; rooms: {[self.names[r] for r in self.rooms]}")

    def portable(self) -> list[str]:
        return [i for i, t in self.types.items() if t in PORTABLE_TYPES]

    def containers(self) -> list[str]:
        return [i for i, t in self.types.items() if t == "c"]


@dataclass
class HouseState:
    """Where the player is, what holds each portable thing (a room, supporter, container or
    ``"I"``), which containers are closed, what was eaten, and the quests done."""

    player: str
    holder: dict[str, str]
    closed: set[str]
    eaten: set[str] = field(default_factory=set)
    done_quests: set[int] = field(default_factory=set)

    def key(self) -> tuple[Any, ...]:
        return (
            self.player,
            tuple(sorted(self.holder.items())),
            frozenset(self.closed),
            frozenset(self.eaten),
            frozenset(self.done_quests),
        )

    def copy(self) -> HouseState:
        return HouseState(
            self.player, dict(self.holder), set(self.closed), set(self.eaten), set(self.done_quests)
        )


def _facts(raw: Iterable[Mapping[str, Any]]) -> list[Fact]:
    return [(str(f["name"]), tuple(str(a["name"]) for a in f.get("arguments", ()))) for f in raw]


def _event_facts(event: Mapping[str, Any]) -> tuple[Fact, ...]:
    """The facts an event waits for: its trigger's preconditions (TextWorld's event format), else
    the postconditions of its last recorded action."""
    condition = event.get("condition")
    if isinstance(condition, Mapping) and condition.get("preconditions"):
        raw = condition["preconditions"]
    elif event.get("conditions"):
        raw = event["conditions"]
    elif event.get("actions"):
        raw = event["actions"][-1].get("postconditions", ())
    else:
        raw = ()
    return tuple(f for f in _facts(raw) if f[0] != "event")


def _plain(text: str | None) -> str:
    """A description without the Inform 7 ``[if ...]`` templates of TextWorld's game files."""
    return re.sub(r"\s+", " ", _TEMPLATE.sub("", text or "")).strip()


def read_game_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A game file in the upstream format: strict JSON, or the Python literal the benchmark's
    ``textnav_game.json`` is written as."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = ast.literal_eval(text)
    if not isinstance(data, dict) or "world" not in data or "infos" not in data:
        raise ValueError(f"{path}: not a TextWorld game file (needs 'world' and 'infos' keys)")
    return data


def parse_house(data: Mapping[str, Any], name: str = "custom") -> House:
    """A :class:`House` from a game file's dict (see :func:`read_game_file`)."""
    infos: dict[str, dict[str, Any]] = {}
    for entry in data["infos"]:
        key, info = (entry[0], entry[1]) if isinstance(entry, list | tuple) else (entry["id"], entry)
        infos[str(key)] = dict(info)
    types = {k: str(v.get("type") or "") for k, v in infos.items() if k not in (PLAYER, INVENTORY)}
    names = {k: str(v.get("name") or k) for k, v in infos.items()}
    world = _facts(data["world"])
    rooms = tuple(k for k, t in types.items() if t == "r")
    free = {args for n, args in world if n == "free" and len(args) == 2}
    exits: dict[str, dict[str, str]] = {r: {} for r in rooms}
    for n, args in world:  # "east_of(a, b)": a lies east of b, so "go east" from b leads to a
        direction = n.removesuffix("_of")
        if direction in DIRECTIONS and len(args) == 2:
            dest, src = args
            if src in exits and dest in exits and (src, dest) in free and (dest, src) in free:
                exits[src][direction] = dest
    player = next(
        (args[1] for n, args in world if n == "at" and args[0] == PLAYER), rooms[0] if rooms else ""
    )
    fixed_room: dict[str, str] = {}
    holder: dict[str, str] = {}
    closed: set[str] = set()
    locked: set[str] = set()
    for n, args in world:
        if n == "at" and len(args) == 2 and args[0] != PLAYER:
            if types.get(args[0]) in PORTABLE_TYPES:
                holder[args[0]] = args[1]
            else:
                fixed_room[args[0]] = args[1]
        elif n in ("in", "on") and len(args) == 2:
            holder[args[0]] = args[1]
        elif n == "closed" and args:
            closed.add(args[0])
        elif n == "locked" and args:
            closed.add(args[0])
            locked.add(args[0])
    win: list[tuple[Fact, ...]] = []
    rewards: list[float] = []
    fail: list[tuple[Fact, ...]] = []
    for quest in data.get("quests", ()):
        events = [_event_facts(e) for e in quest.get("win_events", ())]
        events = [e for e in events if e]
        if events:  # several win events: any one completes the quest; the first is the plan target
            win.append(events[0])
            rewards.append(float(quest.get("reward", 1)))
        fail.extend(f for f in (_event_facts(e) for e in quest.get("fail_events", ())) if f)
    if not rooms or not win:
        raise ValueError("a Text-Nav game needs rooms and at least one quest with a win event")
    metadata = data.get("metadata") or {}
    static = frozenset(f for f in world if f[0] not in ("at", "in", "on", "open", "closed", "locked"))
    return House(
        name=name,
        names=names,
        types=types,
        descriptions={k: _plain(v.get("desc")) for k, v in infos.items()},
        rooms=rooms,
        exits=exits,
        fixed_room=fixed_room,
        start=HouseState(player, holder, closed),
        locked=frozenset(locked),
        win=tuple(win),
        rewards=tuple(rewards),
        fail=tuple(fail),
        static_facts=static,
        objective=str(data.get("objective") or ""),
        walkthrough=tuple(metadata.get("walkthrough") or ()),
    )


def load_house(source: str | os.PathLike[str] | Mapping[str, Any] | House | None = None) -> House:
    """The shipped house (``None`` or ``"lmrl"``), a game file's path, its dict, or a House."""
    if isinstance(source, House):
        return source
    if isinstance(source, Mapping):
        return parse_house(source)
    if source is None or source == "lmrl":
        text = resources.files("plyground.envs.lmrl").joinpath("data", HOUSE_FILE).read_text(encoding="utf-8")
        return parse_house(json.loads(text), name="lmrl")
    return parse_house(read_game_file(source), name=Path(source).stem)


# -- the engine ----------------------------------------------------------------------------------
class Engine:
    """The rules: what a command does to a :class:`HouseState`, and what is seen."""

    def __init__(self, house: House) -> None:
        self.house = house

    # facts
    def holds(self, state: HouseState, fact: Fact) -> bool:
        name, args = fact
        if name == "at" and len(args) == 2:
            if args[0] == PLAYER:
                return state.player == args[1]
            return state.holder.get(args[0], self.house.fixed_room.get(args[0])) == args[1]
        if name in ("in", "on") and len(args) == 2:
            return args[0] not in state.eaten and state.holder.get(args[0]) == args[1]
        if name == "closed":
            return args[0] in state.closed and args[0] not in self.house.locked
        if name == "open":
            return args[0] not in state.closed
        if name == "locked":
            return args[0] in self.house.locked
        if name == "eaten":
            return args[0] in state.eaten
        return fact in self.house.static_facts

    def all_hold(self, state: HouseState, facts: Sequence[Fact]) -> bool:
        return all(self.holds(state, f) for f in facts)

    def won(self, state: HouseState) -> bool:
        return len(state.done_quests) == len(self.house.win)

    def lost(self, state: HouseState) -> bool:
        return any(self.all_hold(state, facts) for facts in self.house.fail)

    # what the player can see and reach
    def name(self, thing: str) -> str:
        return self.house.names.get(thing, thing)

    def room_things(self, state: HouseState) -> list[str]:
        """Containers and supporters in the player's room, in the file's order."""
        return [t for t, r in self.house.fixed_room.items() if r == state.player]

    def contents(self, state: HouseState, holder: str) -> list[str]:
        return [o for o, h in state.holder.items() if h == holder and o not in state.eaten]

    def visible(self, state: HouseState) -> list[str]:
        """Portable things the player can take: on the floor, on a supporter, in an open container."""
        seen = list(self.contents(state, state.player))
        for thing in self.room_things(state):
            if self.house.types.get(thing) == "s" or thing not in state.closed:
                seen.extend(self.contents(state, thing))
        return seen

    def admissible(self, state: HouseState) -> list[str]:
        """The commands that do something here, sorted (as TextWorld lists them), without the
        examine / look / inventory commands the benchmark leaves out."""
        names, types = self.house.names, self.house.types
        commands = [f"go {d}" for d in self.house.exits.get(state.player, {})]
        carried = self.contents(state, INVENTORY)
        for obj in self.contents(state, state.player):
            commands.append(f"take {names[obj]}")
        for thing in self.room_things(state):
            kind = types.get(thing)
            if kind == "c" and thing not in self.house.locked:
                commands.append(f"{'open' if thing in state.closed else 'close'} {names[thing]}")
            if kind == "s" or (kind == "c" and thing not in state.closed):
                verb = "put {} on {}" if kind == "s" else "insert {} into {}"
                commands.extend(f"take {names[o]} from {names[thing]}" for o in self.contents(state, thing))
                commands.extend(verb.format(names[o], names[thing]) for o in carried)
        for obj in carried:
            commands.append(f"drop {names[obj]}")
            if types.get(obj) in EDIBLE_TYPES:
                commands.append(f"eat {names[obj]}")
        return sorted(set(commands))

    def describe_room(self, state: HouseState, show_location: bool) -> str:
        names, types = self.house.names, self.house.types
        parts = [f"You are in the {names[state.player]}." if show_location else "You look around."]
        for thing in self.room_things(state):
            inside = self.contents(state, thing)
            if types.get(thing) == "s":
                parts.append(
                    f"There is a {names[thing]} here. On the {names[thing]} you see {_listing(inside, names)}."
                    if inside
                    else f"There is a {names[thing]} here, with nothing on it."
                )
            elif thing in state.closed:
                parts.append(f"There is a closed {names[thing]} here.")
            else:
                parts.append(
                    f"There is an open {names[thing]} here, holding {_listing(inside, names) or 'nothing'}."
                )
        floor = self.contents(state, state.player)
        if floor:
            parts.append(f"On the floor you see {_listing(floor, names)}.")
        exits = list(self.house.exits.get(state.player, {}))
        if not exits:
            parts.append("There are no exits.")
        else:
            parts.append(f"There {'is an exit' if len(exits) == 1 else 'are exits'} to the {_join(exits)}.")
        return " ".join(parts)

    def inventory(self, state: HouseState) -> str:
        carried = self.contents(state, INVENTORY)
        return (
            f"You are carrying {_listing(carried, self.house.names)}."
            if carried
            else "You are carrying nothing."
        )

    # commands
    def resolve(self, state: HouseState, noun: str, among: Iterable[str]) -> str | None:
        noun = re.sub(r"^(the|a|an|some)\s+", "", noun.strip())
        matches = [t for t in among if self.house.names.get(t, "").lower() == noun]
        return matches[0] if matches else None

    def apply(self, state: HouseState, command: str) -> tuple[str, bool]:
        """Carry out ``command`` (already normalised) on ``state`` in place: the feedback and
        whether the command was understood and possible."""
        names, types = self.house.names, self.house.types
        words = command.split()
        if not words:
            return "You have to say what to do.", False
        verb, rest = words[0], " ".join(words[1:])
        if verb in _ABBREVIATIONS and not rest:
            verb, rest = "go", _ABBREVIATIONS[verb]
        if verb in DIRECTIONS and not rest:
            verb, rest = "go", verb
        if verb == "go":
            direction = _ABBREVIATIONS.get(rest, rest)
            dest = self.house.exits.get(state.player, {}).get(direction)
            if direction not in DIRECTIONS:
                return "Go where? Say go north, go south, go east or go west.", False
            if dest is None:
                return "You can't go that way.", False
            state.player = dest
            return self.describe_room(state, show_location=False), True
        if command in ("look", "l"):
            return self.describe_room(state, show_location=False), True
        if command in ("inventory", "i", "inv"):
            return self.inventory(state), True
        if verb == "examine" or verb == "x":
            reachable = self.visible(state) + self.room_things(state) + self.contents(state, INVENTORY)
            thing = self.resolve(state, rest, reachable)
            if thing is None:
                return "You can't see any such thing.", False
            text = self.house.descriptions.get(thing) or f"It is an ordinary {names[thing]}."
            if types.get(thing) == "c":
                text += f" It is {'closed' if thing in state.closed else 'open'}."
            return text, True
        if verb == "take" or (verb == "pick" and rest.startswith("up ")) or verb == "get":
            rest = rest[3:] if verb == "pick" else rest
            obj_name, _, source_name = rest.partition(" from ")
            if self.resolve(state, obj_name, self.contents(state, INVENTORY)):
                return "You already have that.", False
            obj = self.resolve(state, obj_name, self.visible(state))
            if obj is None:
                return "You can't see any such thing.", False
            if source_name:
                source = self.resolve(state, source_name, self.room_things(state))
                if source is None or state.holder.get(obj) != source:
                    return f"The {names[obj]} is not there.", False
            if types.get(obj) not in PORTABLE_TYPES:
                return "That's fixed in place.", False
            where = state.holder[obj]
            state.holder[obj] = INVENTORY
            origin = "" if where == state.player else f" from the {names[where]}"
            return f"You take the {names[obj]}{origin}.", True
        if verb in ("put", "insert", "place"):
            match = re.fullmatch(r"(.+?)\s+(on|onto|in|into|inside)\s+(.+)", rest)
            if match is None:
                return f"{verb.capitalize()} what where? Say put X on Y or insert X into Y.", False
            obj = self.resolve(state, match.group(1), self.contents(state, INVENTORY))
            if obj is None:
                return "You are not carrying that.", False
            target = self.resolve(state, match.group(3), self.room_things(state))
            if target is None:
                return "You can't see any such thing to put it in or on.", False
            onto = match.group(2) in ("on", "onto")
            if types.get(target) == "s" and onto and verb != "insert":
                state.holder[obj] = target
                return f"You put the {names[obj]} on the {names[target]}.", True
            if types.get(target) == "c" and not onto:
                if target in state.closed:
                    return f"The {names[target]} is closed.", False
                state.holder[obj] = target
                return f"You put the {names[obj]} into the {names[target]}.", True
            how = "on" if types.get(target) == "s" else "into"
            return f"You can only put things {how} the {names[target]}.", False
        if verb == "drop":
            obj = self.resolve(state, rest, self.contents(state, INVENTORY))
            if obj is None:
                return "You are not carrying that.", False
            state.holder[obj] = state.player
            return f"You drop the {names[obj]} on the floor.", True
        if verb in ("open", "close"):
            target = self.resolve(state, rest, self.room_things(state))
            if target is None:
                return "You can't see any such thing.", False
            if types.get(target) != "c":
                return "That's not something you can open or close.", False
            if target in self.house.locked:
                return f"The {names[target]} is locked.", False
            if (verb == "open") == (target not in state.closed):
                return f"The {names[target]} is already {verb}{'ed' if verb == 'open' else 'd'}.", False
            if verb == "close":
                state.closed.add(target)
                return f"You close the {names[target]}.", True
            state.closed.discard(target)
            inside = self.contents(state, target)
            reveal = f", revealing {_listing(inside, names)}" if inside else ""
            return f"You open the {names[target]}{reveal}.", True
        if verb == "eat":
            obj = self.resolve(state, rest, self.contents(state, INVENTORY))
            if obj is None:
                return "You are not carrying that.", False
            if types.get(obj) not in EDIBLE_TYPES:
                return "That's plainly inedible.", False
            state.eaten.add(obj)
            del state.holder[obj]
            return f"You eat the {names[obj]}.", True
        return "That's not a command I recognise.", False

    def score(self, state: HouseState) -> float:
        """Mark the quests the state completes (a done quest stays done); the score."""
        for i, facts in enumerate(self.house.win):
            if i not in state.done_quests and self.all_hold(state, facts):
                state.done_quests.add(i)
        return float(sum(self.house.rewards[i] for i in state.done_quests))


def _listing(things: Sequence[str], names: Mapping[str, str]) -> str:
    return _join([f"{_article(names[t])} {names[t]}" for t in things])


def _article(name: str) -> str:
    if name.endswith("s") and not name.endswith("ss"):
        return "some"
    return "an" if name[:1].lower() in "aeiou" else "a"


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def normalize_command(action: str) -> str:
    """The command in a reply: its first non-empty line, lower-cased, without a ``>`` prompt,
    quotes, trailing punctuation or extra spaces. Replies such as ``Action: go west`` keep the
    part after the colon."""
    line = next((ln for ln in action.splitlines() if ln.strip()), "")
    line = line.strip().lstrip(">").strip()
    if re.match(r"^(action|command)\s*:", line, re.IGNORECASE):
        line = line.split(":", 1)[1]
    line = line.strip().strip("\"'`").strip().rstrip(".!")
    return re.sub(r"\s+", " ", line).lower()


# -- the env -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextNavState:
    """``TextNavEnv.snapshot()``: the house state plus what the base class tracks."""

    house_key: tuple[Any, ...]
    house_state: HouseState
    score: float
    turn: int
    done: bool
    last_observation: str
    actions: tuple[str, ...]
    options: dict[str, Any] | None
    episode_rng_state: dict[str, Any]
    rng_state: dict[str, Any]


class TextNavEnv(TextEnv):
    """
    ## Description
    LMRL-Gym's Text-Nav: a house of eight rooms (bedroom, living room, dining room, kitchen,
    garden, backyard, office, bathroom) with tables, a chest and a fridge. The objective: put the
    stale food from the table in the living room into the fridge in the kitchen, and close the
    fridge. Fully observed (``TextNav-v0``, the benchmark's ``display_location`` and
    ``display_inventory``): every observation names the room and lists what the agent carries.
    Partially observed (``TextNav-PO-v0``): room descriptions without the room's name and no
    inventory; the agent must track where it is and what it holds.

    ## Action Space
    Free text; the first non-empty line is the command (case and trailing punctuation ignored).
    Commands: ``go north|south|east|west`` (or the bare direction), ``take X``, ``take X from Y``,
    ``put X on Y``, ``insert X into Y``, ``drop X``, ``open Y``, ``close Y``, ``eat X``, and the
    free ``look``, ``inventory`` and ``examine X``. A command that is not understood or not
    possible is an invalid action: the game says why, nothing changes, the turn counts, and (as
    in the benchmark, where the reward is the game score) it costs nothing.

    ## Observation Space
    Text: the game's feedback (the new room's description after a move), then in the fully
    observed variant the location and inventory, then ``Admissible commands: ...`` (the benchmark
    lists them every turn, without examine / look / inventory). The first observation starts with
    the objective.

    ## Starting State
    The house of the game file; the player starts in a room drawn uniformly from all rooms with the
    env's ``np_random``, as the benchmark's game maker does (``random_start=False``: the file's
    start room). ``reset(options={"start_room": "kitchen"})`` sets it by name or id.

    ## Rewards
    The game score after each step, as the benchmark returns it: 0 until the stale food is in the
    closed fridge, then 1 on that step, which ends the game. For game files with several quests,
    ``reward="delta"`` gives each step's score increase instead of the running score.

    ## Episode End
    Terminated when the goal holds (success) or a failing event happens (the benchmark's house:
    eating the stale food). Truncated after ``max_steps`` turns (default 15, the benchmark's
    episode length in its data collection).

    ## Information
    ``success``, ``valid_action``, ``admissible_actions``, ``score``, ``max_score``, ``room`` and
    ``inventory`` (for tools and experts; the partially observed agent is not shown them), ``won``
    and ``lost``.

    ## Arguments
    ``house``: ``None`` (the shipped house), a path to a game file in the benchmark's format, its
    dict, or a :class:`House`. ``fully_observed`` (default True). ``max_steps`` (default 15).
    ``random_start`` (default True). ``reward``: ``"score"`` (default) or ``"delta"``.

    ## Version History
    - v0: first version. Differences from upstream: the engine is plyground's own, not TextWorld's
      Inform 7 games, so the wording of the feedback differs (TextWorld's room descriptions are
      generated text; here they list what is in the room and its exits); the fully observed
      variant states the location every turn, not only in room descriptions.
    """

    def __init__(
        self,
        house: str | os.PathLike[str] | Mapping[str, Any] | House | None = None,
        fully_observed: bool = True,
        max_steps: int = 15,
        random_start: bool = True,
        reward: str = "score",
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if reward not in ("score", "delta"):
            raise ValueError(f"reward must be 'score' or 'delta', got {reward!r}")
        self.house = load_house(house)
        self.engine = Engine(self.house)
        self.fully_observed = bool(fully_observed)
        self.max_steps = self.max_turns = int(max_steps)
        self.random_start = bool(random_start)
        self.reward_mode = reward
        self.reward_range = (0.0, max(self.house.max_score, 0.0))
        self.state = self.house.start.copy()
        self.score = 0.0
        objective = self.objective()
        seeing = (
            "Each turn you are told the game's response, the room you are in, what you are carrying "
            "and the commands that do something."
            if self.fully_observed
            else "Each turn you are told the game's response and the commands that do something; you "
            "are not told which room you are in or what you carry, so keep track of both."
        )
        self.instructions = (
            f"You are playing a text adventure in a house. {objective} {seeing} Reply with one command "
            "only, such as go west, take stale food from table, open fridge, insert stale food into "
            f"fridge or close fridge. You score 1 point when the goal is reached. You have {self.max_steps} "
            "turns."
        )

    def objective(self) -> str:
        return self.house.objective or "Your objective is to complete the quest."

    # -- dynamics ------------------------------------------------------------------------------
    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        state = self.house.start.copy()
        if "start_room" in options:
            state.player = self.house.room_id(str(options["start_room"]))
        elif self.random_start:
            state.player = self.house.rooms[int(rng.integers(len(self.house.rooms)))]
        self.state = state
        self.score = self.engine.score(state)
        obs = f"{self.objective()}\n\n{self.engine.describe_room(state, self.fully_observed)}"
        admissible = self.engine.admissible(state)
        return self._observe(obs, admissible), self._info(True, admissible)

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        command = normalize_command(action[:1000])
        before = self.score
        feedback, valid = self.engine.apply(self.state, command)
        self.score = self.engine.score(self.state)
        won, lost = self.engine.won(self.state), self.engine.lost(self.state)
        if self.score > before:
            gained = self.score - before
            feedback += f" Your score went up by {gained:g} point{'s' if gained != 1 else ''}."
        if won:
            feedback += (
                f"\n\n*** The End ***\nYou scored {self.score:g} out of a possible "
                f"{self.house.max_score:g}, in {self.turn} turn{'s' if self.turn != 1 else ''}."
            )
        elif lost:
            feedback += "\n\n*** You lost! ***"
        admissible = self.engine.admissible(self.state)
        obs = feedback if won or lost else self._observe(feedback, admissible)
        info = self._info(valid, admissible)
        info.update(success=won, won=won, lost=lost)
        reward = self.score if self.reward_mode == "score" else self.score - before
        return obs, reward, won or lost, info

    def _observe(self, feedback: str, admissible: list[str]) -> str:
        parts = [feedback]
        if self.fully_observed:
            parts.append(
                f"Location: {self.house.names[self.state.player]}. {self.engine.inventory(self.state)}"
            )
        parts.append("Admissible commands: " + ", ".join(admissible))
        return "\n".join(parts)

    def _info(self, valid: bool, admissible: list[str]) -> dict[str, Any]:
        names = self.house.names
        return {
            "valid_action": valid,
            "admissible_actions": admissible,
            "score": self.score,
            "max_score": self.house.max_score,
            "room": names[self.state.player],
            "inventory": [names[o] for o in self.engine.contents(self.state, INVENTORY)],
            "won": False,
            "lost": False,
        }

    # -- native snapshot: a few dicts and sets ---------------------------------------------------
    def snapshot(self) -> TextNavState:
        return TextNavState(
            house_key=self.state.key(),
            house_state=self.state.copy(),
            score=self.score,
            **self._episode_fields(),
        )

    def restore(self, state: Any) -> str:
        if isinstance(state, EnvSnapshot):
            return super().restore(state)
        if not isinstance(state, TextNavState):
            raise TypeError(f"TextNavEnv.restore expects a TextNavState, got {type(state).__name__}")
        self.state = state.house_state.copy()
        self.score = state.score
        self._restore_episode_fields(state)
        return state.last_observation


# -- the expert ----------------------------------------------------------------------------------
def shortest_plan(house: House, state: HouseState, max_states: int = 200_000) -> list[str] | None:
    """A shortest command sequence from ``state`` that wins, or None if none exists.

    Breadth-first search over moves, opening and closing containers, and the commands that move
    the things the goal names (carrying anything else never shortens a plan: nothing limits what
    the player carries). Plans that trigger a failing event are cut.
    """
    engine = Engine(house)
    relevant = (
        {a for facts in house.win for _, args in facts for a in args} - set(house.rooms) - {PLAYER, INVENTORY}
    )
    names = {house.names[t] for t in relevant}
    containers = {house.names[c] for c in house.containers()}

    def useful(command: str) -> bool:
        verb, _, rest = command.partition(" ")
        if verb == "go":
            return True
        if verb in ("open", "close"):
            return rest in containers
        if verb == "eat":
            return False
        return any(rest == n or rest.startswith(n + " ") for n in names)

    start = state.copy()
    engine.score(start)
    if engine.won(start):
        return []
    seen = {start.key()}
    queue: deque[tuple[HouseState, list[str]]] = deque([(start, [])])
    while queue and len(seen) < max_states:
        current, plan = queue.popleft()
        for command in engine.admissible(current):
            if not useful(command):
                continue
            nxt = current.copy()
            _, ok = engine.apply(nxt, command)
            if not ok:
                continue
            engine.score(nxt)
            if engine.lost(nxt):
                continue
            if engine.won(nxt):
                return [*plan, command]
            key = nxt.key()
            if key not in seen:
                seen.add(key)
                queue.append((nxt, [*plan, command]))
    return None


class TextNavExpert:
    """The shortest-plan policy for ``TextNavEnv``: wins every episode in the fewest commands.

    It reads the state from the env (the partially observed agent is not shown the room), plans
    with :func:`shortest_plan` and replans whenever the state is not the one its plan expected.
    ``reset()`` at the start of an episode, ``act(observation)`` after every observation.
    """

    def __init__(self, env: TextNavEnv) -> None:
        self.env = env
        self._plans: dict[tuple[Any, ...], list[str]] = {}

    def reset(self) -> None:
        """Nothing to forget: plans are cached by state."""

    def act(self, observation: str) -> str:
        key = self.env.state.key()
        plan = self._plans.get(key)
        if plan is None:
            found = shortest_plan(self.env.house, self.env.state)
            plan = found if found is not None else []
            # cache every suffix under the state it starts from
            state = self.env.state.copy()
            engine = self.env.engine
            for i, command in enumerate(plan):
                self._plans[state.key()] = plan[i:]
                engine.apply(state, command)
                engine.score(state)
        return plan[0] if plan else "look"
