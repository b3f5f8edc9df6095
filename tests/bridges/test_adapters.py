"""Adapters to other libraries: TRL, verl (out) and TextArena, verifiers (in).

TRL, TextArena and verifiers (< 0.4, its classic API) are tested against the installed libraries;
each such test skips, naming the install command, where its library is missing. verl cannot be
installed here (it pulls vLLM/SGLang and Ray), so its agent loop is tested against a STAND-IN of
verl's ``AgentLoopBase`` / ``AgentLoopOutput`` / ``register`` signatures, labelled below.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import plyground.envs as penvs
from plyground.envs.checker import check_env
from plyground.evaluation.harness import EvalConfig, evaluate
from plyground.inference.scripted import ScriptedBackend
from plyground.types import Chat


def _need(module: str, install: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.skip(f"{module} is not installed: {install}")


# -- TextArena ------------------------------------------------------------------------------------
TA_GAMES = ["TicTacToe-v0", "GuessTheNumber-v0", "Nim-v0", "ConnectFour-v0", "Mastermind-v0"]


@pytest.fixture(scope="module")
def textarena_ids() -> list[str]:
    _need("textarena", "pip install textarena")
    from plyground.bridges.textarena import register_textarena

    return [s.id for s in register_textarena(TA_GAMES, max_turns=12)]


def test_textarena_games_keep_the_textenv_contract(textarena_ids: list[str]) -> None:
    for env_id in textarena_ids:
        env = penvs.make(env_id)
        check_env(env)  # determinism, malformed actions, horizon, snapshot/restore by replay
        env.close()


def test_textarena_single_and_two_player_episodes(textarena_ids: list[str]) -> None:
    solo = penvs.make("TextArena-GuessTheNumber-v0")
    obs, info = solo.reset(seed=3)
    assert info["num_players"] == 1 and "Guess The Number" in obs
    # Bisect: TextArena answers "higher"/"lower"; the win gives reward 1 and success.
    low, high, reward, done, steps = 1, 20, 0.0, False, 0
    while not done:
        guess = (low + high) // 2
        obs, reward, done, truncated, info = solo.step(f"[{guess}]")
        steps += 1
        assert info["valid_action"]
        if "higher" in obs.lower():
            low = guess + 1
        elif "lower" in obs.lower():
            high = guess - 1
        done = done or truncated
    assert reward == 1.0 and info["success"] and steps <= 5

    duel = penvs.make("TextArena-TicTacToe-v0")
    obs, info = duel.reset(seed=0)
    assert info["num_players"] == 2 and "Tic Tac Toe" in obs
    obs, reward, terminated, _, info = duel.step("[4]")
    assert info["valid_action"] and "Player 1" in obs  # the opponent's reply comes in the same observation
    assert not obs.startswith("[GAME] You are Player 0")  # only what is new (delta mode)
    _, _, terminated, _, info = duel.step("garbage")
    assert info["valid_action"] is False and not terminated  # TextArena allows one retry


def test_textarena_interleaved_games_replay_like_solo_games(textarena_ids: list[str]) -> None:
    """Each env keeps TextArena's global random state to itself, so search can interleave games."""

    def play(env: Any, seed: int) -> list[str]:
        out = [env.reset(seed=seed)[0]]
        for move in ("[4]", "[0]", "[8]"):
            obs, _, term, trunc, _ = env.step(move)
            out.append(obs)
            if term or trunc:
                break
        return out

    a, b = penvs.make("TextArena-ConnectFour-v0"), penvs.make("TextArena-ConnectFour-v0")
    solo = play(a, 7)
    a.reset(seed=7)
    b.reset(seed=8)
    mixed = [a.reset(seed=7)[0]]
    for move in ("[4]", "[0]", "[8]"):
        b.step("[1]")
        obs, _, term, trunc, _ = a.step(move)
        mixed.append(obs)
        if term or trunc:
            break
    assert mixed == solo


