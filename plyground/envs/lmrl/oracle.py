"""The other party in LMRL-Gym's dialogue games: an ``Oracle`` answers the agent's lines.

Twenty Questions, Guess My City and Car Dealer put the agent in a conversation with a simulated
partner (in the benchmark, a fine-tuned T5 answerer or an LLM buyer). Here that partner is an
:class:`Oracle`: ``answer(question, secret, history) -> str``, where ``secret`` is what only the
oracle knows (the hidden object, the hidden city, the buyer's budget and wishes) and ``history``
the earlier ``(agent line, oracle line)`` pairs. Two kinds ship:

- :class:`LLMOracle`: any plyground inference ``Backend`` given the game's role prompt
  (``TWENTY_QUESTIONS_ROLE``, ``GUESS_CITY_ROLE``, ``CAR_BUYER_ROLE``), greedy decoding, short
  replies and a time limit. The backend is a backend object, a registered backend name
  (``"hf"``, ``"openai"``, ...) or a backend spec ``{"name": ..., **kwargs}`` as
  :func:`plyground.scale.backend_from_spec` reads it (``{"name": "scripted", "policy":
  "module:function"}`` too); see :func:`oracle_backend_source`. A name or spec is checked when the
  oracle is made and built on the first answer (loading a model costs), and closed with the
  oracle. If the backend fails (it cannot be built, an exception, a timeout, an empty reply) the
  oracle gives its ``fallback`` answer and records why in ``last_error``; the envs copy that into
  ``info["oracle_error"]``.
- Deterministic rule-based oracles over attribute tables, for tests, scripted policies and cheap
  runs: :class:`TwentyQuestionsRuleOracle` (yes/no over object attributes),
  :class:`CityRuleOracle` (open and yes/no questions over city attributes) and
  :class:`RuleBuyer` (a car buyer with a budget and preferences who reads offers). They parse
  common question forms with regular expressions; anything they cannot place gets
  ``"I don't know."`` (never an exception).
"""

from __future__ import annotations

import concurrent.futures
import copy
import inspect
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from plyground.errors import UnknownNameError
from plyground.types import Chat, Message, SamplingParams

History = Sequence[tuple[str, str]]

YES, NO, UNKNOWN = "Yes.", "No.", "I don't know."


@runtime_checkable
class Oracle(Protocol):
    """Answers one line of the agent given the secret and the conversation so far.

    An oracle may also have ``last_error: str | None``: why its last answer is a fallback (the
    envs report it as ``info["oracle_error"]``).
    """

    def answer(self, question: str, secret: Any, history: History) -> str: ...


# -- role prompts (the benchmark's roles, in plyground's words) ----------------------------------
TWENTY_QUESTIONS_ROLE = (
    "You are the answerer in a game of twenty questions. The hidden object is: {secret}. The "
    "player asks yes/no questions to find it. Answer each question truthfully about the hidden "
    "object with a single word, Yes or No, and nothing else. If the player names the hidden object "
    "(or another name for it), answer Yes."
)
GUESS_CITY_ROLE = (
    "You are the answerer in a game where the player must find a hidden city. The hidden city is: "
    "{secret}. The player asks questions about it, open or yes/no. Answer each question truthfully "
    "in one short sentence, without ever saying the city's name or its country's name. If the "
    "player names the hidden city, answer: Yes."
)
CAR_BUYER_ROLE = (
    "You are a customer at a car dealership, talking with the dealer. About you: {secret}. Reply "
    "to the dealer's last message in one or two sentences, in character. Do not pay more than your "
    "budget. Ask about the cars you want, bargain over the price, and decide whether to buy. When "
    "you decide, end your reply with exactly one line: 'Output: Decision=Accept MSRP=$<list "
    "price> Buy Price=$<agreed price>' if you buy, or 'Output: Decision=Reject MSRP=$<list "
    "price>' if you leave."
)


def yes_no(text: str) -> str:
    """A reply reduced to ``"Yes."`` or ``"No."``, as the benchmark post-processes its oracle
    (a reply that does not start with yes or no counts as no)."""
    head = text.strip().lower()
    if head.startswith("yes"):
        return YES
    return NO


# The backend names a spec may give besides the registered ones (``backend_from_spec`` builds it).
SCRIPTED = "scripted"


def oracle_backend_source(backend: Any, model: str | None = None) -> Any:
    """Check what ``oracle_backend=`` was given; return the backend object to use as given, or a
    backend spec dict (``{"name": ..., **kwargs}``) to build on first use.

    Accepted: an object with a ``generate`` method (a ``Backend``); a registered backend name
    (``"hf"``, ``"openai"``, ...; what ``--env-arg oracle_backend=openai`` passes); or a mapping
    with a ``"name"`` and the backend's keyword arguments (``{"name": "openai", "model":
    "gpt-4o-mini", "base_url": "http://..."}``; ``{"name": "scripted", "policy":
    "module:function"}``). ``model`` (an env's ``oracle_model=``) fills the spec's ``"model"``
    (``oracle_backend="hf", oracle_model="tiny"``); it applies to a name or spec only.

    Anything else raises here, where the env is made, rather than in ``step``: ``ValueError`` for
    a value of the wrong kind or an incomplete spec, ``UnknownNameError`` for a name that is not a
    registered backend.
    """
    if model is not None and not isinstance(model, str):
        raise ValueError(f"oracle_model must be a model name (a string), got {type(model).__name__} {model!r}")
    if not isinstance(backend, (str, Mapping)):
        if not callable(getattr(backend, "generate", None)):
            raise ValueError(
                "oracle_backend must be an inference backend (an object with generate()), a backend "
                f"name or a spec {{'name': ..., **kwargs}}; got {type(backend).__name__} {backend!r:.80}"
            )
        if model is not None:
            raise ValueError("oracle_model applies to a backend name or spec, not to a backend object")
        return backend
    spec: dict[str, Any] = {"name": backend} if isinstance(backend, str) else dict(backend)
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an oracle backend spec needs a 'name' (a backend name), got {backend!r:.200}")
    spec["name"] = name = name.strip()
    if model is not None:
        if spec.get("model", model) != model:
            raise ValueError(f"oracle_model={model!r} contradicts the spec's model {spec['model']!r}")
        spec["model"] = model
    if name == SCRIPTED:
        if "policy" not in spec:
            raise ValueError(
                "the scripted oracle backend needs a policy: {'name': 'scripted', 'policy': 'module:function'}"
            )
        return spec
    from plyground.inference.base import list_backends

    if name not in list_backends():
        raise UnknownNameError("oracle backend", name, [*list_backends(), SCRIPTED])
    _check_backend_arguments(name, {k: v for k, v in spec.items() if k != "name"})
    return spec


