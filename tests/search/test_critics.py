"""Value-model critics for MCTS: ``ValueCritic`` (a batched ``q_fn``), its adapter over ArCHer's
``DoubleCritic``, loading an ArCHer checkpoint's critic, the failure policy, and the CLI's
``--critic archer:PATH``."""

from __future__ import annotations

import json
import math
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest
import torch
from chain_env import ChainEnv

from plyground.cli import EXIT_OK, EXIT_USAGE, main
from plyground.envs import make
from plyground.envs.lmrl.maze import DOUBLE_T_MAZE, MOVES
from plyground.search import Critic, MCTSConfig, Node, Proposal, RandomProposer, SelfCritic, ValueCritic, mcts
from plyground.search.critics import load_archer_critic, return_range
from plyground.search.evaluate import default_config
from plyground.search.tree import root_node, step_child
from plyground.trainers.core.critic import CriticConfig, DoubleCritic, encode_texts, state_text


# -- a maze oracle: the shortest-path distance after the move -----------------------------------------
def _goal_distances() -> dict[tuple[int, int], int]:
    dist = {g: 0 for g in DOUBLE_T_MAZE.goals}
    queue = deque(DOUBLE_T_MAZE.goals)
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES.values():
            nxt = (r + dr, c + dc)
            if DOUBLE_T_MAZE.is_open(nxt) and nxt not in dist:
                dist[nxt] = dist[(r, c)] + 1
                queue.append(nxt)
    return dist


DIST = _goal_distances()
FAR = max(DIST.values())


def _after(node: Node, action: str) -> tuple[int, int]:
    r, c = node.info["position"]
    dr, dc = MOVES.get(action, (0, 0))
    return (r + dr, c + dc) if DOUBLE_T_MAZE.is_open((r + dr, c + dc)) else (r, c)


def oracle(nodes: list[Node], actions: list[str]) -> list[float]:
    """1 at the goal, 0 at the farthest cell: prefers the expert's (shortest-path) move."""
    return [1.0 - DIST[_after(n, a)] / FAR for n, a in zip(nodes, actions, strict=True)]


def liar(nodes: list[Node], actions: list[str]) -> list[float]:
    """The opposite: prefers moves away from the goal."""
    return [DIST[_after(n, a)] / FAR for n, a in zip(nodes, actions, strict=True)]


def maze() -> Any:
    return make("Maze-v0")


def test_both_critics_are_critics() -> None:
    assert isinstance(ValueCritic(oracle), Critic)
    assert isinstance(SelfCritic(backend=None), Critic)  # type: ignore[arg-type]


def test_an_oracle_value_critic_lifts_mcts_success_at_a_small_budget() -> None:
    start = time.perf_counter()
    budget, seeds = 12, range(16)
    wins = {"none": 0, "oracle": 0}
    for s in seeds:
        cfg = default_config("mcts", budget, s)  # the CLI's MCTS: rollout none, dedupe
        wins["none"] += mcts(maze, RandomProposer(seed=s), cfg, seed=s).success
        critic = ValueCritic(oracle)
        result = mcts(maze, RandomProposer(seed=s), cfg, critic=critic, seed=s)
        wins["oracle"] += result.success
        assert result.stats.proposer_calls <= budget
        # one q_fn call per expansion, every (node, proposal) pair of it counted
        assert critic.calls == result.stats.nodes_expanded and result.stats.critic_calls == critic.prompts > 0
        assert critic.failures == critic.errors == 0
    assert wins["oracle"] >= 12 and wins["oracle"] >= wins["none"] + 4, wins
    assert time.perf_counter() - start < 10


def test_alpha_one_ignores_even_a_misleading_critic() -> None:
    # alpha weights Q_mcts against Qhat in selection; with rollouts (not rollout="none", where a
    # leaf is worth its Qhat) alpha = 1 leaves the search exactly as without a critic.
    for s in range(4):
        cfg = MCTSConfig(simulations=40, max_calls=12, k=4, rollout="random", rollout_depth=12, alpha=1.0, seed=s)
        plain = mcts(maze, RandomProposer(seed=s), cfg, seed=s)
        critic = ValueCritic(liar)
        misled = mcts(maze, RandomProposer(seed=s), cfg, critic=critic, seed=s)
        assert critic.prompts > 0
        assert [t.action for t in misled.trajectory.turns] == [t.action for t in plain.trajectory.turns]
        assert misled.success == plain.success
        assert (misled.stats.simulations, misled.stats.nodes_expanded, misled.stats.env_steps) == (
            plain.stats.simulations, plain.stats.nodes_expanded, plain.stats.env_steps
        )
        assert plain.root is not None and misled.root is not None
        visits = [(n.depth, n.action, n.visits, n.value_sum) for n in plain.root.walk()]
        assert [(n.depth, n.action, n.visits, n.value_sum) for n in misled.root.walk()] == visits
    # while with alpha < 1 the same critic does steer it
    cfg = default_config("mcts", 12, 0)
    assert sum(mcts(maze, RandomProposer(seed=s), cfg, critic=ValueCritic(liar), seed=s).success for s in range(8)) < sum(
        mcts(maze, RandomProposer(seed=s), cfg, critic=ValueCritic(oracle), seed=s).success for s in range(8)
    )


