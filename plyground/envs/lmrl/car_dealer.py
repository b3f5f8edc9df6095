"""Car Dealer, as in LMRL-Gym: the agent is a car dealer selling to a simulated buyer.

Besides the env this module gives :func:`compute_reward` (the benchmark's "fancy" and "revenue"
rewards), :func:`reference_msrp` (the list price the rule-based buyer assumes for a car) and
:class:`CarDealerSeller`, a scripted seller for scripted play and behaviour-cloning data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from plyground.envs.lmrl.oracle import (
    CAR_BUYER_ROLE,
    FINAL_DECISION_PROMPT,
    OUTPUT_LINE,
    BuyerState,
    LLMOracle,
    Oracle,
    RuleBuyer,
    oracle_backend_source,
    parse_prices,
)
from plyground.envs.lmrl.twenty_questions import DialogueEnv, shown

MAX_LINES = 50  # the benchmark's max_conversation_length: dealer and buyer lines together
INITIAL_STR = "Beginning of Conversation"
# The benchmark's buyer profiles (``llm_rl_scripts/car_dealer/env/data.py``).
BUDGETS = (10_000, 30_000, 50_000, 70_000, 90_000)
PERSONALITIES = (
    "abusive",
    "angry",
    "insulting",
    "polite",
    "respectful",
    "rude",
    "sarcastic",
    "talkative",
    "toxic",
    "uncommunicative",
)
BRANDS = (
    "a Volkswagen",
    "a Lexus",
    "a Ford",
    "a Mazda",
    "a Hyundai",
    "a Toyota",
    "a Mercedes-Benz",
    "a BMW",
    "an Audi",
    "a Subaru",
    "a Honda",
    "a Porsche",
    "a Tesla",
)
TYPES = ("luxury", "sedan", "convertible", "truck", "electric", "SUV")
FEATURES = (
    "backup camera",
    "navigation system",
    "heated seats",
    "leather seats",
    "third-row seating",
    "blind spot monitoring",
    "sunroof",
    "Apple CarPlay",
)
# plyground's own reference list prices: a base per type, times a brand factor.
_TYPE_PRICE = {
    "luxury": 60_000,
    "sedan": 28_000,
    "convertible": 45_000,
    "truck": 40_000,
    "electric": 45_000,
    "SUV": 38_000,
}
_BRAND_FACTOR = {"Porsche": 1.6, "Mercedes-Benz": 1.35, "BMW": 1.3, "Audi": 1.25, "Lexus": 1.25, "Tesla": 1.2}
# Rewards are clipped here: an LLM buyer may report any MSRP, and the "fancy" reward divides by it.
REWARD_CLIP = (-10.0, 2.0)
MAX_LINE_CHARS = 2000


def reference_msrp(brand: str, car_type: str) -> int:
    """The list price the rule-based buyer assumes for ``brand`` (``"Toyota"`` or ``"a Toyota"``)
    and ``car_type`` when the dealer names none."""
    brand = re.sub(r"^(?:a|an)\s+", "", brand)
    base = _TYPE_PRICE.get(car_type, _TYPE_PRICE.get(car_type.lower(), 35_000))
    return int(base * _BRAND_FACTOR.get(brand, 1.0)) // 100 * 100


def compute_reward(
    budget: int, car_bought: bool, msrp: int, buy_price: int | None, mode: str = "fancy"
) -> float:
    """The benchmark's reward for the conversation's outcome.

    ``"fancy"``: a sale gives ``buy_price / ((budget + msrp) / 2)``; no sale gives
    ``-(budget - msrp) / msrp`` (negative when the buyer could have afforded the car). ``"revenue"``:
    ``buy_price / 1000`` for a sale, else 0. An MSRP of 0 or a sale without a price gives 0.
    """
    if mode == "revenue":
        return buy_price / 1000.0 if car_bought and buy_price is not None else 0.0
    if mode != "fancy":
        raise ValueError(f"unknown reward mode {mode!r}; use 'fancy' or 'revenue'")
    if msrp == 0:
        return 0.0
    if car_bought:
        return 0.0 if buy_price is None else buy_price / ((budget + msrp) * 0.5)
    return -(budget - msrp) / msrp


def parse_decision(line: str) -> tuple[dict[str, Any] | None, str]:
    """The buyer's output line (``Output: Decision=Accept MSRP=$X Buy Price=$Y``) if ``line`` has
    one, and the line without it."""
    m = OUTPUT_LINE.search(line)
    if m is None:
        return None, line
    bought = m.group(1) == "Accept"
    price = int(m.group(4).replace(",", "")) if bought and m.group(4) else None
    decision = {"car_bought": bought, "msrp": int(m.group(2).replace(",", "")), "buy_price": price}
    return decision, (line[: m.start()] + line[m.end() :]).strip()


def _brand_name(brand: str) -> str:
    return re.sub(r"^(?:a|an)\s+", "", brand)


class CarDealerEnv(DialogueEnv):
    """
    ## Description
    Car Dealer as LMRL-Gym defines it: the agent is a car dealer talking with a customer who has
    a budget, a personality and wishes (a brand, a type of car, some features), none of which the
    dealer is told. The dealer must find out what the buyer wants and sell at a good price; the
    buyer may buy or walk away. The game tests persuasion and bargaining over a long dialogue.

    ## Action Space
    Free text: the dealer's next line. The buyer reads it for the car (brand, type and features
    from the benchmark's lists) and for prices ("MSRP $42,000", "I can offer it for $38,500",
    "the price is 38k"). An empty line, one with no letters, or one over 2,000 characters is
    marked invalid in ``info`` (the benchmark has no penalty for it, so the reward stays 0); the
    buyer still hears it.

    ## Observation Space
    Text: ``"Beginning of Conversation"``, then the dialogue so far, one ``"Dealer: ..."`` or
    ``"Buyer: ..."`` line each, and at the end a line with the outcome.

    ## Starting State
    The buyer is drawn as in the benchmark with the env's ``np_random``: a personality, a brand, a
    type, one to four features and a budget from $10,000 to $90,000; ``reset(options={"buyer":
    {...}})`` sets any of those fields.

    ## Rewards
    0 for every line until the buyer decides; then the benchmark's reward (``reward_mode``
    ``"fancy"``, :func:`compute_reward`): a sale gives ``price / ((budget + MSRP) / 2)``, no sale
    gives ``-(budget - MSRP) / MSRP``; ``"revenue"`` gives ``price / 1000`` for a sale. A
    conversation that reaches the line limit without a decision the buyer can state gives 0.
    Rewards are clipped to [-10, 2] (only an LLM buyer reporting an absurd MSRP reaches that).

    ## Episode End
    Terminated when the buyer decides (its line carries ``Output: Decision=...``), or when the
    dialogue reaches ``max_lines`` lines (50: 25 dealer lines), where the buyer is asked for its
    final decision as the benchmark re-prompts it.

    ## Information
    ``success`` (a car was sold), ``valid_action``, ``buyer_line``, ``decision`` (``car_bought``,
    ``msrp``, ``buy_price``) and ``buyer`` (the profile) once decided, and ``oracle_error`` when an
    LLM buyer failed and its fallback reply was used.

    ## Arguments
    ``oracle``: any :class:`Oracle` playing the buyer (default: the rule-based :class:`RuleBuyer`;
    its secret is the buyer profile with a ``state``). ``oracle_backend``: an inference backend to
    play the buyer instead, as an :class:`LLMOracle` with the benchmark's role: a backend object, a
    registered backend name or a spec ``{"name": ..., **kwargs}``, with ``oracle_model`` the model
    of a name or spec (as in :class:`~plyground.envs.lmrl.twenty_questions.TwentyQuestionsEnv`). ``max_lines`` (50),
    ``reward_mode`` (``"fancy"`` or ``"revenue"``), ``render_mode`` (``"ansi"``).

    ## Version History
    - v0: first version. Differences from upstream: a rule-based buyer replaces the fine-tuned
      buyer model by default; its list prices come from plyground's own reference table; rewards
      are clipped to [-10, 2].
    """

    reward_range = REWARD_CLIP

    def __init__(
        self,
        oracle: Oracle | None = None,
        oracle_backend: Any = None,
        max_lines: int = MAX_LINES,
        reward_mode: str = "fancy",
        render_mode: str | None = None,
        oracle_model: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if max_lines < 2:
            raise ValueError(f"max_lines must be >= 2, got {max_lines}")
        if reward_mode not in ("fancy", "revenue"):
            raise ValueError(f"unknown reward mode {reward_mode!r}; use 'fancy' or 'revenue'")
        if oracle is not None and oracle_backend is not None:
            raise ValueError("pass oracle= or oracle_backend=, not both")
        self.max_lines = int(max_lines)
        self.max_turns = self.max_lines // 2
        self.reward_mode = reward_mode
        self.rule_buyer = RuleBuyer([_brand_name(b) for b in BRANDS], TYPES, FEATURES, reference_msrp)
        if oracle_backend is not None:
            oracle = LLMOracle(
                oracle_backend_source(oracle_backend, oracle_model),
                CAR_BUYER_ROLE,
                describe=describe_buyer,
                max_tokens=96,
                fallback="Sorry, I need a moment. Could you repeat that?",
            )
        elif oracle_model is not None:
            raise ValueError("oracle_model= names the model of oracle_backend=; give oracle_backend= too")
        self.oracle = oracle if oracle is not None else self.rule_buyer
        self.game = {}
        self.instructions = (
            "You are a car dealer. A customer has walked into your dealership. Talk with them to "
            "find out what car they want, present a car, and negotiate a price; write one line of "
            "dialogue per turn. When you name prices, write them in dollars, for example: The MSRP "
            "is $32,000, and I can offer it to you for $30,500. The customer decides whether to buy. "
            "You score higher the more you sell the car for relative to the customer's budget and "
            "the car's MSRP; the conversation ends after "
            f"{self.max_lines} lines in all ({self.max_turns} of yours)."
        )

    # -- dynamics ------------------------------------------------------------------------------
    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        n_features = int(rng.integers(1, 5))
        buyer: dict[str, Any] = {
            "personality": PERSONALITIES[int(rng.integers(len(PERSONALITIES)))],
            "preferred_brands": BRANDS[int(rng.integers(len(BRANDS)))],
            "preferred_type": TYPES[int(rng.integers(len(TYPES)))],
            "preferred_features": [
                FEATURES[int(i)] for i in rng.choice(len(FEATURES), n_features, replace=False)
            ],
            "budget": BUDGETS[int(rng.integers(len(BUDGETS)))],
        }
        buyer.update({k: v for k, v in dict(options.get("buyer", {})).items() if k in buyer})
        buyer["budget"] = int(buyer["budget"])
        buyer["state"] = BuyerState()
        self.game = {"buyer": buyer, "lines": [], "decision": None}
        return INITIAL_STR, {}

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        buyer = self.game["buyer"]
        line = shown(action) if len(action) <= MAX_LINE_CHARS else shown(action[:MAX_LINE_CHARS])
        valid = (
            bool(action.strip())
            and len(action) <= MAX_LINE_CHARS
            and re.search(r"[^\W\d_]", action) is not None
        )
        info: dict[str, Any] = {"valid_action": valid}
        history = self._history()
        reply = self.oracle.answer(line, buyer, history)
        self._note_error(info)
        decision, reply = parse_decision(reply)
        self.game["lines"].append(("Dealer", line))
        self.game["lines"].append(("Buyer", " ".join(reply.split()) or "..."))
        info["buyer_line"] = self.game["lines"][-1][1]
        if decision is None and len(self.game["lines"]) >= self.max_lines:
            final = self.oracle.answer(FINAL_DECISION_PROMPT, buyer, self._history())
            self._note_error(info)
            decision, _ = parse_decision(final)
            if decision is None:
                return self._render("The conversation is over without a decision."), 0.0, True, info
        if decision is None:
            return self._render(), 0.0, False, info
        self.game["decision"] = decision
        reward = compute_reward(
            buyer["budget"], decision["car_bought"], decision["msrp"], decision["buy_price"], self.reward_mode
        )
        reward = min(max(reward, REWARD_CLIP[0]), REWARD_CLIP[1])
        info.update(success=bool(decision["car_bought"]), decision=dict(decision), buyer=self.profile())
        if decision["car_bought"] and decision["buy_price"] is not None:
            status = f"The buyer bought the car for ${decision['buy_price']:,} (MSRP ${decision['msrp']:,})."
        elif decision["car_bought"]:
            status = "The buyer bought the car."
        else:
            status = "The buyer left without buying."
        return self._render(status), float(reward), True, info

    def profile(self) -> dict[str, Any]:
        """The buyer's profile (what the benchmark calls buyer_info), without the rule buyer's state."""
        return {k: v for k, v in self.game["buyer"].items() if k != "state"}

    def _history(self) -> list[tuple[str, str]]:
        lines = self.game["lines"]
        return [(lines[i][1], lines[i + 1][1]) for i in range(0, len(lines) - 1, 2)]

    def _note_error(self, info: dict[str, Any]) -> None:
        error = getattr(self.oracle, "last_error", None)
        if error:
            info["oracle_error"] = error

    def _render(self, status: str = "") -> str:
        lines = [INITIAL_STR] + [f"{role}: {text}" for role, text in self.game["lines"]]
        if status:
            lines.append(status)
        return "\n".join(lines)


def describe_buyer(buyer: Any) -> str:
    """A buyer profile in words, for an LLM playing the buyer."""
    if not isinstance(buyer, Mapping):
        return str(buyer)
    features = ", ".join(buyer.get("preferred_features", ()))
    return (
        f"your personality is {buyer.get('personality')}; you want {buyer.get('preferred_brands')} "
        f"{buyer.get('preferred_type')} with {features}; your budget is ${int(buyer.get('budget', 0)):,}"
    )


# -- the scripted seller -------------------------------------------------------------------------------
class CarDealerSeller:
    """A scripted dealer: asks what the customer wants, presents that car at its reference MSRP,
    then meets each counter-offer halfway, and after ``rounds`` counters (or once the gap is under
    3%) offers the buyer's own last counter. Reads only the transcript (stateless)."""

    def __init__(self, rounds: int = 4) -> None:
        self.rounds = rounds

    def reset(self) -> None:
        """Nothing to forget between episodes: ``act`` reads the whole transcript each time."""

    def act(self, observation: str) -> str:
        dealer = [line[len("Dealer: ") :] for line in observation.splitlines() if line.startswith("Dealer: ")]
        buyer = [line[len("Buyer: ") :] for line in observation.splitlines() if line.startswith("Buyer: ")]
        brand, car_type, features = _wants(" ".join(buyer))
        offers = [p for line in dealer if (p := parse_prices(line))]
        if not dealer:
            return "Hello and welcome! What kind of car are you looking for today?"
        car = f"{brand or 'a Toyota'} {car_type or 'sedan'}"
        if not offers:
            msrp = reference_msrp(_brand_name(brand or "a Toyota"), car_type or "sedan")
            extras = f" with {_join(features)}" if features else ""
            return f"I have {car}{extras} on the lot. Its MSRP is ${msrp:,}, and I can offer it to you for ${msrp:,}."
        last_offer = offers[-1][-1]
        counter = parse_prices(buyer[-1]) if buyer else []
        if not counter:
            return f"This {car[car.index(' ') + 1 :]} is a great choice. I can offer it to you for ${last_offer:,}."
        c = counter[-1]
        if len(offers) > self.rounds or last_offer - c <= 0.03 * last_offer:
            return f"You drive a hard bargain. Alright, I can offer it to you for ${c:,}."
        new = max(c, int((last_offer + c) / 2) // 100 * 100)
        return f"I can come down a little. I can offer it to you for ${new:,}."


def _wants(text: str) -> tuple[str | None, str | None, list[str]]:
    lowered = text.lower()
    brand = next((b for b in BRANDS if re.search(rf"\b{re.escape(_brand_name(b).lower())}\b", lowered)), None)
    car_type = next((t for t in TYPES if re.search(rf"\b{re.escape(t.lower())}s?\b", lowered)), None)
    features = [f for f in FEATURES if f.lower() in lowered]
    return brand, car_type, features


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
