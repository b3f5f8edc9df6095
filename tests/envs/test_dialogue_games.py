"""Twenty Questions, Guess My City and Car Dealer: oracles, envs, scripted policies."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import gymnasium
import pytest

import plyground
from plyground.envs import EnvSnapshot, check_env
from plyground.envs.checker import MALFORMED_ACTIONS
from plyground.envs.lmrl.car_dealer import (
    CarDealerEnv,
    CarDealerSeller,
    compute_reward,
    parse_decision,
    reference_msrp,
)
from plyground.envs.lmrl.guess_city import GuessMyCityEnv, GuessMyCitySolver, builtin_cities, load_cities
from plyground.envs.lmrl.oracle import (
    FINAL_DECISION_PROMPT,
    BuyerState,
    CityRuleOracle,
    LLMOracle,
    Oracle,
    TwentyQuestionsRuleOracle,
    parse_prices,
    yes_no,
)
from plyground.envs.lmrl.twenty_questions import (
    DialogueState,
    TwentyQuestionsEnv,
    TwentyQuestionsSolver,
    builtin_objects,
    load_objects,
)
from plyground.errors import UnknownNameError
from plyground.inference.scripted import ScriptedBackend
from plyground.types import Chat

SHARED_CITIES = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "lmrl-gym" / "guess_city" / "global_cities.txt"
)


def play(env: Any, policy: Any, **reset: Any) -> tuple[str, float, dict[str, Any]]:
    obs, info = env.reset(**reset)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy.act(obs))
        total += reward
        done = terminated or truncated
    return obs, total, info


# -- Twenty Questions: the rule-based oracle ----------------------------------------------------------
@pytest.mark.parametrize(
    ("obj", "question", "expected"),
    [
        ("cat", "Is it alive?", "Yes."),
        ("cat", "Is it an animal?", "Yes."),
        ("cat", "Is it a cat?", "Yes."),
        ("cat", "Is it a kitten?", "Yes."),  # a variant
        ("cat", "Is it a dog?", "No."),
        ("cat", "Is it a mammal?", "Yes."),
        ("cat", "Is it bigger than a breadbox?", "No."),
        ("cat", "Does it have fur?", "Yes."),
        ("cat", "Can it fly?", "No."),
        ("cat", "Is it a zebra?", "No."),  # a thing not in the table
        ("cat", "What is it?", "I don't know."),
        ("cat", "Tell me about it", "No."),  # not a question: the benchmark's invalid answer
        ("car", "Is it made of metal?", "Yes."),
        ("car", "Is it man-made?", "Yes."),
        ("car", "Does it have wheels?", "Yes."),
        ("car", "Is it bigger than a person?", "Yes."),
        ("car", "Is it bigger than a house?", "No."),
        ("car", "Can you eat it?", "No."),
        ("car", "Is it found on roads?", "Yes."),
        ("orange", "Is it orange?", "Yes."),  # a colour question, not a guess
        ("orange", "Is it an orange?", "Yes."),
        ("orange", "Is it a type of fruit?", "Yes."),
        ("orange", "Can you eat it?", "Yes."),
        ("orange", "Is it found in a kitchen?", "Yes."),
        ("socks", "Could it be a pair of socks?", "Yes."),
        ("socks", "Can you wear it?", "Yes."),
        ("socks", "Is it worn on the feet?", "Yes."),
        ("frying pan", "Is it used to cook food?", "Yes."),
        ("frying pan", "Is it a kitchen utensil?", "Yes."),
        ("piano", "Is it a musical instrument?", "Yes."),
        ("piano", "Does it make a sound?", "Yes."),
        ("piano", "Does it fit in your pocket?", "No."),
        ("tree", "Is it made of wood?", "Yes."),
        ("tree", "Is it natural?", "Yes."),
        ("whale", "Does it live in water?", "Yes."),
        ("whale", "Is it found indoors?", "No."),
        ("laptop", "Does it use electricity?", "Yes."),
        ("laptop", "Does it have a screen?", "Yes."),
    ],
)
def test_twenty_questions_oracle_table(obj: str, question: str, expected: str) -> None:
    oracle = TwentyQuestionsRuleOracle(builtin_objects())
    assert oracle.answer(question, obj, []) == expected


@pytest.mark.parametrize(
    "question", [*MALFORMED_ACTIONS, "?", "is", "Is it a ?", "Is it " * 100, "¿Es un gato?"]
)
def test_twenty_questions_oracle_never_raises(question: str) -> None:
    oracle = TwentyQuestionsRuleOracle(builtin_objects())
    assert oracle.answer(question, "cat", []) in ("Yes.", "No.", "I don't know.")
    assert oracle.answer(question, "no such object", []) == "I don't know."


def test_object_table() -> None:
    objects = builtin_objects()
    assert 100 <= len(objects) <= 170
    names = [n.lower() for o in objects for n in [o["name"], *o["variants"]]]
    assert len(names) == len(set(names)), "object names and variants must be unique"
    for obj in objects:
        assert obj["size"] in ("tiny", "small", "medium", "large", "huge")
        assert obj["category"] and obj["materials"] and obj["locations"]
    with pytest.raises(ValueError, match="empty"):
        load_objects([])


# -- Twenty Questions: the env and the solver ----------------------------------------------------------
def test_twenty_questions_rewards_and_end() -> None:
    env = TwentyQuestionsEnv()
    obs, info = env.reset(options={"object": "dog"})
    assert obs == "Questions:"
    obs, reward, terminated, truncated, info = env.step("Is it alive?")
    assert (reward, terminated, info["answer"], info["valid_action"]) == (-1.0, False, "Yes.", True)
    assert obs.splitlines()[-1] == "Is it alive? Yes."
    obs, reward, terminated, _, info = env.step("Is it a cat?")
    assert (reward, terminated) == (-1.0, False)
    obs, reward, terminated, truncated, info = env.step("Is it a puppy?")
    assert (reward, terminated, truncated, info["success"], info["object"]) == (0.0, True, False, True, "dog")
    assert obs.endswith("Correct! The object was dog.")


def test_twenty_questions_ends_after_twenty_questions() -> None:
    env = TwentyQuestionsEnv()
    env.reset(seed=3)
    for _i in range(20):
        _, reward, terminated, truncated, info = env.step("Is it alive?")
        assert reward == -1.0
    assert terminated and not truncated and not info["success"] and "object" in info


@pytest.mark.parametrize("action", MALFORMED_ACTIONS)
def test_twenty_questions_malformed_actions_are_invalid(action: str) -> None:
    env = TwentyQuestionsEnv()
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(action)
    assert info["valid_action"] is False and info["answer"] == "No."
    assert reward == -1.0 and not terminated and env.turn == 1
    assert len(obs) < 500


def test_twenty_questions_solver_finds_every_object() -> None:
    env = TwentyQuestionsEnv()
    solver = TwentyQuestionsSolver.for_env(env)
    turns = []
    for i, obj in enumerate(env.objects):
        _, total, info = play(env, solver, options={"index": i})
        assert info["success"], f"the solver did not find {obj['name']}"
        assert total == -(env.turn - 1)
        turns.append(env.turn)
    assert max(turns) <= 20
    assert sum(turns) / len(turns) < 10


def test_twenty_questions_seeded_draws_and_gymnasium() -> None:
    env = gymnasium.make("plyground/TwentyQuestions-v0")
    first = env.reset(seed=5)
    env.unwrapped.step("Is it alive?")
    secret = env.unwrapped.secret["name"]
    env.reset(seed=5)
    assert env.unwrapped.secret["name"] == secret and first[0] == "Questions:"
    with pytest.raises(ValueError, match="unknown object"):
        env.reset(options={"object": "unicorn"})


def test_twenty_questions_snapshot_restore() -> None:
    env = TwentyQuestionsEnv()
    env.reset(seed=11)
    env.step("Is it alive?")
    state = env.snapshot()
    assert isinstance(state, DialogueState)
    after = [env.step(q) for q in ("Is it an animal?", "Is it made of metal?")]
    env.reset(seed=12)
    assert env.restore(state).splitlines()[-1].startswith("Is it alive?")
    again = [env.step(q) for q in ("Is it an animal?", "Is it made of metal?")]
    assert [a[:4] for a in after] == [a[:4] for a in again]
    # the replay snapshot of the base class still works
    replay = EnvSnapshot(state.episode_rng_state, None, ["Is it alive?"])
    env.reset(seed=99)
    assert env.restore(replay) == state.last_observation


# -- LLM oracles ------------------------------------------------------------------------------------
def test_llm_oracle_answers_with_a_scripted_backend() -> None:
    seen: list[Chat] = []

    def policy(chat: Chat) -> str:
        seen.append(chat)
        return "yes, it is alive" if "alive" in chat[-1].content else "No"

    env = TwentyQuestionsEnv(oracle_backend=ScriptedBackend(policy))
    env.reset(options={"object": "cat"})
    _, _, _, _, info = env.step("Is it alive?")
    assert info["answer"] == "Yes." and "oracle_error" not in info
    _, _, _, _, info = env.step("Is it metal?")
    assert info["answer"] == "No."
    assert seen[-1][0].role == "system" and "cat" in seen[-1][0].content
    assert [m.role for m in seen[-1][1:]] == ["user", "assistant", "user"]  # the history is sent


def test_llm_oracle_failures_give_the_fallback_and_a_flag() -> None:
    def broken(chat: Chat) -> str:
        raise ConnectionError("server down")

    env = TwentyQuestionsEnv(oracle_backend=ScriptedBackend(broken))
    env.reset(options={"object": "cat"})
    _, reward, _, _, info = env.step("Is it a cat?")
    assert info["answer"] == "No." and "server down" in info["oracle_error"] and not info["success"]
    assert reward == -1.0

    def slow(chat: Chat) -> str:
        time.sleep(0.5)
        return "Yes"

    oracle = LLMOracle(ScriptedBackend(slow), "{secret}", fallback="I don't know.", timeout_s=0.05)
    assert oracle.answer("Is it big?", "whale", []) == "I don't know."
    assert oracle.last_error is not None and "longer than" in oracle.last_error
    empty = LLMOracle(ScriptedBackend(lambda chat: "  "), "{secret}")
    assert empty.answer("Is it big?", "whale", []) == "I don't know." and "empty" in (empty.last_error or "")
    good = LLMOracle(ScriptedBackend(lambda chat: "Yes!"), "{secret}", postprocess=yes_no)
    assert good.answer("Is it big?", "whale", []) == "Yes." and good.last_error is None
    assert isinstance(good, Oracle)
    oracle.close()


def test_oracle_and_backend_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        TwentyQuestionsEnv(oracle=TwentyQuestionsRuleOracle(builtin_objects()), oracle_backend=object())


# -- Guess My City ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Is it in Europe?", "Yes."),
        ("Is it in Asia?", "No."),
        ("Is it Paris?", "Yes."),
        ("Is it Paris, France?", "Yes."),
        ("Is it London?", "No."),
        ("Is it in France?", "Yes."),
        ("Is it a capital city?", "Yes."),
        ("Is it on the coast?", "No."),
        ("Is it in the southern hemisphere?", "No."),
        ("Do people speak French there?", "Yes."),
        ("Does it have more than 5 million people?", "No."),
        ("What continent is it in?", "The city is in Europe."),
        ("What language do people speak?", "Most people there speak French."),
        ("What is it known for?", "It is known for art, fashion and cafés."),
        ("Is it blue?", "I don't know."),
    ],
)
def test_city_oracle_table(question: str, expected: str) -> None:
    paris = next(c for c in builtin_cities() if c["name"] == "Paris")
    assert CityRuleOracle(builtin_cities()).answer(question, paris, []) == expected


def test_city_oracle_never_names_the_city() -> None:
    cities = builtin_cities()
    oracle = CityRuleOracle(cities)
    questions = [*GuessMyCitySolver(cities).bank[:6], "What country is it in?", "What is its name?"]
    for city in cities:
        for question in questions:
            answer = oracle.answer(question, city, [])
            assert not re.search(rf"\b{re.escape(city['name'].lower())}\b", answer.lower())


@pytest.mark.parametrize("action", MALFORMED_ACTIONS)
def test_guess_city_malformed_actions_are_invalid(action: str) -> None:
    env = GuessMyCityEnv()
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(action)
    assert info["valid_action"] is False and reward == -1.0 and not terminated and env.turn == 1


def test_guess_city_solver_finds_every_city() -> None:
    env = GuessMyCityEnv()
    solver = GuessMyCitySolver.for_env(env)
    for i in range(len(env.cities)):
        _, total, info = play(env, solver, options={"index": i})
        assert info["success"] and env.turn <= 20 and total == -(env.turn - 1)


def test_guess_city_with_an_llm_oracle() -> None:
    seen: list[Chat] = []

    def policy(chat: Chat) -> str:
        seen.append(chat)
        return "It is Paris, of course." if "name" in chat[-1].content else "No."

    env = plyground.make("GuessMyCity-v0", oracle_backend=ScriptedBackend(policy))
    env.reset(options={"city": "Paris"})
    _, _, _, _, info = env.step("What is the city's name?")
    assert info["answer"] == "I can't answer that question."  # the leak is scrubbed, as in ArCHer
    assert "Paris, France" in seen[-1][0].content
    _, reward, terminated, _, info = env.step("Is it Paris?")
    assert info["answer"] == "No." and info["success"] and terminated and reward == 0.0  # ArCHer's rule


@pytest.mark.skipif(not SHARED_CITIES.exists(), reason="the benchmark's city list is not checked out")
def test_guess_city_reads_the_benchmark_list() -> None:
    cities = load_cities(SHARED_CITIES)
    assert len(cities) == 100
    mumbai = next(c for c in cities if c["name"] == "Mumbai")
    assert "Bombay" in mumbai["variants"] and mumbai["language"] == "Marathi"
    zibo = next(c for c in cities if c["name"] == "Zibo")
    assert (zibo["country"], zibo["continent"], zibo["population_millions"]) == ("China", "Asia", 2.48)
    env = GuessMyCityEnv(cities=SHARED_CITIES)
    solver = GuessMyCitySolver.for_env(env)
    for i in range(len(env.cities)):
        _, _, info = play(env, solver, options={"index": i})
        assert info["success"] and env.turn <= 20
    _, _, _, _, info = env.reset(options={"city": "Bombay"}) and env.step("Is it Mumbai?")
    assert info["success"]


# -- Car Dealer -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The MSRP is $32,000 and I can do $30,500.", [32000, 30500]),
        ("How about 28k?", [28000]),
        ("I can go to $27.5k", [27500]),
        ("It is 25000 dollars", [25000]),
        ("Only $99 down!", []),
        ("no numbers here", []),
    ],
)
def test_parse_prices(text: str, expected: list[int]) -> None:
    assert parse_prices(text) == expected


def test_compute_reward_follows_the_benchmark() -> None:
    assert compute_reward(50_000, True, 40_000, 45_000) == pytest.approx(45_000 / 45_000)
    assert compute_reward(50_000, False, 40_000, None) == pytest.approx(-0.25)
    assert compute_reward(10_000, False, 40_000, None) == pytest.approx(0.75)
    assert compute_reward(50_000, True, 40_000, 45_000, "revenue") == 45.0
    assert compute_reward(50_000, True, 0, 45_000) == 0.0
    decision, rest = parse_decision("Fine.\nOutput: Decision=Accept MSRP=$40,000 Buy Price=$38,000")
    assert decision == {"car_bought": True, "msrp": 40000, "buy_price": 38000} and rest == "Fine."
    assert parse_decision("no decision")[0] is None


def test_car_dealer_seller_sells_over_many_seeds() -> None:
    env = CarDealerEnv()
    seller = CarDealerSeller()
    sold, rewards = 0, []
    for seed in range(100):
        _obs, total, info = play(env, seller, seed=seed)
        assert env.turn <= 25
        assert info.get("decision") is not None
        sold += info["success"]
        rewards.append(total)
        assert -10.0 <= total <= 2.0
    assert sold >= 95
    assert sum(rewards) / len(rewards) > 0.5


def test_car_dealer_buyer_bargains_and_leaves() -> None:
    env = CarDealerEnv()
    buyer = {
        "personality": "polite",
        "preferred_brands": "a Honda",
        "preferred_type": "sedan",
        "preferred_features": ["sunroof"],
        "budget": 30_000,
    }
    env.reset(options={"buyer": buyer})
    _, reward, terminated, _, info = env.step(
        "Hi! I have a Honda sedan with a sunroof. MSRP $28,000, yours for $36,000."
    )
    assert not terminated and "Would you take $" in info["buyer_line"]
    counter = parse_prices(info["buyer_line"])[-1]
    assert counter <= 30_000
    _, reward, terminated, _, info = env.step(f"Alright, ${counter:,} it is.")
    assert terminated and info["success"] and info["decision"]["buy_price"] == counter
    assert reward == pytest.approx(counter / ((30_000 + 28_000) / 2))
    # holding out far above the budget: the buyer leaves, and the reward is the no-sale one
    env.reset(options={"buyer": buyer})
    for _ in range(10):
        _, reward, terminated, _, info = env.step("This Honda sedan is $80,000, final price.")
        if terminated:
            break
    assert terminated and not info["success"]
    msrp = info["decision"]["msrp"]
    assert msrp == min(80_000, 2 * reference_msrp("Honda", "sedan"))
    assert reward == pytest.approx(-(30_000 - msrp) / msrp)


def test_car_dealer_line_limit_asks_for_a_decision() -> None:
    env = CarDealerEnv(max_lines=6)
    assert env.max_turns == 3
    env.reset(seed=1)
    for _ in range(3):
        _, _reward, terminated, truncated, info = env.step(
            "I have a Toyota truck you might like, with a sunroof."
        )
    assert terminated and not truncated and info["decision"] is not None and not info["success"]
    buyer = env.rule_buyer
    state = BuyerState(offer=5_000)
    profile = {**env.profile(), "state": state}
    assert "Decision=Accept" in buyer.answer(FINAL_DECISION_PROMPT, profile, [])


@pytest.mark.parametrize("action", MALFORMED_ACTIONS)
def test_car_dealer_malformed_actions(action: str) -> None:
    env = CarDealerEnv()
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(action)
    assert reward == 0.0 and not terminated and env.turn == 1 and obs.startswith("Beginning of Conversation")
    if action in ("", "x" * 10_000):
        assert info["valid_action"] is False


def test_car_dealer_llm_buyer() -> None:
    def buyer(chat: Chat) -> str:
        if "$" in chat[-1].content:
            return "Deal.\nOutput: Decision=Accept MSRP=$40,000 Buy Price=$35,000"
        return "I want a fast car."

    env = CarDealerEnv(oracle_backend=ScriptedBackend(buyer))
    env.reset(options={"buyer": {"budget": 50_000}})
    _, reward, terminated, _, info = env.step("Hello!")
    assert not terminated and info["buyer_line"] == "I want a fast car."
    obs, reward, terminated, _, info = env.step("This one is $35,000.")
    assert terminated and info["success"] and reward == pytest.approx(35_000 / 45_000)
    assert "Output:" not in obs and obs.endswith("The buyer bought the car for $35,000 (MSRP $40,000).")


def test_car_dealer_snapshot_restore() -> None:
    env = CarDealerEnv()
    seller = CarDealerSeller()
    obs, _ = env.reset(seed=4)
    obs = env.step(seller.act(obs))[0]
    state = env.snapshot()
    rest = []
    while not env.done:
        step = env.step(seller.act(obs))
        obs = step[0]
        rest.append(step[:4])
    env.reset(seed=5)
    obs = env.restore(state)
    again = []
    while not env.done:
        step = env.step(seller.act(obs))
        obs = step[0]
        again.append(step[:4])
    assert rest == again


@pytest.mark.parametrize("env_id", ["TwentyQuestions-v0", "GuessMyCity-v0", "CarDealer-v0"])
def test_registered_and_checked(env_id: str) -> None:
    env_spec = plyground.envs.spec(env_id)
    check_env(plyground.make(env_id), reward_range=env_spec.reward_range)


# -- the oracle backend by name or spec (what --env-arg and YAML configs can give) -------------------
LLM_ORACLE_ENVS = ["TwentyQuestions-v0", "GuessMyCity-v0", "CarDealer-v0"]


@pytest.mark.parametrize("env_id", LLM_ORACLE_ENVS)
def test_oracle_backend_spec_is_built_on_first_use_and_closed_with_the_env(env_id: str) -> None:
    def policy(chat: Chat) -> str:
        return "Yes, I think so."

    env = plyground.make(env_id, oracle_backend={"name": "scripted", "policy": policy})
    assert isinstance(env.oracle, LLMOracle) and env.oracle.backend is None  # lazy: nothing built yet
    env.reset(seed=0)
    _, _, _, _, info = env.step("Is it alive?")
    assert "oracle_error" not in info
    assert info.get("answer", info.get("buyer_line")) in ("Yes.", "Yes, I think so.")
    backend = env.oracle.backend
    closed: list[bool] = []
    backend.close = lambda: closed.append(True)
    env.close()
    assert closed == [True] and env.oracle.backend is None


def test_oracle_backend_by_name_and_model_and_by_policy_string() -> None:
    env = plyground.make(
        "TwentyQuestions-v0",
        oracle_backend={"name": "scripted", "policy": "plyground.envs.guess_number:bisection_chat_policy"},
    )
    env.reset(seed=0)
    _, _, _, _, info = env.step("Is it alive?")
    assert info["answer"] == "No." and "oracle_error" not in info  # a number is not "yes"
    env.close()
    # A name plus oracle_model= becomes the spec {"name": ..., "model": ...} (built lazily).
    env = plyground.make("GuessMyCity-v0", oracle_backend="openai", oracle_model="served-name")
    assert env.oracle.backend_spec == {"name": "openai", "model": "served-name"} and env.oracle.backend is None
    env.close()


@pytest.mark.parametrize("env_id", LLM_ORACLE_ENVS)
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"oracle_backend": 5}, ValueError, "oracle_backend must be an inference backend"),
        ({"oracle_backend": ["hf"]}, ValueError, "oracle_backend must be an inference backend"),
        ({"oracle_backend": object()}, ValueError, "oracle_backend must be an inference backend"),
        ({"oracle_backend": "nope"}, UnknownNameError, "Unknown oracle backend 'nope'"),
        ({"oracle_backend": {"model": "m"}}, ValueError, "needs a 'name'"),
        ({"oracle_backend": {"name": "scripted"}}, ValueError, "needs a policy"),
        ({"oracle_backend": "openai"}, ValueError, "missing a required argument: 'model'"),
        ({"oracle_backend": {"name": "hf", "modle": "tiny"}}, ValueError, "unexpected keyword argument 'modle'"),
        ({"oracle_backend": {"name": "hf", "model": "tiny"}, "oracle_model": "default"}, ValueError, "contradicts"),
        ({"oracle_model": "tiny"}, ValueError, "give oracle_backend= too"),
        ({"oracle_backend": "hf", "oracle_model": 3}, ValueError, "oracle_model must be a model name"),
    ],
)
def test_a_bad_oracle_backend_fails_in_the_constructor(
    env_id: str, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=re.escape(match)):
        plyground.make(env_id, **kwargs)


def test_an_oracle_backend_object_with_oracle_model_is_refused() -> None:
    with pytest.raises(ValueError, match="not to a backend object"):
        TwentyQuestionsEnv(oracle_backend=ScriptedBackend(lambda chat: "Yes"), oracle_model="tiny")


@pytest.mark.parametrize("env_id", LLM_ORACLE_ENVS)
def test_an_oracle_backend_that_cannot_be_built_or_reached_never_breaks_a_step(env_id: str) -> None:
    unbuildable = {"name": "hf", "model": "/nonexistent/model-folder"}
    unreachable = {"name": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "timeout_s": 5,
                   "max_retries": 0}
    for spec, reason in ((unbuildable, "could not be built"), (unreachable, "the oracle backend failed")):
        env = plyground.make(env_id, oracle_backend=spec)
        env.reset(seed=0)
        for _ in range(2):  # the fallback answer every time; the build is not retried
            obs, _, _, _, info = env.step("Is it in Europe?")
            assert reason in info["oracle_error"] and isinstance(obs, str) and not info["success"]
        env.close()


def test_the_env_arg_path_builds_an_llm_oracle_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``plyground eval CarDealer-v0 --env-arg oracle_backend=hf --env-arg oracle_model=tiny``: the
    buyer is the tiny model (the dealer is a scripted policy; the buyer answers every line), loaded
    once and shared by the concurrent envs, and the run records the spec, not an object."""
    from plyground.cli import EXIT_OK, EXIT_USAGE, _parse_kv, main
    from plyground.inference.hf import HFBackend

    built: list[HFBackend] = []
    real_init = HFBackend.__init__

    def counting_init(self: HFBackend, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(HFBackend, "__init__", counting_init)
    assert _parse_kv(["oracle_backend=hf", "oracle_model=tiny"]) == {"oracle_backend": "hf", "oracle_model": "tiny"}
    args = ["eval", "CarDealer-v0", "--backend", "scripted", "--model", "plyground.envs.guess_number:bisection_chat_policy",
            "--env-arg", "oracle_backend=hf", "--env-arg", "oracle_model=tiny", "--episodes", "3", "--max-turns", "2",
            "--concurrency", "3", "--out", str(tmp_path), "--no-progress", "--json"]
    assert main(args) == EXIT_OK, capsys.readouterr().err
    assert len(built) == 1  # one oracle model for the three concurrent envs
    trajectories = [json.loads(line) for line in (tmp_path / "trajectories.jsonl").read_text().splitlines()]
    assert len(trajectories) == 3
    for trajectory in trajectories:
        turns = trajectory["turns"]
        assert len(turns) == 2 and all("oracle_error" not in t["info"] and t["info"]["buyer_line"] for t in turns)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["identity"]["env_kwargs"] == {"oracle_backend": "hf", "oracle_model": "tiny"}
    # A name that is no backend fails before any episode, as a usage error.
    capsys.readouterr()
    assert main(["search", "TwentyQuestions-v0", "--env-arg", "oracle_backend=nope"]) == EXIT_USAGE
    assert "Unknown oracle backend 'nope'" in capsys.readouterr().err


def test_oracles_of_one_spec_share_one_backend_until_the_last_closes() -> None:
    """Concurrent envs with the same oracle spec use one backend; the last close closes it."""
    spec = {"name": "scripted", "policy": "plyground.envs.guess_number:bisection_chat_policy"}
    first, second = (plyground.make("TwentyQuestions-v0", oracle_backend=dict(spec)) for _ in range(2))
    other = plyground.make("TwentyQuestions-v0", oracle_backend={**spec, "tokenizer": None})
    for env in (first, second, other):
        env.reset(seed=0)
        env.step("Is it an animal?")
    oracles = [env.unwrapped.oracle for env in (first, second, other)]  # type: ignore[attr-defined]
    assert oracles[0].backend is oracles[1].backend is not None
    assert oracles[2].backend is not oracles[0].backend  # another spec, another backend
    shared = oracles[0].backend
    closed: list[bool] = []
    shared.close = lambda: closed.append(True)  # type: ignore[method-assign]
    first.close()
    assert not closed and oracles[1].backend is shared
    second.close()
    assert closed == [True]
    other.close()