def test_eval_harness_runs_on_five_textarena_games(textarena_ids: list[str]) -> None:
    def policy(chat: Chat) -> str:
        return "<action>[1]</action>"

    for env_id in textarena_ids:
        summary = evaluate(EvalConfig(env_id=env_id, episodes=2, concurrency=2), ScriptedBackend(policy),
                           progress=False)
        assert summary.trajectories == 2 and summary.errors == 0, (env_id, summary.error_examples)


def test_textarena_backend_opponent(textarena_ids: list[str]) -> None:
    from plyground.bridges.textarena import BackendOpponent, TextArenaEnv

    seen: list[str] = []

    def opponent_policy(chat: Chat) -> str:
        seen.append(chat[-1].content)
        return "Action: [0 1]"

    env = TextArenaEnv("Nim-v0", opponent=BackendOpponent(ScriptedBackend(opponent_policy)))
    env.reset(seed=0)
    obs, *_ = env.step("[2 5]")
    assert seen and "[Player 1] [0 1]" in obs


def test_textarena_offline_list_is_committed() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "textarena_offline.md"
    text = doc.read_text(encoding="utf-8")
    assert "## Work offline" in text and "## Do not work offline" in text
    assert "| TicTacToe-v0 |" in text and re.search(r"\*\*\d+ of \d+ game ids work offline", text)


# -- TRL ------------------------------------------------------------------------------------------
def test_trl_environment_factory_follows_grpo_trainer_contract() -> None:
    """Drives the factory exactly as trl's GRPOTrainer (1.16) does, without a model."""
    _need("trl", "pip install trl")
    from transformers.utils import get_json_schema

    from plyground.bridges.trl import environment_factory, trl_dataset

    # The installed trl has the hook (read from source: importing GRPOTrainer costs ~20 s here).
    spec = importlib.util.find_spec("trl.trainer.grpo_trainer")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text(encoding="utf-8")
    assert "environment_factory: EnvironmentFactory" in source and "environment.reset(**reset_kwargs)" in source
    factory = environment_factory("GuessNumber-v0")
    # GRPOTrainer.__init__: probe one instance; reset/get_reward are hooks, other public functions tools.
    instance = factory()
    members = [name for name, _ in inspect.getmembers(type(instance), predicate=inspect.isfunction)]
    public = sorted(m for m in members if not m.startswith("_"))
    assert public == ["act", "get_reward", "reset"]
    schema = get_json_schema(instance.act)  # what the chat template renders for the tool
    assert schema["function"]["name"] == "act"
    assert schema["function"]["parameters"]["required"] == ["action"]
    assert factory.__name__ == "GuessNumber_v0_TRLEnv"  # the reward column's name

    # _generate_and_score_completions: reset(**row) per rollout, observation appended to the prompt.
    rows = trl_dataset("GuessNumber-v0", 2)
    assert rows.column_names == ["prompt", "seed"] and rows[0]["prompt"][0]["role"] == "system"
    observation = instance.reset(**rows[0])
    reference = penvs.make("GuessNumber-v0")
    assert observation == reference.reset(seed=0)[0]
    # _tool_call_loop: sync_tool_dict[name](**arguments); a raised error would become {"error": ...}.
    tools = {m.__name__: m for m in (instance.act,)}
    total, done = 0.0, False
    for guess in ("50", "25", "75", "10", "90", "1", "100", "60", "40", "5", "95", "30"):
        result = tools["act"](**{"action": guess})
        assert isinstance(result, str)
        _, reward, term, trunc, _ = reference.step(guess)
        total += reward
        if term or trunc:
            done = True
            break
    assert done and "episode finished" in result
    assert tools["act"](action="1").startswith("The episode is over")
    assert instance.get_reward() == pytest.approx(total)
    # Pool reuse: a second reset starts a fresh episode on the same instance.
    assert instance.reset(**rows[1]) == reference.reset(seed=1)[0] and instance.get_reward() == 0.0