# -- the failure policy -------------------------------------------------------------------------------
def _raises(states: list[Any], actions: list[str]) -> list[float]:
    raise RuntimeError("value model down")


@pytest.mark.parametrize(
    ("q_fn", "raised"),
    [(_raises, True), (lambda s, a: [float("nan")] * len(a), False), (lambda s, a: [math.inf] * len(a), False),
     (lambda s, a: [0.5], True)],  # the wrong number of values counts as an error
    ids=["raises", "nan", "inf", "wrong-length"],
)  # fmt: skip
def test_a_failing_value_model_does_not_crash_the_search_and_is_counted(q_fn: Any, raised: bool) -> None:
    critic = ValueCritic(q_fn)
    cfg = MCTSConfig(simulations=30, k=3, rollout="none", stop_on_success=False)
    with pytest.warns(RuntimeWarning, match="ValueCritic"):
        result = mcts(ChainEnv(target="bbb"), RandomProposer(seed=0, actions=["a", "b", "c"]), cfg, critic=critic, seed=0)
    assert result.root is not None
    assert all(node.critic is None for node in result.root.walk())  # no Qhat: plain MCTS
    assert critic.calls == result.stats.nodes_expanded > 0
    assert critic.failures == result.stats.nodes_expanded == result.stats.critic_failures  # all left without values
    assert critic.errors == (critic.calls if raised else 0)
    if q_fn is _raises:
        assert "value model down" in critic.last_error


def test_non_finite_values_drop_only_that_nodes_values() -> None:
    env = ChainEnv()
    root = root_node(env, 0)
    nodes = [root, step_child(env, root, "b")]
    props = [[Proposal("a", "a"), Proposal("b", "b")], [Proposal("c", "c"), Proposal("a", "a")]]
    values = iter([[0.2, float("nan"), 0.25, 0.75]])
    critic = ValueCritic(lambda s, a: torch.tensor(next(values)), value_range=(0.0, 0.5))
    with pytest.warns(RuntimeWarning, match="non-finite"):
        scores = critic.score(nodes, props)
    assert scores == [[None, None], [0.5, 1.0]]  # 0.75 mapped through (0, 0.5) and clipped to 1
    assert critic.calls == 1 and critic.prompts == 4 and critic.failures == 1 and critic.errors == 0


# -- ArCHer's DoubleCritic ----------------------------------------------------------------------------
class CharTokenizer:
    """A byte tokenizer with the call shape ``encode_texts`` uses."""

    def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict[str, list[list[int]]]:
        return {"input_ids": [[b for b in t.encode()] for t in texts]}

    def __len__(self) -> int:
        return 256


def _double_critic(seed: int = 0) -> DoubleCritic:
    torch.manual_seed(seed)
    return DoubleCritic(256, CriticConfig(dim=16, head_hidden=16, max_length=48))


def _maze_nodes() -> tuple[list[Node], list[list[Proposal]]]:
    env = make("Maze-v0")
    root = root_node(env, 3)
    child = step_child(env, root, "move up")
    grandchild = step_child(env, child, "move left")
    nodes = [root, child, grandchild]
    props = [[Proposal(m, m) for m in ("move up", "move down", "move left")], [Proposal("move right", "x")],
             [Proposal("move down", "move down"), Proposal("move up", "move up")]]  # fmt: skip
    return nodes, props


def test_double_critic_adapter_scores_min_q1_q2_of_archer_state_text_in_one_batch() -> None:
    critic, tok = _double_critic(), CharTokenizer()
    critic.train()
    forwards: list[int] = []
    original = critic.q

    def counted_q(obs: Any, act: Any) -> Any:
        forwards.append(obs[0].shape[0])
        return original(obs, act)

    critic.q = counted_q  # type: ignore[method-assign]
    nodes, props = _maze_nodes()
    vc = ValueCritic.from_double_critic(critic, tok, context="turn", value_range=(-50.0, 50.0))
    scores = vc.score(nodes, props)
    assert forwards == [6] and vc.calls == 1 and vc.prompts == 6  # one batched forward for all 6 pairs
    assert critic.training  # the critic's mode is restored
    # the texts ArCHer trains on: state_text(observation before the turn, turn index, context)
    obs = [state_text(n.observation, n.depth, "turn") for n, p in zip(nodes, props, strict=True) for _ in p]
    assert obs[0].startswith("turn 1: The goal is") and obs[-1].startswith("turn 3: ")
    acts = [p.action for ps in props for p in ps]
    critic.eval()
    with torch.no_grad():
        q1, q2 = original(encode_texts(tok, obs, 48), encode_texts(tok, acts, 48))
    direct = ((torch.minimum(q1, q2) + 50.0) / 100.0).tolist()
    flat = [v for row in scores for v in row]
    assert flat == pytest.approx(direct, abs=1e-5)
    assert not torch.allclose(q1, q2)  # min is not trivially either head