def _check_backend_arguments(name: str, kwargs: dict[str, Any]) -> None:
    """Fail now on arguments the backend's constructor would refuse when the oracle builds it
    (``oracle_backend="openai"`` without a model), rather than on every answer later. Costs the
    import of the backend's module, not the build."""
    from plyground.inference.base import backend_factory

    try:
        signature = inspect.signature(backend_factory(name))
    except (ImportError, AttributeError, TypeError, ValueError):
        return  # nothing to check against: the build reports it
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        raise ValueError(f"oracle backend {name!r}: {exc} (arguments given: {sorted(kwargs) or 'none'})") from None


class _SharedBackends:
    """Oracle backends built from specs, one per distinct spec, shared by the oracles alive at the
    same time in this process and closed when the last of them lets go. Concurrent episodes each
    make an env (the rollout collector makes ``concurrency`` of them per batch): without sharing,
    each would load its own copy of the oracle model. A backend object passed in is never shared
    or closed here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, tuple[Any, int]] = {}

    @staticmethod
    def _key(spec: dict[str, Any]) -> str:
        return json.dumps(spec, sort_keys=True, default=repr)

    def acquire(self, spec: dict[str, Any]) -> Any:
        """The backend of ``spec``, built on the first acquire (raises what the build raises)."""
        from plyground.scale.ray_workers import backend_from_spec

        key = self._key(spec)
        with self._lock:  # one build per spec: oracles asking at once wait for it
            backend, users = self._live.get(key, (None, 0))
            if backend is None:
                backend = backend_from_spec(spec)
            self._live[key] = (backend, users + 1)
            return backend

    def release(self, spec: dict[str, Any], backend: Any) -> None:
        """One user fewer; the last one closes the backend."""
        key = self._key(spec)
        with self._lock:
            live, users = self._live.get(key, (None, 0))
            if live is backend and users > 1:
                self._live[key] = (live, users - 1)
                return
            if live is backend:
                del self._live[key]
        backend.close()


_SHARED = _SharedBackends()


class LLMOracle:
    """An oracle played by an inference backend given a role prompt.

    ``backend`` is a backend object (used as given; its owner closes it), or a registered backend
    name or spec dict (checked now by :func:`oracle_backend_source`, built on the first answer,
    shared with the other live oracles of the same spec and closed by the last one's
    :meth:`close`; a build that fails gives the fallback with the reason in ``last_error`` on
    every answer, without retrying). ``role_prompt`` is the system message;
    ``{secret}`` in it is replaced by ``describe(secret)`` (default ``str``). Each answer sends the
    role prompt, the earlier exchanges (agent lines as user messages, answers as assistant
    messages) and the new line.
    Decoding is greedy (``temperature=0``) with at most ``max_tokens`` tokens; ``postprocess``
    (e.g. :func:`yes_no`) shapes the reply. A call that raises, takes longer than ``timeout_s``
    or returns nothing gives ``fallback`` and sets ``last_error``; a good answer clears it.
    """

    def __init__(
        self,
        backend: Any,
        role_prompt: str,
        *,
        describe: Callable[[Any], str] = str,
        postprocess: Callable[[str], str] | None = None,
        fallback: str = UNKNOWN,
        max_tokens: int = 48,
        timeout_s: float = 60.0,
        max_history: int = 50,
    ) -> None:
        source = oracle_backend_source(backend)
        # A spec is built on the first answer (``backend`` stays None until then) and owned.
        self.backend_spec: dict[str, Any] | None = source if isinstance(source, dict) else None
        self.backend: Any = None if self.backend_spec is not None else source
        self._build_error: str | None = None
        self.role_prompt = role_prompt
        self.describe = describe
        self.postprocess = postprocess
        self.fallback = fallback
        self.params = SamplingParams(max_tokens=max_tokens, temperature=0.0, n=1, logprobs=False)
        self.timeout_s = float(timeout_s)
        self.max_history = max_history
        self.last_error: str | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def chat(self, question: str, secret: Any, history: History) -> Chat:
        """The messages sent to the backend for one answer."""
        messages: Chat = [Message("system", self.role_prompt.replace("{secret}", self.describe(secret)))]
        for line, reply in list(history)[-self.max_history :]:
            messages += [Message("user", line), Message("assistant", reply)]
        messages.append(Message("user", question))
        return messages

    def _ensure_backend(self) -> Any:
        """The backend, built from the spec on first use; None when that build failed."""
        if self.backend is None and self.backend_spec is not None and self._build_error is None:
            try:
                self.backend = _SHARED.acquire(self.backend_spec)
            except Exception as exc:  # a build failure is the oracle's failure, never the step's
                self._build_error = (
                    f"the oracle backend {self.backend_spec['name']!r} could not be built: {type(exc).__name__}: {exc}"
                )
        return self.backend

    def answer(self, question: str, secret: Any, history: History) -> str:
        chat = self.chat(question, secret, history)
        backend = self._ensure_backend()
        if backend is None:
            return self._fail(self._build_error or "the oracle backend is not available")
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="oracle")
        try:
            future = self._pool.submit(backend.generate, [chat], self.params)
            completions = future.result(timeout=self.timeout_s)
            text = completions[0][0].text.strip()
        except concurrent.futures.TimeoutError:
            # The stuck call keeps the worker; the next answer gets a fresh one.
            self._pool.shutdown(wait=False)
            self._pool = None
            return self._fail(f"the oracle backend took longer than {self.timeout_s:g} s")
        except Exception as exc:  # any backend failure becomes the fallback answer, by contract
            return self._fail(f"the oracle backend failed: {type(exc).__name__}: {exc}")
        if not text:
            return self._fail("the oracle backend returned an empty reply")
        self.last_error = None
        return self.postprocess(text) if self.postprocess else text

    def _fail(self, reason: str) -> str:
        self.last_error = reason
        return self.fallback

    def close(self) -> None:
        """Stop the worker thread, and let go of a backend built from a spec (the last oracle
        using it closes it)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        if self.backend_spec is not None and self.backend is not None:
            backend, self.backend = self.backend, None
            _SHARED.release(self.backend_spec, backend)