@pytest.mark.slow
@pytest.mark.model
def test_grpo_trainer_runs_one_step_through_the_adapter(tmp_path: Path) -> None:
    """The real GRPOTrainer, one step, tiny random model (about 45 s on 2 shared cores: slow)."""
    _need("trl", "pip install trl")
    os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
    from trl import GRPOConfig, GRPOTrainer
    from trl.chat_template_utils import qwen3_chat_template

    from plyground.bridges.trl import environment_factory, trl_dataset
    from plyground.inference.models import tiny_model

    model, tokenizer = tiny_model()
    tokenizer.chat_template = qwen3_chat_template  # a tool-calling template TRL can parse (ChatML tokens)
    tokenizer.padding_side = "left"
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=8, report_to=[], use_cpu=True, save_strategy="no",
                      max_tool_calling_iterations=2)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=args,
                          train_dataset=trl_dataset("GuessNumber-v0", 4),
                          environment_factory=environment_factory("GuessNumber-v0"))
    assert [t.__name__ for t in trainer.tools] == ["act"]
    assert "GuessNumber_v0_TRLEnv" in trainer.reward_func_names
    trainer.train()
    logged = trainer.state.log_history[0]
    assert logged["step"] == 1 and "rewards/GuessNumber_v0_TRLEnv/mean" in logged


# -- verl (STAND-IN: verl is not installable here) ------------------------------------------------
class StandInAgentLoopOutput(BaseModel):
    """STAND-IN for verl.experimental.agent_loop.agent_loop.AgentLoopOutput (same fields)."""

    prompt_ids: list[int]
    response_ids: list[int]
    response_mask: list[int]
    response_logprobs: list[float] | None = None
    routed_experts: Any | None = None
    multi_modal_data: dict[str, Any] | None = None
    reward_score: float | None = None
    num_turns: int = 0
    metrics: dict[str, Any]
    extra_fields: dict[str, Any] = {}


class StandInAgentLoopBase:
    """STAND-IN for verl's AgentLoopBase: its constructor signature and its apply_chat_template."""

    def __init__(self, trainer_config: Any, server_manager: Any, tokenizer: Any, processor: Any,
                 dataset_cls: Any, dataset_config: Any, **kwargs: Any) -> None:
        self.config = trainer_config.config
        self.server_manager = server_manager
        self.tokenizer = tokenizer
        self.processor = processor
        self.dataset_config = dataset_config.config

    async def apply_chat_template(self, messages: list[dict[str, Any]], tools: Any = None, images: Any = None,
                                  videos: Any = None, remove_system_prompt: bool = False) -> list[int]:
        text = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"
        return self.tokenizer.encode(text)


_STAND_IN_REGISTRY: dict[str, dict[str, str]] = {}


def stand_in_register(agent_name: str) -> Any:
    """STAND-IN for verl's register: records the class's qualified name for hydra."""

    def decorator(cls: type) -> type:
        _STAND_IN_REGISTRY[agent_name] = {"_target_": f"{cls.__module__}.{cls.__qualname__}"}
        return cls

    return decorator


class CharTokenizer:
    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids)