def _write_archer_checkpoint(out_dir: Path, critic: DoubleCritic) -> None:
    """The layout ``plyground train archer`` writes (trainer.pt: trainer state + the run's config)."""
    from plyground.trainers.archer import ArCHerConfig

    config = ArCHerConfig(out_dir=str(out_dir), env_id="Maze-v0", critic_context="turn", gamma=0.9,
                          critic={"dim": 16, "head_hidden": 16, "max_length": 48})  # fmt: skip
    step = out_dir / "checkpoints" / "step_000003"
    step.mkdir(parents=True)
    state = {"step": 3, "trainer": {"critic": critic.state_dict(), "iteration": 3}, "config": config.to_dict()}
    torch.save(state, step / "trainer.pt")
    (out_dir / "checkpoints" / "latest").write_text("step_000003\n")


def test_load_archer_critic_from_a_checkpoint(tmp_path: Path) -> None:
    critic = _double_critic(seed=1)
    _write_archer_checkpoint(tmp_path, critic)
    nodes, props = _maze_nodes()
    want = ValueCritic.from_double_critic(critic, CharTokenizer(), context="turn", value_range=(-1.0, 1.0))
    expected = [v for row in want.score(nodes, props) for v in row]
    for where in (tmp_path, tmp_path / "checkpoints", tmp_path / "checkpoints" / "step_000003"):
        loaded = load_archer_critic(where, tokenizer=CharTokenizer(), value_range=(-1.0, 1.0))
        assert [v for row in loaded.score(nodes, props) for v in row] == pytest.approx(expected, abs=1e-6)
    default = load_archer_critic(tmp_path, tokenizer=CharTokenizer())
    lo, hi = return_range(make("Maze-v0"), 0.9)  # -4 per step at worst over 101 steps, discounted by 0.9
    assert default.value_range == (lo, hi) and hi == 0.0 and lo == pytest.approx(-4 * (1 - 0.9**101) / 0.1)
    with pytest.raises(FileNotFoundError):
        load_archer_critic(tmp_path / "nowhere")
    torch.save({"trainer": {}, "config": {}}, tmp_path / "grpo.pt")
    with pytest.raises(ValueError, match="no critic"):
        load_archer_critic(tmp_path / "grpo.pt")


def test_search_cli_takes_an_archer_critic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import plyground.inference.models as models

    _write_archer_checkpoint(tmp_path / "run", _double_critic())
    monkeypatch.setattr(models, "load_tokenizer", lambda name: CharTokenizer())  # the run's model is "tiny"
    out = tmp_path / "out"
    argv = ["search", "Maze-v0", "--backend", "random", "--budget", "6", "--episodes", "2", "--out", str(out),
            "--critic", f"archer:{tmp_path / 'run'}", "--critic-range=-40,0"]  # fmt: skip
    assert main(argv) == EXIT_OK
    summary = json.loads((out / "summary.json").read_text())
    assert summary["critic"] == f"archer:{tmp_path / 'run'}"
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["stats"]["critic_calls"] > 0 for r in results)


def test_search_cli_critic_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "Maze-v0", "--backend", "random", "--critic", "self"]) == EXIT_USAGE
    assert main(["search", "Maze-v0", "--backend", "random", "--critic", "oracle"]) == EXIT_USAGE
    assert "archer:PATH" in capsys.readouterr().err
    assert main(["search", "Maze-v0", "--backend", "random", "--critic", "archer:/nonexistent/run"]) == EXIT_USAGE
    assert main(["search", "Maze-v0", "--backend", "random", "--critic-range", "0,1"]) == EXIT_USAGE


@pytest.mark.slow
def test_load_archer_critic_round_trips_a_real_archer_checkpoint(tmp_path: Path) -> None:
    """``ArCHerTrainer.save_checkpoint`` -> ``load_archer_critic``: the same Qhat as the trainer's own
    critic on ArCHer's state texts (tiny model, so the run's tokenizer is SmolLM2's)."""
    from plyground.inference.models import tiny_model
    from plyground.trainers.archer import ArCHerConfig, ArCHerTrainer

    model, tok = tiny_model(seed=0)
    cfg = ArCHerConfig(out_dir=str(tmp_path), model="tiny", env_id="Maze-v0", critic_context="turn", total_steps=1,
                       tasks_per_step=2, max_tokens=3, mixed_precision="no", live_table=False,
                       critic={"dim": 8, "head_hidden": 8, "max_length": 32, "encoder": "bag"})  # fmt: skip
    trainer = ArCHerTrainer(cfg, model=model, tokenizer=tok)
    trainer.save_checkpoint()
    nodes, props = _maze_nodes()
    want = ValueCritic.from_double_critic(trainer.critic, tok, context="turn", value_range=(-1.0, 1.0))
    loaded = load_archer_critic(tmp_path, value_range=(-1.0, 1.0))
    expected = [v for row in want.score(nodes, props) for v in row]
    assert [v for row in loaded.score(nodes, props) for v in row] == pytest.approx(expected, abs=1e-6)