# -- text helpers ----------------------------------------------------------------------------------
_NON_WORD = re.compile(r"[^a-z0-9$'\- ]+")
_SPACES = re.compile(r"\s+")
# How a guess or an "is it a ..." question starts; stripped before comparing the rest to names.
_LEAD = re.compile(
    r"^(?:(?:so|ok|okay|then|well|hmm|alright|and|now)\s+)*"
    r"(?:is it|is this|is that|is the (?:object|thing|answer|word|item|city)|is your (?:object|thing|word|city)|"
    r"are they|are these|are those|could it be|can it be|might it be|would it be|it is|it's|its|"
    r"my guess is|i guess|i think it is|i think it's|the answer is|is the hidden (?:object|city)|"
    r"is the city|is your city|are you)\s+(?:maybe\s+|perhaps\s+|possibly\s+)?"
)
_ARTICLE = re.compile(r"^(?:a|an|the|some|one)\s+")
_KIND_OF = re.compile(r"^(?:(?:a|an|some)\s+)?(?:kind|type|sort|form|piece|item|article) of\s+")
# The first word of a question the benchmark's asker accepts (its ``asker_postproc``), widened.
QUESTION_STARTS = frozenset(
    [
        "is",
        "does",
        "can",
        "do",
        "are",
        "could",
        "would",
        "will",
        "has",
        "have",
        "was",
        "were",
        "did",
        "should",
        "may",
        "might",
        "isn't",
        "doesn't",
        "can't",
        "aren't",
    ]
)
MAX_QUESTION_WORDS = 40


def normalize(text: str) -> str:
    """Lower case, punctuation to spaces (hyphens, apostrophes and $ kept), spaces collapsed."""
    text = text.lower().replace("\u2019", "'")
    return _SPACES.sub(" ", _NON_WORD.sub(" ", text)).strip()


def question_remainder(question: str) -> tuple[str, bool]:
    """What follows "is it (a)" in a question, and whether an article was there.

    ``"Is it an apple?"`` gives ``("apple", True)``; ``"Is it orange?"`` ``("orange", False)``.
    A line without a known lead is returned whole (a bare ``"Apple?"`` is a guess too).
    """
    text = normalize(question)
    text = _LEAD.sub("", text, count=1)
    text = re.sub(r"\s+(?:maybe|perhaps|then|right)$", "", text)
    stripped = _ARTICLE.sub("", text, count=1)
    return stripped, stripped != text


def names_match(remainder: str, names: Sequence[str]) -> bool:
    """Whether ``remainder`` is one of ``names`` (normalised), allowing a plural or an article."""
    remainder = _ARTICLE.sub("", remainder, count=1)
    for name in names:
        n = normalize(name)
        if remainder in (n, n + "s", n + "es") or (n.endswith("s") and remainder == n[:-1]):
            return True
    return False


def is_question(text: str) -> bool:
    """A line the benchmark's asker would send: non-empty, at most 40 words, and starting with
    a yes/no question word (is, does, can, ...); a bare name ending in "?" also counts."""
    words = normalize(text).split()
    if not words or len(words) > MAX_QUESTION_WORDS:
        return False
    return words[0] in QUESTION_STARTS or (text.strip().endswith("?") and len(words) <= 4)