class ScriptedServerManager:
    """Answers like verl's AsyncLLMServerManager.generate: a TokenOutput-like object."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[list[int]] = []

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any],
                       image_data: Any = None, video_data: Any = None) -> Any:
        self.prompts.append(list(prompt_ids))
        ids = [ord(c) for c in self.replies.pop(0)]

        class TokenOutput(BaseModel):
            token_ids: list[int]
            log_probs: list[float] | None = None

        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids))


def _config(response_length: int) -> Any:
    class Rollout:
        pass

    rollout = Rollout()
    rollout.response_length = response_length  # type: ignore[attr-defined]

    class Wrap:
        def __init__(self, config: Any) -> None:
            self.config = config

    actor = type("A", (), {"rollout": rollout})()
    return Wrap(type("C", (), {"actor_rollout_ref": actor})()), Wrap({})


def test_verl_agent_loop_against_stand_in_signatures() -> None:
    from plyground.bridges.verl import AGENT_NAME, make_agent_loop_class, verl_rows

    cls = make_agent_loop_class(StandInAgentLoopBase, StandInAgentLoopOutput, stand_in_register)
    assert _STAND_IN_REGISTRY[AGENT_NAME] == {"_target_": "plyground.bridges.verl.PlygroundAgentLoop"}
    row = verl_rows("GuessNumber-v0", 1, seed=5)[0]
    assert row["agent_name"] == AGENT_NAME and row["extra_info"]["seed"] == 5
    trainer_config, dataset_config = _config(response_length=4096)
    replies = ["Action: 50", "<action>25</action>", "75", "12", "88", "3", "97", "40", "60", "30", "70", "20"]
    server = ScriptedServerManager(replies)
    loop = cls(trainer_config=trainer_config, server_manager=server, tokenizer=CharTokenizer(), processor=None,
               dataset_cls=None, dataset_config=dataset_config)
    # verl's AgentLoopWorker calls: await agent_loop.run(sampling_params, **row)
    out = asyncio.run(loop.run({"temperature": 1.0}, **{k: v for k, v in row.items() if k != "agent_name"}))
    assert isinstance(out, StandInAgentLoopOutput)
    assert len(out.response_ids) == len(out.response_mask) == len(out.response_logprobs or [])
    reference = penvs.make("GuessNumber-v0")
    reference.reset(seed=5)
    total, turns = 0.0, 0
    for action in ("50", "25", "75", "12", "88", "3", "97", "40", "60", "30", "70", "20"):
        _obs, reward, term, trunc, _ = reference.step(action)
        total, turns = total + reward, turns + 1
        if term or trunc:
            break
    assert out.reward_score == pytest.approx(total) and out.extra_fields["turns"] == turns
    assert out.extra_fields["actions"][:2] == ["50", "25"]  # parsed like the plyground rollout
    generated = sum(len(r) for r in replies[:turns])
    assert sum(out.response_mask) == generated  # model tokens are trained on, env tokens are not
    text = CharTokenizer().decode(out.response_ids)
    assert text.startswith("Action: 50<user>") and CharTokenizer().decode(out.prompt_ids).startswith("<system>")
    # Each model call sees the prompt plus everything so far (multi-turn, one sequence).
    assert server.prompts[1][: len(out.prompt_ids)] == out.prompt_ids


def test_verl_agent_loop_cuts_at_response_length() -> None:
    from plyground.bridges.verl import make_agent_loop_class, verl_rows

    cls = make_agent_loop_class(StandInAgentLoopBase, StandInAgentLoopOutput)
    trainer_config, dataset_config = _config(response_length=30)
    loop = cls(trainer_config, ScriptedServerManager(["50"] * 20), CharTokenizer(), None, None, dataset_config)
    row = verl_rows("GuessNumber-v0", 1)[0]
    out = asyncio.run(loop.run({}, extra_info=row["extra_info"]))
    assert len(out.response_ids) == 30 and out.extra_fields["truncated_response"]


def test_verl_real_registration_when_installed() -> None:
    _need("verl", "pip install verl (needs vLLM or SGLang and Ray; not installable here)")
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry

    import plyground.bridges.verl as bridge

    assert bridge.PlygroundAgentLoop is not None
    assert _agent_loop_registry[bridge.AGENT_NAME]["_target_"] == "plyground.bridges.verl.PlygroundAgentLoop"


# -- verifiers ------------------------------------------------------------------------------------
TOY_ENV = textwrap.dedent('''
    """A verifiers environment module, as published ones are: load_environment() builds it."""
    import verifiers as vf
    from datasets import Dataset


    def load_environment(n: int = 4, multi_turn: bool = False):
        data = Dataset.from_list([{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(n)])

        def correct(completion, answer, **kwargs) -> float:
            replies = [m["content"] for m in completion if m["role"] == "assistant"]
            return 1.0 if replies and replies[-1].strip() == answer else 0.0

        rubric = vf.Rubric(funcs=[correct])
        if not multi_turn:
            return vf.SingleTurnEnv(dataset=data, eval_dataset=data, rubric=rubric,
                                    system_prompt="Answer with the number only.")

        class Retry(vf.MultiTurnEnv):
            async def env_response(self, messages, state, **kwargs):
                if messages[-1]["content"].strip() == state["answer"]:
                    state["final_env_response"] = [vf.UserMessage(content="Correct!")]
                    return [vf.UserMessage(content="Correct!")]
                return [vf.UserMessage(content="Wrong, try again.")]

        return Retry(dataset=data, eval_dataset=data, rubric=rubric, max_turns=3,
                     system_prompt="Answer with the number only.")
''')


@pytest.fixture()
def toy_verifiers_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    vf = _need("verifiers", "pip install 'verifiers<0.4'")
    if not hasattr(vf, "load_environment"):
        pytest.skip("verifiers >= 0.4 has only the v1 API; the adapter wraps the classic one: "
                    "pip install 'verifiers<0.4'")
    (tmp_path / "plyground_toy_sums.py").write_text(TOY_ENV, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "plyground-toy-sums"


def _sum_policy(wrong_first: bool = False) -> Any:
    def policy(chat: Chat) -> str:
        question = next(m.content for m in chat if m.role == "user")
        n = int(re.search(r"What is (\d+)", question).group(1))  # type: ignore[union-attr]
        if wrong_first and sum(m.role == "assistant" for m in chat) == 0:
            return "-1"
        return str(2 * n)

    return policy


def test_verifiers_single_turn_env_through_the_eval_harness(toy_verifiers_env: str) -> None:
    from plyground.bridges.verifiers_env import register_verifiers

    env_id = register_verifiers(toy_verifiers_env).id
    assert env_id == "Verifiers-plyground-toy-sums"
    env = penvs.make(env_id)
    assert env.instructions == "Answer with the number only." and env.max_turns == 1
    check_env(env)
    obs, info = env.reset(seed=0)
    n = int(re.search(r"What is (\d+)", obs).group(1))  # type: ignore[union-attr]
    _, reward, terminated, _, info = env.step(str(2 * n))
    assert terminated and reward == 1.0 and info["success"] and info["metrics"]["correct"] == 1.0
    env.close()
    summary = evaluate(EvalConfig(env_id=env_id, episodes=4), ScriptedBackend(_sum_policy()), progress=False)
    assert summary.trajectories == 4 and summary.success_rate == 1.0 and summary.errors == 0


def test_verifiers_multi_turn_env(toy_verifiers_env: str) -> None:
    from plyground.bridges.verifiers_env import VerifiersEnv

    env = VerifiersEnv(toy_verifiers_env, env_args={"multi_turn": True})
    assert env.max_turns == 3
    check_env(env)
    obs, info = env.reset(options={"index": 2})
    assert obs == "What is 2 + 2?"
    obs, reward, terminated, _, _ = env.step("5")
    assert (obs, reward, terminated) == ("Wrong, try again.", 0.0, False)
    state = env.snapshot()
    obs, reward, terminated, _, info = env.step("4")
    assert terminated and reward == 1.0 and obs.startswith("Correct!") and info["metrics"]["num_turns"] == 2
    assert env.restore(state) == "Wrong, try again."  # search: snapshot by replay
    env.close()
    summary = evaluate(EvalConfig(env_id=_register_multi(toy_verifiers_env), episodes=3),
                       ScriptedBackend(_sum_policy(wrong_first=True)), progress=False)
    assert summary.success_rate == 1.0 and summary.mean_turns == 2.0


def _register_multi(env_id: str) -> str:
    from plyground.bridges.verifiers_env import register_verifiers

    return register_verifiers(env_id, plyground_id="Verifiers-toy-sums-multi", env_args={"multi_turn": True}).id


# STAND-IN for verifiers' classic Environment / Rubric interface, so the adapter's contract is tested
# even where verifiers is not installed: dataset rows with a chat ``prompt`` and an ``answer``,
# ``async rollout(input, client, model, sampling_args)`` asking ``client.get_response(prompt=...)``
# for each model turn and ``env_response`` between turns, and a rubric whose ``score_rollout(state)``
# writes ``state["reward"]`` and ``state["metrics"]``.
class StandInRubric:
    def __init__(self, funcs: list[Any]) -> None:
        self.funcs = funcs

    async def score_rollout(self, state: dict[str, Any]) -> None:
        metrics = {f.__name__: float(f(completion=state["completion"], answer=state["answer"])) for f in self.funcs}
        state["metrics"], state["reward"] = metrics, sum(metrics.values())

    async def cleanup(self, state: dict[str, Any]) -> None:
        pass


class StandInMultiTurnEnv:
    def __init__(self, rows: list[dict[str, str]], rubric: StandInRubric, max_turns: int = 3) -> None:
        self.system_prompt = "Reply with the secret word."
        self.rubric, self.max_turns, self.score_rollouts, self.pass_threshold = rubric, max_turns, True, 0.5
        self.rows = [{"prompt": [{"role": "system", "content": self.system_prompt},
                                 {"role": "user", "content": r["question"]}], "answer": r["answer"],
                      "example_id": i} for i, r in enumerate(rows)]

    def get_eval_dataset(self, n: int = -1) -> list[dict[str, Any]]:
        return self.rows if n < 0 else self.rows[:n]

    async def env_response(self, messages: list[dict[str, Any]], state: dict[str, Any]) -> list[dict[str, Any]]:
        if messages[-1]["content"] == state["answer"]:
            state["final_env_response"] = [{"role": "user", "content": "Yes!"}]
            return state["final_env_response"]  # type: ignore[no-any-return]
        return [{"role": "user", "content": f"No. It starts with {state['answer'][0]}."}]

    async def rollout(self, input: dict[str, Any], client: Any, model: str, sampling_args: Any = None) -> Any:
        state: dict[str, Any] = {"answer": input["answer"], "final_env_response": None, "turns": 0}
        messages = list(input["prompt"])
        while state["turns"] < self.max_turns and state["final_env_response"] is None:
            response = await client.get_response(prompt=messages, model=model, sampling_args=sampling_args,
                                                 tools=None, state=state)
            messages.append({"role": "assistant", "content": response.message.content})
            state["turns"] += 1
            reply = await self.env_response(messages, state)
            if state["final_env_response"] is None and state["turns"] < self.max_turns:
                messages += reply
        state["completion"] = messages[len(input["prompt"]):]
        return state


def test_verifiers_adapter_contract_against_stand_in() -> None:
    from plyground.bridges.verifiers_env import VerifiersEnv

    def exact(completion: list[dict[str, Any]], answer: str) -> float:
        return float([m for m in completion if m["role"] == "assistant"][-1]["content"] == answer)

    stand_in = StandInMultiTurnEnv([{"question": "Guess the fruit.", "answer": "pear"},
                                    {"question": "Guess the tree.", "answer": "oak"}], StandInRubric([exact]))
    env = VerifiersEnv(environment=stand_in)
    assert env.instructions == "Reply with the secret word." and env.max_turns == 3
    check_env(env)
    assert env.reset(options={"index": 1})[0] == "Guess the tree."
    assert env.step("elm")[:3] == ("No. It starts with o.", 0.0, False)
    obs, reward, terminated, _, info = env.step("oak")
    assert terminated and reward == 1.0 and info["success"] and obs.startswith("Yes!")
    env.reset(options={"index": 0})
    env.reset(options={"index": 0})  # a reset mid-episode abandons the running rollout cleanly
    for _ in range(3):
        obs, reward, terminated, _, info = env.step("apple")
    assert terminated and reward == 0.0 and not info["success"]
    env.close()