# -- Twenty Questions ------------------------------------------------------------------------------
SIZES = ("tiny", "small", "medium", "large", "huge")
# Reference things for size comparisons: the index of the smallest size bigger than them.
_SIZE_REFS = {
    1: "pocket coin hand phone matchbox key ring marble",
    2: "breadbox bread box loaf shoebox shoe box football ball book laptop microwave cat toaster",
    3: "person human man woman adult child kid chair dog desk bicycle",
    4: "car house building room bus truck elephant tree",
}
_SIZE_REF = {word: b for b, words in _SIZE_REFS.items() for word in words.split()}
_MATERIALS = {
    "metal": "metal metallic iron steel aluminum aluminium tin gold silver copper",
    "wood": "wood wooden timber",
    "plastic": "plastic",
    "glass": "glass",
    "paper": "paper cardboard",
    "fabric": "fabric cloth cotton wool textile",
    "leather": "leather",
    "rubber": "rubber",
    "stone": "stone rock",
    "ceramic": "ceramic porcelain clay",
    "water": "water",
    "flesh": "flesh meat",
    "wax": "wax",
    "gas": "gas",
}
_MATERIAL = {word: key for key, words in _MATERIALS.items() for word in words.split()}
_LOCATIONS = {
    "kitchen": "kitchen kitchens",
    "home": "house houses home homes household bedroom bathroom living-room",
    "office": "office offices school schools classroom",
    "garden": "garden gardens yard backyard park",
    "farm": "farm farms barn",
    "wild": "wild jungle forest forests zoo savanna savannah desert woods",
    "water": "water ocean oceans sea lake river pond",
    "road": "road roads street streets highway city",
    "sky": "sky air space",
}
_LOCATION = {word: key for key, words in _LOCATIONS.items() for word in words.split()}
_INDOOR = frozenset({"kitchen", "home", "office"})
_COLORS = {
    "red": "red",
    "green": "green",
    "blue": "blue",
    "yellow": "yellow",
    "orange": "orange",
    "white": "white",
    "black": "black",
    "brown": "brown",
    "grey": "grey gray",
    "pink": "pink",
    "purple": "purple violet",
    "silver": "silver",
    "gold": "gold golden",
    "clear": "clear transparent see-through",
}
_COLOR = {word: key for key, words in _COLORS.items() for word in words.split()}
COLORS_ASKED = tuple(_COLORS)
# The categories of the object table and the phrases that name them.
CATEGORY_PHRASES = {
    "animal": r"animals?|creatures?|beasts?|living creatures?",
    "fruit": r"fruits?",
    "vegetable": r"vegetables?|veggies?|veg",
    "vehicle": r"vehicles?|means of transport(?:ation)?|mode of transport(?:ation)?|transportation",
    "clothing": r"clothing|clothes|garments?|apparel|outfit",
    "electronics": r"electronics?|electronic (?:device|gadget|item|thing)s?|devices?|gadgets?|appliances?|"
    r"(?:household |kitchen |home )?appliances?|machines?",
    "instrument": r"(?:musical )?instruments?",
    "furniture": r"furniture|furnishings?",
    "office": r"(?:office|school|stationery) (?:supply|supplies|items?|tools?|things?)|stationery|office supply",
    "kitchen": r"(?:kitchen|cooking|eating) (?:utensils?|tools?|items?|things?|ware)|utensils?|cookware|"
    r"tableware|dishware|dish(?:es)?",
    "tool": r"tools?|hand tools?",
    "sports": r"(?:sports?|sporting|athletic) (?:equipment|gear|items?|goods?|things?)",
    "toy": r"toys?|playthings?|children's toys?",
    "jewelry": r"jewel(?:le)?ry|jewels?|accessor(?:y|ies)",
    "nature": r"natural (?:features?|objects?|things?|phenomen(?:on|a)|places?)|landforms?|"
    r"(?:part|thing) of nature|places?|locations?",
    "household": r"household (?:items?|objects?|things?|goods?)",
    "food": r"dish|meal|snacks?|prepared food|baked goods?",
}
_CATEGORY_RES = {cat: re.compile(rf"(?:{phrases})") for cat, phrases in CATEGORY_PHRASES.items()}
# Tags named as a kind ("is it a mammal?"); compared with the remainder of "is it a ...".
_KIND_TAGS = {
    "mammal": "mammal mammals",
    "bird": "bird birds",
    "insect": "insect insects bug bugs",
    "reptile": "reptile reptiles",
    "pet": "pet pets",
    "plant": "plant plants",
    "toy": "toy toys",
    "ball": "ball balls",
    "liquid": "liquid liquids",
}
_KIND_TAG = {word: tag for tag, words in _KIND_TAGS.items() for word in words.split()}
# Properties asked anywhere in the question: (pattern, tag). First match wins; order matters.
_TAG_RULES: tuple[tuple[str, str], ...] = (
    (r"\b(?:on|over) (?:the|your|one's|a person's|someone's) head\b", "head"),
    (r"\b(?:on|over) (?:the|your|one's|a person's|someone's) (?:feet|foot)\b", "feet"),
    (r"\b(?:on|over) (?:the|your|one's|a person's|someone's) (?:hands?|fingers?|wrists?)\b", "hands"),
    (r"\bgrows? on (?:a )?trees?\b", "grows_on_trees"),
    (r"\bunderground\b|\bin the (?:ground|soil|dirt)\b", "grows_underground"),
    (r"\bwheels?\b", "wheels"),
    (r"\blegs?\b", "legs"),
    (r"\bwings?\b", "wings"),
    (r"\bfly\b|\bflies\b|\bflying\b|\bfloat in the air\b", "flies"),
    (r"\bswims?\b|\bswimming\b|\baquatic\b|\blives? in (?:the )?(?:water|sea|ocean)\b", "swims"),
    (r"\bfur\b|\bfurry\b|\bhairy\b|\bhair\b", "fur"),
    (r"\bfeathers?\b", "feathers"),
    (r"\btails?\b", "tail"),
    (r"\bmammals?\b", "mammal"),
    (r"\bbirds?\b", "bird"),
    (r"\binsects?\b|\bbugs?\b", "insect"),
    (r"\breptiles?\b|\bscales\b", "reptile"),
    (r"\bpets?\b", "pet"),
    (r"\bplay (?:music|songs|tunes)\b|\bmusic\b|\bmusical\b|\binstrument\b", "music"),
    (r"\bsports?\b|\bathlet", "sport"),
    (r"\bbounces?\b|\bbouncy\b", "bounces"),
    (r"\bkick", "kick"),
    (r"\bcook\b|\bcooking\b|\bbak(?:e|ing)\b|\bheat (?:up )?food\b", "cooking"),
    (r"\bbaked\b", "baked"),
    (r"\bwrit(?:e|ing)\b|\bdraw(?:ing)?\b", "writing"),
    (r"\bride\b|\bdrive\b|\bdriven\b|\bcarry people\b|\btransport|\btravel", "ride"),
    (r"\bscreens?\b|\bdisplay\b", "screen"),
    (r"\bstrings?\b", "strings"),
    (r"\bengines?\b|\bmotors?\b", "engine"),
    (
        r"\bhold (?:things|stuff|items|liquids?|water|food|clothes|books)\b|\bcontainer\b|\bput things in",
        "container",
    ),
    (r"\btoys?\b|\bplay with\b|\bchildren play\b", "toy"),
    (r"\bheavy\b|\bheavier\b", "heavy"),
    (r"\bplants?\b|\bgrows?\b|\bvegetation\b", "plant"),
    (r"\bcut\b|\bcuts\b|\bcutting\b", "cutting"),
    (r"\bclean", "cleaning"),
    (
        r"\b(?:give|gives|make|makes|produce|produces|emit|emits) light\b|\bglows?\b|\billuminat|\bshines?\b",
        "light",
    ),
    (r"\bsound\b|\bnoise\b|\bloud\b", "sound"),
    (r"\bhandles?\b", "handle"),
    (r"\bbuttons?\b", "buttons"),
    (r"\bkeys\b|\bkeyboard\b", "keys"),
    (r"\bdoors?\b", "door"),
    (r"\bvaluable\b|\bexpensive\b|\bprecious\b", "valuable"),
    (r"\btell (?:the )?time\b|\btime\b", "time"),
    (r"\bcall\b|\bcommunicat|\btexting\b", "communication"),
    (r"\bread\b|\breading\b", "reading"),
    (r"\bleaves\b|\bleafy\b|\bleaf\b", "leaves"),
    (r"\bseeds?\b", "seeds"),
    (r"\bpeel", "peel"),
    (r"\bbreak\b|\bfragile\b|\bbreakable\b|\bshatter", "breakable"),
    (r"\bsleep", "sleep"),
    (r"\bsit (?:on|in)\b", "sit"),
    (r"\bsour\b", "sour"),
    (r"\bsweet\b|\bsugary\b|\bdessert\b", "sweet"),
    (r"\bliquid\b|\bflows?\b|\bwet\b", "liquid"),
    (r"\bhot\b|\bheat\b|\bwarm\b", "hot"),
    (r"\bcold\b|\bcool\b|\bfreez", "cold"),
    (r"\bsharp\b|\bpointy\b|\bblades?\b", "sharp"),
    (r"\bround\b|\bspherical\b|\bcircular\b|\bsphere\b|\bball[- ]shaped\b", "round"),
    (r"\bflat\b", "flat"),
    (r"\bsoft\b|\bsquishy\b|\bfluffy\b", "soft"),
    (r"\bwear\b|\bworn\b|\bwearable\b|\bput (?:it|them) on\b", "worn"),
    (r"\bwindows?\b", "windows"),
    (r"\bpockets?\b", "pockets"),
    (r"\bbatter(?:y|ies)\b", "battery"),
)
_TAG_RES = tuple((re.compile(p), tag) for p, tag in _TAG_RULES)
_ALIVE = re.compile(
    r"\balive\b|\bliving (?:thing|being|creature|organism)s?\b|\bis it living\b|\borganism\b|\bbreathes?\b|"
    r"\blife ?form\b|\bbiological\b"
)
_EDIBLE = re.compile(r"\beat\b|\beaten\b|\bedible\b|\bconsume\b|\beatable\b|\btaste\b")
_MAN_MADE = re.compile(
    r"\bman[- ]?made\b|\bmanufactured\b|\bartificial\b|\bmade by (?:people|humans|man|a person)\b|"
    r"\bhuman[- ]made\b|\bsynthetic\b|\bbuilt\b|\binvent"
)
_NATURAL = re.compile(r"\bnatural\b|\bfound in nature\b|\bnaturally\b|\boccurs? in nature\b")
_ELECTRIC = re.compile(
    r"\belectric|\belectronic|\bplug|\bpowered\b|\bneeds? power\b|\bcharg(?:e|ing)\b|\bdigital\b"
)
_MADE_OF = re.compile(r"\bmade (?:out )?of ([a-z\-]+)|\bmade from ([a-z\-]+)|\b([a-z]+) made\b")
_MATERIAL_WORD = re.compile(
    r"\b(metal|metallic|wooden|wood|plastic|glass|paper|cardboard|fabric|cloth|leather|rubber|ceramic)\b"
)
_BIGGER = re.compile(
    r"\b(?:bigger|larger|taller|longer|heavier) than (?:a |an |the |your |my |average |normal |typical )*([a-z\-]+)(?: ([a-z\-]+))?"
)
_SMALLER = re.compile(
    r"\b(?:smaller|shorter|lighter|tinier) than (?:a |an |the |your |my |average |normal |typical )*([a-z\-]+)(?: ([a-z\-]+))?"
)
_FIT_IN = re.compile(
    r"\bfits? (?:in|into|inside|within) (?:a |an |the |your |my |one |someone's )*([a-z\-]+)"
)
_FIT_SIZE = {
    "pocket": 0,
    "hand": 1,
    "palm": 0,
    "backpack": 1,
    "bag": 1,
    "box": 1,
    "breadbox": 1,
    "shoebox": 1,
    "car": 2,
    "trunk": 2,
    "room": 3,
    "house": 3,
    "garage": 3,
}
_LOCATION_Q = re.compile(
    r"\b(?:in|on|at|inside|into|near|around|within) (?:a |an |the |your |my |most |people's |someone's |typical |every )*"
    r"(kitchens?|houses?|homes?|household|bedroom|bathroom|living room|offices?|schools?|classroom|gardens?|yard|"
    r"backyard|park|farms?|barn|wild|jungle|forests?|zoo|savannah?|desert|woods|water|oceans?|sea|lake|river|pond|"
    r"roads?|streets?|highway|city|sky|air|space)\b"
)
_INDOORS = re.compile(r"\bindoors?\b|\binside\b")
_OUTDOORS = re.compile(r"\boutdoors?\b|\boutside\b")
_COLOR_Q = re.compile(
    r"\b(red|green|blue|yellow|orange|white|black|brown|grey|gray|pink|purple|violet|silver|gold|golden|clear|"
    r"transparent|see-through)\b"
)
_BIG = re.compile(
    r"^(?:is it|are they) (?:very |really |quite |fairly |usually )?(big|large|huge|small|tiny|little)$"
)


# A parsed question: a test on an object record (None: not understood).
Predicate = Callable[[Mapping[str, Any]], "bool | None"]


def _rank(obj: Mapping[str, Any]) -> int:
    size = obj.get("size", "small")
    return SIZES.index(size) if size in SIZES else 1


class TwentyQuestionsRuleOracle:
    """Yes/no answers about an object from its attribute record (see the object table).

    ``objects``: every record of the game's table (a dict with ``name``, ``variants``,
    ``category``, ``alive``, ``edible``, ``man_made``, ``size``, ``materials``, ``locations``,
    ``colors``, ``tags``); needed to tell a guess of another object from a property question.
    ``answer(question, secret, history)`` takes the secret as a record or a name and returns
    ``"Yes."``, ``"No."`` or ``"I don't know."``. What it understands, first match wins: a guess
    ("Is it a cat?", "Could it be a pair of socks?"), a category ("Is it an animal / a kind of
    fruit / a piece of furniture?"), kinds ("a mammal", "a pet", "a plant"), alive, edible,
    man-made or natural, electric, material ("made of metal", "wooden"), size against a reference
    ("bigger than a breadbox", "fits in your pocket", "is it big"), place ("found in a kitchen",
    "in the wild", "indoors"), colour, and ~60 features ("Does it have wheels?", "Can it fly?",
    "Can you wear it?", "Is it used to make music?"). A line that is not a question gets ``"No."``
    as the benchmark answers its invalid-question marker; negations are not understood.
    """

    last_error: str | None = None

    def __init__(self, objects: Sequence[Mapping[str, Any]]) -> None:
        self.objects = list(objects)
        self._predicates: dict[str, Predicate] = {}
        self._by_name: dict[str, Mapping[str, Any]] = {}
        for obj in self.objects:
            for name in (obj["name"], *obj.get("variants", ())):
                self._by_name[normalize(name)] = obj

    def lookup(self, name: str) -> Mapping[str, Any] | None:
        """The record an object name (or variant, or plural) denotes, if any."""
        key = _ARTICLE.sub("", normalize(name), count=1)
        for candidate in (
            key,
            key[:-1] if key.endswith("s") else key,
            key[:-2] if key.endswith("es") else key,
        ):
            if candidate in self._by_name:
                return self._by_name[candidate]
        return None

    def guessed(self, question: str) -> Mapping[str, Any] | None:
        """The object a question names as a guess ("Is it a cat?"), if it names one."""
        remainder, had_article = question_remainder(question)
        obj = self.lookup(remainder)
        if obj is None:
            return None
        if not had_article and remainder in _COLOR:  # "Is it orange?" asks about colour
            return None
        return obj

    def answer(self, question: str, secret: Any, history: History = ()) -> str:
        obj = self.lookup(secret) if isinstance(secret, str) else secret
        if obj is None:
            return UNKNOWN
        if not is_question(question):
            return NO
        verdict = self.judge(question, obj)
        if verdict is None:
            return UNKNOWN
        return YES if verdict else NO

    def judge(self, question: str, obj: Mapping[str, Any]) -> bool | None:
        """True / False / None (not understood) for ``question`` about ``obj``."""
        predicate = self._predicates.get(question)
        if predicate is None:
            if len(self._predicates) > 50_000:
                self._predicates.clear()
            predicate = self._predicates[question] = self._parse(question)
        return predicate(obj)

    def _parse(self, question: str) -> Predicate:
        """What ``question`` asks, as a test on an object record (parsed once per question)."""
        guess = self.guessed(question)
        if guess is not None:
            name = guess["name"]
            return lambda o: bool(o["name"] == name)
        text = normalize(question)
        remainder, had_article = question_remainder(question)
        kind = _KIND_OF.sub("", remainder, count=1)
        for cat, pattern in _CATEGORY_RES.items():
            if pattern.fullmatch(kind):
                return lambda o: bool(o.get("category") == cat)
        if kind in _KIND_TAG:
            return _has_tag(_KIND_TAG[kind])
        if kind in ("food", "foods", "something edible", "edible"):
            return lambda o: bool(o.get("edible"))
        if _ALIVE.search(text):
            return lambda o: bool(o.get("alive"))
        if _MAN_MADE.search(text):
            return lambda o: bool(o.get("man_made"))
        if _NATURAL.search(text):
            return lambda o: not o.get("man_made")
        predicate = _size_predicate(text) or _material_predicate(text)
        if predicate is not None:
            return predicate
        if _EDIBLE.search(text):
            return lambda o: bool(o.get("edible"))
        if _ELECTRIC.search(text):
            return _has_tag("electric")
        for pattern, tag in _TAG_RES:
            if pattern.search(text):
                if tag == "sound":
                    return lambda o: bool(set(o.get("tags", ())) & {"sound", "music"})
                return _has_tag(tag)
        predicate = _place_predicate(text)
        if predicate is not None:
            return predicate
        colour = _COLOR_Q.search(text)
        if colour:
            key = _COLOR[colour.group(1)]
            return lambda o: key in o.get("colors", ())
        big = _BIG.match(text)
        if big:
            want_big = big.group(1) in ("big", "large", "huge")
            return lambda o: (_rank(o) >= 2) == want_big
        if had_article and len(kind.split()) <= 3:
            return lambda o: False  # "Is it a zebra?": a thing this object is not
        return lambda o: None


def _has_tag(tag: str) -> Predicate:
    return lambda o: tag in o.get("tags", ())


def _size_predicate(text: str) -> Predicate | None:
    for pattern, bigger in ((_BIGGER, True), (_SMALLER, False)):
        m = pattern.search(text)
        if m:
            words = [w for w in m.groups() if w]
            bound = _SIZE_REF.get(" ".join(words)) or next(
                (_SIZE_REF[w] for w in words if w in _SIZE_REF), None
            )
            if bound is None:
                return lambda o: None
            if bigger:
                return lambda o: _rank(o) >= bound
            return lambda o: _rank(o) < bound
    m = _FIT_IN.search(text)
    if m and m.group(1).rstrip("s") in _FIT_SIZE:
        limit = _FIT_SIZE[m.group(1).rstrip("s")]
        return lambda o: _rank(o) <= limit
    return None


def _material_predicate(text: str) -> Predicate | None:
    m = _MADE_OF.search(text)
    if m:
        word = next(w for w in m.groups() if w)
        if word in _MATERIAL:
            key = _MATERIAL[word]
            return lambda o: key in o.get("materials", ())
        if m.group(1) or m.group(2):
            return None
    m = _MATERIAL_WORD.search(text)
    if m:
        key = _MATERIAL[m.group(1)]
        return lambda o: key in o.get("materials", ())
    return None


def _place_predicate(text: str) -> Predicate | None:
    m = _LOCATION_Q.search(text)
    if m:
        word = m.group(1)
        key = _LOCATION.get(word) or _LOCATION.get(word.rstrip("s")) or _LOCATION.get(word.replace(" ", "-"))
        if key is None:
            return None
        if key == "home":
            return lambda o: bool(set(o.get("locations", ())) & {"home", "kitchen"})
        return lambda o: key in o.get("locations", ())
    if _INDOORS.search(text):
        return lambda o: bool(set(o.get("locations", ())) & _INDOOR)
    if _OUTDOORS.search(text):
        return lambda o: bool(set(o.get("locations", ())) - _INDOOR)
    return None


# -- Guess My City ---------------------------------------------------------------------------------
CONTINENTS = ("Asia", "Europe", "Africa", "North America", "South America", "Oceania")


class CityRuleOracle:
    """Answers about a city from its attribute record (see the city table).

    Records have ``name``, ``variants``, ``country``, ``continent`` and optionally
    ``population_millions``, ``capital``, ``coastal``, ``hemisphere``, ``language``, ``climate``,
    ``landmarks`` and ``known_for``. Yes/no questions about any of those ("Is it in Asia?", "Is it
    a capital?", "Is it on the coast?", "Do people speak Spanish there?", "Is it in Brazil?",
    "Does it have more than 5 million people?") get ``"Yes."`` / ``"No."``; open questions ("What
    continent is it on?", "What language do people speak?", "What is it known for?", "How many
    people live there?") get one sentence that never names the city or its country. A guess of
    the city ("Is it Paris?") is answered ``"Yes."`` or ``"No."``; anything else gets
    ``"I don't know."``.
    """

    last_error: str | None = None

    def __init__(self, cities: Sequence[Mapping[str, Any]]) -> None:
        self.cities = list(cities)
        countries = sorted({c["country"] for c in self.cities}, key=len, reverse=True)
        languages = sorted({c["language"] for c in self.cities if c.get("language")}, key=len, reverse=True)
        self._countries = [(normalize(c), re.compile(rf"\b{re.escape(normalize(c))}\b")) for c in countries]
        self._languages = [(lang, re.compile(rf"\b{re.escape(lang.lower())}\b")) for lang in languages]
        self._has_australia = any(n == "australia" for n, _ in self._countries)
        self._names: dict[str, Mapping[str, Any]] = {}
        for city in self.cities:
            for name in (city["name"], *city.get("variants", ())):
                for key in (normalize(name), normalize(f"{name} {city['country']}")):
                    self._names.setdefault(key, city)

    def guessed(self, question: str) -> Mapping[str, Any] | None:
        remainder, _ = question_remainder(question)
        remainder = re.sub(r"^(?:in|called|named)\s+", "", remainder)
        remainder = re.sub(r"\s+in\s+.*$", "", remainder)  # "Is it Paris in France?"
        remainder = _ARTICLE.sub("", remainder, count=1)
        for key in (remainder, remainder[:-1] if remainder.endswith("s") else None):
            if key and key in self._names:
                return self._names[key]
        return None

    def answer(self, question: str, secret: Any, history: History = ()) -> str:
        city = secret
        if not isinstance(city, Mapping):
            return UNKNOWN
        text = normalize(question)
        if not text:
            return NO
        guess = self.guessed(question)
        if guess is not None:
            return YES if guess["name"] == city["name"] else NO
        words = text.split()
        if len(words) > MAX_QUESTION_WORDS:
            return NO
        if words[0] in QUESTION_STARTS:
            verdict = self.judge(text, city)
            return UNKNOWN if verdict is None else (YES if verdict else NO)
        return self.describe(text, city)

    def judge(self, text: str, city: Mapping[str, Any]) -> bool | None:
        for continent in CONTINENTS:
            if re.search(rf"\b{continent.lower()}\b", text):
                return bool(city["continent"] == continent)
        if re.search(r"\bamericas?\b", text):
            return "America" in city["continent"]
        if not self._has_australia and re.search(r"\baustralia\b", text):
            return city["continent"] == "Oceania"
        for country, pattern in self._countries:
            if pattern.search(text):
                return bool(normalize(city["country"]) == country)
        if re.search(r"\bcapital\b", text):
            return bool(city.get("capital"))
        if re.search(r"\bcoast|\bcoastal\b|\bsea\b|\bocean\b|\bport\b|\bbeach", text):
            return bool(city.get("coastal"))
        if re.search(r"\bsouthern hemisphere\b|\bsouth of the equator\b", text):
            return city.get("hemisphere") == "south"
        if re.search(r"\bnorthern hemisphere\b|\bnorth of the equator\b", text):
            return city.get("hemisphere") == "north"
        if re.search(r"\bspeak|\blanguage\b|\bspoken\b", text):
            for language, pattern in self._languages:
                if pattern.search(text):
                    return bool(city.get("language") == language)
            return None
        m = re.search(
            r"\b(more|fewer|less|over|under|above|below) (?:than )?(\d+(?:\.\d+)?) (million|thousand)", text
        )
        if m and city.get("population_millions") is not None:
            n = float(m.group(2)) * (1.0 if m.group(3) == "million" else 0.001)
            more = m.group(1) in ("more", "over", "above")
            pop = float(city["population_millions"])
            return pop > n if more else pop < n
        if re.search(r"\b(?:tropical|hot|warm)\b", text) and city.get("climate"):
            return city["climate"] in ("tropical", "arid", "hot")
        if re.search(r"\b(?:cold|snow|snowy)\b", text) and city.get("climate"):
            return city["climate"] in ("continental", "cold")
        for landmark in city.get("landmarks", ()):
            if normalize(landmark) in text:
                return True
        return None

    def describe(self, text: str, city: Mapping[str, Any]) -> str:
        if re.search(r"\bcontinent\b|\bwhere\b|\bpart of the world\b|\bregion\b", text):
            return f"The city is in {city['continent']}."
        if re.search(r"\blanguage|\bspeak|\bspoken", text) and city.get("language"):
            return f"Most people there speak {city['language']}."
        if re.search(r"\bpopulation\b|\bhow many people\b|\bhow big\b|\bhow large\b|\bsize\b", text):
            if city.get("population_millions") is not None:
                return f"About {float(city['population_millions']):.1f} million people live there."
            return UNKNOWN
        if re.search(r"\bknown for\b|\bfamous\b|\blandmark|\bsights?\b|\bvisit\b|\battraction", text):
            if city.get("known_for"):
                return f"It is known for {city['known_for']}."
            return UNKNOWN
        if re.search(r"\bclimate\b|\bweather\b", text) and city.get("climate"):
            return f"Its climate is {city['climate']}."
        if re.search(r"\bcountry\b", text):
            return "I can't tell you the country, but you can ask whether it is in a particular one."
        if re.search(r"\bname\b|\bwhich city\b|\bwhat city\b", text):
            return "I can't tell you the name; keep asking."
        return UNKNOWN


# -- Car Dealer ------------------------------------------------------------------------------------
@dataclass
class BuyerState:
    """What the rule-based buyer remembers of the conversation (kept in the env's snapshot)."""

    msrp: int | None = None
    offer: int | None = None
    counters: int = 0
    brand: str | None = None
    car_type: str | None = None
    features: tuple[str, ...] = ()
    idle_lines: int = 0
    decided: bool = False


_PRICE = re.compile(
    r"\$\s?(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s*(k|thousand)?\b|\b(\d{1,3}(?:,\d{3})+|\d{4,7})\b|\b(\d+(?:\.\d+)?)\s*(k|thousand)\b"
)
_MSRP_CUE = re.compile(
    r"\bmsrp\b|\blist price\b|\bsticker price\b|\bretail price\b|\bretails? (?:for|at)\b|\bnormally\b|\busually\b|\bworth\b"
)
_OFFER_CUE = re.compile(
    r"\boffer\b|\bfor you\b|\bgive (?:it to )?you\b|\bsell\b|\bdeal\b|\bprice\b|\bcan do\b|\bdiscount\b|\bgo (?:down )?to\b|"
    r"\bhow about\b|\bonly\b|\bfor\b|\bat\b"
)
_CLOSE_CUE = re.compile(
    r"\b(?:do we have a deal|deal\?|will you take it|shall we|ready to buy|sign|take it)\b"
)
OUTPUT_LINE = re.compile(
    r"Output: Decision=(Accept|Reject) MSRP=\$([1-9][0-9,]*)( Buy Price=\$([0-9][0-9,]*))?"
)
FINAL_DECISION_PROMPT = (
    "[The dealer has no more time. Give your final decision now, ending with the Output line.]"
)


def parse_prices(text: str) -> list[int]:
    """Dollar amounts in a line: "$25,000", "25000", "25k", "$25.5k" (amounts under $1,000 skipped)."""
    prices = []
    for m in _PRICE.finditer(text.lower()):
        if m.group(1):
            value = float(m.group(1).replace(",", "")) * (1000 if m.group(2) else 1)
        elif m.group(3):
            value = float(m.group(3).replace(",", ""))
        else:
            value = float(m.group(4)) * 1000
        if 1000 <= value <= 10_000_000:
            prices.append(round(value))
    return prices


class RuleBuyer:
    """A car buyer with a budget and preferences who reads the dealer's lines.

    The secret is a buyer record: ``budget``, ``preferred_brands`` (``"a Toyota"``),
    ``preferred_type`` (``"SUV"``), ``preferred_features``, ``personality`` and ``state`` (a
    :class:`BuyerState`, updated in place). Each dealer line is read for the car it describes
    (brand, type, features from the benchmark's lists) and for prices: a price marked as the list
    price ("MSRP $32,000", "it retails for 32k") sets the MSRP, the first price named otherwise
    sets it too; later prices are offers. The buyer then

    - accepts an offer at or below what it will pay (its ceiling): its budget, less 10% for each
      of its preferred brand and type the car lacks (one missing feature is tolerated; each further
      one lowers the ceiling 5%);
    - otherwise counters, at 80%, 85%, ... of its ceiling (never above it), and leaves after
      ``max_counters`` counters (6);
    - asks for the car it wants while no car or price has come up, and leaves after ``patience``
      (5) lines in a row that say nothing it can use (no car, no price).

    Decisions end with the benchmark's output line (``"Output: Decision=Accept MSRP=$X Buy
    Price=$Y"`` / ``"Output: Decision=Reject MSRP=$X"``). The MSRP defaults to a reference price
    for the car discussed (``reference_msrp``) when the dealer never names one.
    """

    last_error: str | None = None

    def __init__(
        self,
        brands: Sequence[str],
        types: Sequence[str],
        features: Sequence[str],
        reference_msrp: Callable[[str, str], int],
        patience: int = 5,
        max_counters: int = 6,
    ) -> None:
        self.brands = list(brands)
        self.types = list(types)
        self.features = list(features)
        self.reference_msrp = reference_msrp
        self.patience = patience
        self.max_counters = max_counters

    def ceiling(self, buyer: Mapping[str, Any], state: BuyerState) -> int:
        """The most this buyer pays for the car as described so far."""
        factor = 1.0
        if state.brand is not None and state.brand != _brand_key(buyer["preferred_brands"]):
            factor -= 0.1
        if state.car_type is not None and state.car_type.lower() != str(buyer["preferred_type"]).lower():
            factor -= 0.1
        if state.features or state.brand or state.car_type:
            missing = [f for f in buyer["preferred_features"] if f not in state.features]
            factor -= 0.05 * max(0, len(missing) - 1)
        return int(buyer["budget"] * factor)

    def answer(self, question: str, secret: Any, history: History = ()) -> str:
        buyer: Mapping[str, Any] = secret
        state: BuyerState = buyer["state"]
        if state.decided:
            return "I have already made up my mind."
        if question == FINAL_DECISION_PROMPT:
            return self._final(buyer, state)
        text = question.lower()
        understood = self._read_car(text, state)
        prices = parse_prices(question)
        if prices:
            understood = True
            if state.msrp is None or _MSRP_CUE.search(text):
                state.msrp = prices[0]
            state.offer = prices[-1]
        state.idle_lines = 0 if understood else state.idle_lines + 1
        if state.idle_lines >= self.patience:
            return self._leave(buyer, state, "I don't think we are getting anywhere. I'm leaving.")
        wants = (
            f"{buyer['preferred_brands']} {buyer['preferred_type']} with {_join(buyer['preferred_features'])}"
        )
        if state.offer is not None and prices:
            ceiling = self.ceiling(buyer, state)
            if state.offer <= ceiling:
                return self._accept(buyer, state, state.offer)
            state.counters += 1
            if state.counters > self.max_counters:
                return self._leave(buyer, state, "We are too far apart on the price. I'll look elsewhere.")
            counter = min(ceiling, int(ceiling * (0.75 + 0.05 * state.counters)) // 100 * 100)
            return f"{_tone(buyer)}${state.offer:,} is more than I want to pay. Would you take ${counter:,}?"
        if not understood or (state.brand is None and state.car_type is None):
            return f"{_tone(buyer)}I'm looking for {wants}. What do you have, and how much is it?"
        return f"{_tone(buyer)}That sounds interesting. How much is it?"

    def _read_car(self, text: str, state: BuyerState) -> bool:
        found = False
        for brand in self.brands:
            key = _brand_key(brand)
            if re.search(rf"\b{re.escape(key.lower())}\b", text):
                state.brand, found = key, True
        for car_type in self.types:
            if re.search(rf"\b{re.escape(car_type.lower())}s?\b", text):
                state.car_type, found = car_type, True
        new = [f for f in self.features if f.lower() in text and f not in state.features]
        if new:
            state.features, found = state.features + tuple(new), True
        return found

    def _msrp(self, buyer: Mapping[str, Any], state: BuyerState) -> int:
        """The list price the buyer reports: the dealer's, within half to twice the reference
        price of the car discussed (a buyer does not believe a wildly wrong sticker)."""
        reference = self.reference_msrp(
            state.brand or _brand_key(buyer["preferred_brands"]),
            state.car_type or str(buyer["preferred_type"]),
        )
        if state.msrp is None:
            return reference
        return min(max(state.msrp, reference // 2), reference * 2)

    def _accept(self, buyer: Mapping[str, Any], state: BuyerState, price: int) -> str:
        state.decided = True
        return f"Deal, I'll take it for ${price:,}.\nOutput: Decision=Accept MSRP=${self._msrp(buyer, state):,} Buy Price=${price:,}"

    def _leave(self, buyer: Mapping[str, Any], state: BuyerState, line: str) -> str:
        state.decided = True
        return f"{line}\nOutput: Decision=Reject MSRP=${self._msrp(buyer, state):,}"

    def _final(self, buyer: Mapping[str, Any], state: BuyerState) -> str:
        if state.offer is not None and state.offer <= self.ceiling(buyer, state):
            return self._accept(buyer, state, state.offer)
        return self._leave(buyer, state, "I'm out of time. No deal.")


_TONES = {
    "abusive": "Listen, ",
    "angry": "Ugh. ",
    "insulting": "Seriously? ",
    "polite": "Thank you. ",
    "respectful": "I appreciate it. ",
    "rude": "Look, ",
    "sarcastic": "Oh, great. ",
    "talkative": "Well, you know, ",
    "toxic": "Whatever. ",
    "uncommunicative": "",
}


def _tone(buyer: Mapping[str, Any]) -> str:
    return _TONES.get(str(buyer.get("personality", "")), "")


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _brand_key(brand: str) -> str:
    """``"a Toyota"`` -> ``"Toyota"`` (the benchmark's brand strings carry an article)."""
    return re.sub(r"^(?:a|an)\s+", "", brand.strip())


def copy_secret(secret: Any) -> Any:
    """A deep copy of a secret (the buyer record holds mutable state)."""
    return copy.deepcopy(secret)
