"""Must-show C: one Agent Q iteration (MCTS with the policy -> step pairs -> DPO) raises greedy
success over the starting policy on a small deterministic env.

Env: ``Maze-v0`` (fully observed) on ``--maze rooms`` (default: a 9 x 9 maze of four linked rooms,
35 start cells, shortest paths of 1 to 7 moves) or ``--maze double_t`` (LMRL-Gym's benchmark maze,
25 start cells, paths up to 12 moves), ``--max-steps`` moves. Given the start cell the env is
deterministic, so greedy play from each cell either reaches the goal or not.

Per seed:

1. **starting policy**: a small Llama (``--hidden`` wide, ``--layers`` deep) over SmolLM2's tokenizer
   compacted to the maze's text (:func:`_common.small_policy` with a corpus of rendered expert and
   noisy episodes from every start cell), SFT for ``--sft-steps`` steps on ``--sft-episodes``
   episodes of a noisy demonstrator (a random move with probability ``--eps``). Without ``--traps``
   it is the maze expert, and a short SFT leaves a policy that walks part of the maze and gets stuck
   elsewhere. With ``--traps N`` (the setting of the current result) the demonstrator is the expert
   except at N cells drawn per seed, where it bumps a wall: a longer SFT then gives a policy that is
   well formed and right at most cells but stuck at a few specific decision points, while its samples
   still try the other moves there now and then: the situation one Agent Q iteration is meant to fix.
2. **one Agent Q iteration** (:class:`plyground.trainers.agent_q.AgentQTrainer`): MCTS from every
   start cell (``--simulations`` simulations, ``k`` replies sampled from the policy per expansion at
   ``--temperature``, replies mapped to moves by ``--action-parser`` (``env``: replies that make the
   same move are one child), ``--rollout`` leaf values, success discounted by ``--mcts-gamma`` per step),
   Agent Q's sibling pairs (Q gap >= theta, both siblings visited >= ``--min-visits`` times), then
   ``--dpo-epochs`` epochs of DPO on them (plus ``--nll-coef`` x the chosen replies' NLL) with the
   proposing policy as the reference.
3. **evaluation**, before and after, on the same episodes: greedy play from every start cell, and
   ``--samples`` sampled episodes (T = 1) per start cell; plus two checks of the mechanism: the pairs
   graded against the maze's shortest paths (``pair_grades``) and DPO's loss and margin on all the
   pairs before and after the update (``dpo_check``).

Run from the repository root (docs/results/agent_q_iteration.md gives the time and every setting
tried)::

    OMP_NUM_THREADS=1 .venv/bin/python examples/multiturn/agent_q_iteration.py --seeds 0 1 2   # setting E
    # the current result (T5 on the results page), one seed; ``pool`` merges the seeds' files
    OMP_NUM_THREADS=1 .venv/bin/python examples/multiturn/agent_q_iteration.py --seeds 0 --quick \
        --out runs/multiturn/agent_q_traps --tag _t5_seed0 --eps 0.2 --sft-episodes 128 --traps 3 \
        --trap-prob 0.7 --sft-steps 150 --rollout policy --action-parser env --k 8 --lr 3e-4

Writes ``docs/results/agent_q_iteration.{json,png}`` (``--quick``: under ``--out``).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS,
    before_after_bars,
    chat_corpus,
    evaluate,
    noisy_chat_policy,
    scripted_chats,
    set_threads,
    small_policy,
    warm_start,
)

ENV_ID = "Maze-v0"
# "rooms": a 9 x 9 maze of four linked rooms, 35 start cells, shortest paths of 1 to 7 moves; short
# enough that random-move rollouts from any cell reach the goal now and then, so MCTS values are
# informative everywhere (in the double T, 12 moves from the far cells, they are almost all 0).
ROOMS = ("#########", "#...#...#", "#.#.#.#.#", "#.#...#.#", "#...#...#", "#.#...#.#", "#.#.#.#.#", "#...#...#",
         "#########")


def env_kwargs_for(args: argparse.Namespace) -> dict[str, Any]:
    if args.maze == "rooms":
        from plyground.envs.lmrl.maze import MazeLayout

        return {"maze": MazeLayout("rooms", ROOMS, goals=((3, 4),)), "max_steps": args.max_steps}
    return {"maze": args.maze, "max_steps": args.max_steps}


def start_cells(env_kwargs: dict[str, Any]) -> list[tuple[int, int]]:
    import plyground

    env = plyground.make(ENV_ID, **env_kwargs)
    cells = [c for c in env.layout.open_cells() if c not in env.layout.goals]  # type: ignore[attr-defined]
    env.close()
    return cells


def maze_corpus(env_kwargs: dict[str, Any]) -> list[str]:
    """Rendered chats of the expert and of noisy experts from every start cell, plus every move and
    the invalid-action observation: all the text the policy reads and writes."""
    import plyground
    from plyground.envs.lmrl.maze import MOVES, MazeExpert
    from plyground.inference.models import default_tokenizer

    tok = default_tokenizer()
    env = plyground.make(ENV_ID, **env_kwargs)
    expert = MazeExpert(layout=env.layout)  # type: ignore[attr-defined]
    chats = scripted_chats(env, [
        (noisy_chat_policy(expert.act, list(MOVES), eps=eps, salt=hash(cell) % 997), 0, {"init_position": cell})
        for eps in (0.0, 0.5) for cell in start_cells(env_kwargs)
    ])
    env.close()
    texts = chat_corpus(tok, chats)
    texts += [*MOVES, "Invalid action: reply with move up, move down, move left or move right."]
    return texts


def trap_moves(seed: int, env_kwargs: dict[str, Any], n: int) -> dict[tuple[int, int], str]:
    """``n`` "trap" cells for the seed's flawed demonstrator, each with the wrong move it plays
    there: a move into a wall (so a policy that learned it stays put and, greedy, repeats it).
    Drawn per seed among the cells two or more moves from the goal that have a wall to bump."""
    import random

    import plyground
    from plyground.envs.lmrl.maze import MOVES

    if n <= 0:
        return {}
    env = plyground.make(ENV_ID, **env_kwargs)
    layout = env.layout  # type: ignore[attr-defined]
    env.close()
    best = optimal_moves(env_kwargs)
    near = {c for c, m in best.items() if any((c[0] + MOVES[x][0], c[1] + MOVES[x][1]) in layout.goals for x in m)}
    rng = random.Random(7_919 * seed + 17)
    candidates = [c for c in sorted(best) if c not in near]
    traps: dict[tuple[int, int], str] = {}
    for cell in rng.sample(candidates, min(n, len(candidates))):
        walls = [m for m, (dr, dc) in MOVES.items() if not layout.is_open((cell[0] + dr, cell[1] + dc))]
        if walls:
            traps[cell] = rng.choice(walls)
    return traps


def demonstrator(env_kwargs: dict[str, Any], traps: dict[tuple[int, int], str]) -> Any:
    """The move the demonstrations intend: the maze expert's, except the trap move at a trap cell."""
    import plyground
    from plyground.envs.lmrl.maze import MazeExpert

    env = plyground.make(ENV_ID, **env_kwargs)
    expert = MazeExpert(layout=env.layout)  # type: ignore[attr-defined]
    env.close()

    def move(observation: str) -> str:
        cell = state_cell([{"content": observation}])
        return traps[cell] if cell in traps else expert.act(observation)

    return move


def flawed_chat_policy(env_kwargs: dict[str, Any], traps: dict[tuple[int, int], str], trap_prob: float, eps: float,
                       salt: int = 0) -> Any:
    """:func:`_common.noisy_chat_policy` over :func:`demonstrator`, except that at a trap cell the
    trap move is played with probability ``trap_prob`` only (else the expert's); every draw is
    seeded by the whole chat, so reruns make the same data."""
    import random
    import zlib

    import plyground
    from plyground.envs.lmrl.maze import MOVES, MazeExpert

    env = plyground.make(ENV_ID, **env_kwargs)
    expert = MazeExpert(layout=env.layout)  # type: ignore[attr-defined]
    env.close()

    def policy(chat: Any) -> str:
        last = [m.content for m in chat if m.role == "user"][-1]
        rng = random.Random(zlib.crc32(("\x00".join(m.content for m in chat) + f"|{salt}").encode()))
        if rng.random() < eps:
            return rng.choice(list(MOVES))
        cell = state_cell([{"content": last}])
        if cell in traps and rng.random() < trap_prob:
            return traps[cell]
        return expert.act(last)

    return policy


def warm_policy(seed: int, args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The seed's starting policy; cached per seed, size, SFT setting and vocabulary (the cache key
    hashes the compact vocabulary, so a model for another vocabulary is never loaded)."""
    import torch

    from plyground.envs.lmrl.maze import MOVES

    env_kwargs = env_kwargs_for(args)
    model, tok = small_policy(seed=seed, hidden=args.hidden, layers=args.layers, corpus=maze_corpus(env_kwargs))
    vocab = hashlib.sha1(json.dumps(sorted(tok.get_vocab().items())).encode()).hexdigest()[:10]
    trapped = (f"_traps{args.traps}" if args.traps else "") + (f"p{args.trap_prob}" if args.trap_prob < 1 else "") + (f"_ep{args.sft_episodes}" if args.sft_episodes != 64 else "")
    name = (f"warm_{args.maze}_ms{args.max_steps}_h{args.hidden}l{args.layers}_eps{args.eps}_sft{args.sft_steps}"
            f"{trapped}_seed{seed}_v{vocab}.pt")
    cache = Path(args.out) / name
    if cache.exists():
        model.load_state_dict(torch.load(cache))
        model.eval()
        return model, tok, env_kwargs

    # A flawed demonstrator (``--traps``): right except at a few cells, where it bumps a wall (with
    # probability ``--trap-prob``, else it plays the expert's move there too); the eps noise shows
    # every move now and then. The cloned policy then prefers the bump at a trap but, with
    # --trap-prob < 1, keeps real mass on the right move (what MCTS with the policy's own samples
    # can find; with 1.0 the clone put under 2 % on it at most traps, see the results page).
    if args.trap_prob >= 1.0:
        policy = noisy_chat_policy(demonstrator(env_kwargs, trap_moves(seed, env_kwargs, args.traps)), list(MOVES),
                                   eps=args.eps, salt=seed)
    else:
        policy = flawed_chat_policy(env_kwargs, trap_moves(seed, env_kwargs, args.traps), args.trap_prob,
                                    eps=args.eps, salt=seed)
    t0 = time.time()
    warm_start(model, tok, ENV_ID, env_kwargs, policy, episodes=args.sft_episodes, steps=args.sft_steps, lr=args.sft_lr,
               out_dir=str(Path(args.out) / f"sft_seed{seed}"), seed=seed)
    print(f"seed {seed}: vocabulary {len(tok)}, SFT {args.sft_steps} steps in {time.time() - t0:.0f} s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model, tok, env_kwargs


def rate(xs: list[bool]) -> dict[str, float]:
    n = max(len(xs), 1)
    p = sum(xs) / n
    return {"rate": p, "se": math.sqrt(p * (1 - p) / n), "n": float(len(xs))}


def _letter(reply: str) -> str:
    from plyground.envs.lmrl.maze import MazeEnv

    move = MazeEnv.parse(reply)
    return move.split()[-1][0].upper() if move else "?"


def measure(model: Any, tok: Any, env_kwargs: dict[str, Any], args: argparse.Namespace, seed: int) -> dict[str, Any]:
    from plyground.rollout.collector import EpisodeSpec

    cells = start_cells(env_kwargs)
    greedy_specs = [EpisodeSpec(seed=0, episode=i, options={"init_position": c}) for i, c in enumerate(cells)]
    greedy = evaluate(model, tok, ENV_ID, env_kwargs, greedy_specs, temperature=0.0, max_tokens=5)
    sampled_specs = [EpisodeSpec(seed=50_000 + j, episode=j * len(cells) + i, options={"init_position": c})
                     for j in range(args.samples) for i, c in enumerate(cells)]
    sampled = evaluate(model, tok, ENV_ID, env_kwargs, sampled_specs, temperature=1.0, max_tokens=5, seed=1000 + seed)
    return {
        "greedy": rate([t.success for t in greedy]),
        "greedy_turns": sum(t.num_turns for t in greedy) / len(greedy),
        "greedy_by_cell": {f"{c[0]},{c[1]}": bool(t.success) for c, t in zip(cells, greedy, strict=True)},
        # the greedy moves from each cell, one letter each (U/D/L/R, ? for a reply that is no move)
        "greedy_moves_by_cell": {f"{c[0]},{c[1]}": "".join(_letter(turn.action) for turn in t.turns)
                                 for c, t in zip(cells, greedy, strict=True)},
        "sampled": rate([t.success for t in sampled]),
        "sampled_turns": sum(t.num_turns for t in sampled) / len(sampled),
    }


_POSITION = re.compile(r"current position is at position ([\d ]+), ([\d ]+)\.")


def optimal_moves(env_kwargs: dict[str, Any]) -> dict[tuple[int, int], set[str]]:
    """For every open cell, the moves that start a shortest path to the goal (breadth-first
    distances; a cell may have two): the ground truth the diagnostics grade pairs and choices by."""
    import plyground
    from plyground.envs.lmrl.maze import MOVES

    env = plyground.make(ENV_ID, **env_kwargs)
    layout = env.layout  # type: ignore[attr-defined]
    env.close()
    dist = {g: 0 for g in layout.goals}
    frontier = list(layout.goals)
    while frontier:
        nxt = []
        for r, c in frontier:
            for dr, dc in MOVES.values():
                cell = (r + dr, c + dc)
                if layout.is_open(cell) and cell not in dist:
                    dist[cell] = dist[(r, c)] + 1
                    nxt.append(cell)
        frontier = nxt
    return {
        cell: {m for m, (dr, dc) in MOVES.items() if dist.get((cell[0] + dr, cell[1] + dc), 10**9) == d - 1}
        for cell, d in dist.items() if d > 0
    }


def state_cell(prompt: list[dict[str, str]]) -> tuple[int, int] | None:
    """The agent's cell in the last observation of a chat (digits are written apart)."""
    found = _POSITION.search(prompt[-1]["content"])
    if found is None:
        return None
    return int(found.group(1).replace(" ", "")), int(found.group(2).replace(" ", ""))


def grade_pairs(pairs: list[dict[str, Any]], best: dict[tuple[int, int], set[str]]) -> dict[str, float]:
    """Pairs graded by the maze's shortest paths: "right" (chosen is a shortest-path move and the
    rejected is not), "wrong" (the reverse), "tie" (both or neither)."""
    from plyground.envs.lmrl.maze import MazeEnv

    right = wrong = 0
    for p in pairs:
        cell = state_cell(p["prompt"])
        good = best.get(cell, set()) if cell is not None else set()
        w, lo = MazeEnv.parse(p["chosen"]) in good, MazeEnv.parse(p["rejected"]) in good
        right += int(w and not lo)
        wrong += int(lo and not w)
    n = len(pairs)
    return {"pairs": float(n), "right": float(right), "wrong": float(wrong), "tie": float(n - right - wrong),
            "states": float(len({json.dumps(p["prompt"]) for p in pairs}))}


def pair_logprob_sums(model: Any, tok: Any, pairs: list[dict[str, Any]]) -> Any:
    """(n, 2) summed log-probabilities of the chosen and rejected replies under ``model``."""
    import torch

    from plyground.trainers.core.data import prompt_response_record
    from plyground.trainers.core.logprobs import collate, token_logprobs

    model.eval()
    rows = []
    with torch.no_grad():
        for start in range(0, len(pairs), 16):
            part = pairs[start:start + 16]
            recs = [prompt_response_record(tok, p["prompt"], p[side]) for side in ("chosen", "rejected") for p in part]
            batch = collate(recs, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
            lp = token_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"])["logprobs"]
            sums = (lp * batch["loss_mask"]).sum(-1)
            rows.append(torch.stack([sums[: len(part)], sums[len(part):]], dim=1))
    return torch.cat(rows) if rows else torch.zeros(0, 2)


def dpo_check(ref: Any, after: Any, beta: float) -> dict[str, float]:
    """DPO's loss and its implicit-reward margin on all the pairs, at the start (the reference:
    loss log 2, margin 0) and after the update, plus how often the chosen reply is the more likely."""
    import torch

    if len(ref) == 0:
        return {}
    margin = beta * ((after[:, 0] - ref[:, 0]) - (after[:, 1] - ref[:, 1]))
    return {
        "loss_before": math.log(2.0),
        "loss_after": float(torch.nn.functional.softplus(-margin).mean()),
        "margin_after": float(margin.mean()),
        "chosen_logratio_after": float((after[:, 0] - ref[:, 0]).mean()),
        "rejected_logratio_after": float((after[:, 1] - ref[:, 1]).mean()),
        "chosen_more_likely_before": float((ref[:, 0] > ref[:, 1]).float().mean()),
        "chosen_more_likely_after": float((after[:, 0] > after[:, 1]).float().mean()),
    }


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from plyground.trainers.agent_q import AgentQConfig, AgentQTrainer

    model, tok, env_kwargs = warm_policy(seed, args)
    t0 = time.time()
    # The search and the "before" numbers depend only on the starting weights and the search
    # settings: cached under --out by a hash of both, so that DPO settings can be compared on the
    # very same pairs (and a rerun does not search again).
    digest = hashlib.sha1(b"".join(v.detach().cpu().numpy().tobytes() for v in model.state_dict().values()))
    search_keys = ("simulations", "k", "rollout", "parallel", "temperature", "mcts_gamma", "theta", "min_visits",
                   "action_parser", "search_repeats", "max_steps", "maze", "samples")
    digest.update(json.dumps({k: getattr(args, k) for k in search_keys}, sort_keys=True).encode())
    cached = Path(args.out) / f"search_seed{seed}_{digest.hexdigest()[:12]}.json"
    hit = json.loads(cached.read_text()) if cached.exists() and not args.no_cache else None
    before = hit["before"] if hit else measure(model, tok, env_kwargs, args, seed)
    print(f"seed {seed} before: greedy {before['greedy']['rate']:.3f} sampled {before['sampled']['rate']:.3f} "
          f"({time.time() - t0:.0f} s)", flush=True)
    cells = start_cells(env_kwargs)
    options = [{"init_position": list(c)} for c in cells]
    # The DPO budget is set in epochs over the pairs: the number of pairs is only known after the
    # search, so the trainer runs one search, then the script sizes the DPO to it.
    cfg = AgentQConfig(
        env_id=ENV_ID, env_kwargs=env_kwargs, episodes_per_iteration=len(cells) * args.search_repeats,
        reset_options=options, steps_per_iteration=10**6, total_steps=1, simulations=args.simulations, k=args.k,
        mcts_rollout=args.rollout, mcts_parallel=args.parallel, rollout_depth=args.max_steps, mcts_gamma=args.mcts_gamma, max_tokens=5,
        temperature=args.temperature, theta=args.theta, beta=args.beta, reference="policy", nll_coef=args.nll_coef,
        pair_min_visits=args.min_visits, action_parser=args.action_parser,
        batch_size=args.batch, micro_batch_size=args.batch, lr=args.lr, seed=seed, mixed_precision="no",
        warmup_steps=0, out_dir=str(Path(args.out) / f"agentq_seed{seed}"),
    )
    policy = copy.deepcopy(model)
    t1 = time.time()
    if hit:
        pairs, search_metrics, search_s = hit["pairs"], hit["search"], hit["search_s"]
    else:
        trainer = AgentQTrainer(cfg, model=policy, tokenizer=tok)
        pairs, search_metrics = trainer.search(0)
        search_s = time.time() - t1
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({"before": before, "pairs": pairs, "search": search_metrics, "search_s": search_s},
                                     default=str))
    steps = max(1, math.ceil(args.dpo_epochs * len(pairs) / args.batch))
    print(f"seed {seed}: search {search_s:.0f} s, {len(pairs)} pairs -> {steps} DPO steps", flush=True)
    cfg.total_steps = steps
    graded = grade_pairs(pairs, optimal_moves(env_kwargs))
    print(f"seed {seed}: pairs graded by shortest paths: {graded}", flush=True)
    ref_sums = pair_logprob_sums(policy, tok, pairs)
    trainer = AgentQTrainer(cfg, model=policy, tokenizer=tok)
    # Hand the trainer the pairs already found (its first step would otherwise search again).
    trainer.search = lambda iteration: (pairs, search_metrics)  # type: ignore[method-assign]
    history = trainer.train() if pairs else []
    train_s = time.time() - t1
    check = dpo_check(ref_sums, pair_logprob_sums(policy, tok, pairs), args.beta)
    print(f"seed {seed}: DPO check on all pairs: {check}", flush=True)
    after = measure(policy, tok, env_kwargs, args, seed)
    print(f"seed {seed} after: greedy {after['greedy']['rate']:.3f} sampled {after['sampled']['rate']:.3f} "
          f"(search+DPO {train_s:.0f} s)", flush=True)
    dpo = [{k: float(v) for k, v in h.items() if k.startswith(("losses/", "rewards/", "charts/")) and isinstance(v, (int, float))}
           for h in history]
    return {
        "seed": seed,
        "traps": {f"{c[0]},{c[1]}": m for c, m in trap_moves(seed, env_kwargs, args.traps).items()},
        "before": before,
        "after": after,
        "pairs": len(pairs),
        "dpo_steps": steps,
        "search": search_metrics,
        "pair_grades": graded,
        "dpo_check": check,
        "pair_examples": [{"state": p["prompt"][-1]["content"], "chosen": p["chosen"], "rejected": p["rejected"],
                           "q_chosen": p["meta"]["q_chosen"], "q_rejected": p["meta"]["q_rejected"]} for p in pairs[:4]],
        "dpo_first_last": [dpo[0], dpo[-1]] if dpo else [],
        "search_s": search_s,
        "train_s": train_s,
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("greedy", "sampled"):
        for when in ("before", "after"):
            vals = [r[when][key]["rate"] for r in runs]
            out[f"{key}_{when}_mean"] = sum(vals) / len(vals)
        diffs = [r["after"][key]["rate"] - r["before"][key]["rate"] for r in runs]
        m = sum(diffs) / len(diffs)
        sd = math.sqrt(sum((d - m) ** 2 for d in diffs) / (len(diffs) - 1)) if len(diffs) > 1 else float("nan")
        out[f"{key}_gain_mean"] = m
        out[f"{key}_gain_se_over_seeds"] = sd / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
        out[f"{key}_gain_per_seed"] = diffs
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--maze", default="rooms")
    ap.add_argument("--max-steps", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--eps", type=float, default=0.5, help="noise of the SFT expert")
    ap.add_argument("--sft-steps", type=int, default=40)
    ap.add_argument("--sft-lr", type=float, default=3e-3)
    ap.add_argument("--sft-episodes", type=int, default=64, help="demonstration episodes for the SFT")
    ap.add_argument("--traps", type=int, default=0,
                    help="cells where the demonstrator bumps a wall instead of moving on (0: none, the noisy expert)")
    ap.add_argument("--trap-prob", type=float, default=1.0, help="probability of the trap move at a trap cell")
    ap.add_argument("--action-parser", default="text", choices=["text", "env"],
                    help="reply -> tree action: text, or the env's parse (replies making the same move are one child)")
    ap.add_argument("--search-repeats", type=int, default=1, help="MCTS trees per start cell")
    ap.add_argument("--simulations", type=int, default=48)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--rollout", default="random", choices=["policy", "random"], help="MCTS leaf evaluation")
    ap.add_argument("--parallel", type=int, default=8, help="MCTS simulations batched per policy call")
    ap.add_argument("--temperature", type=float, default=1.0, help="proposal temperature")
    ap.add_argument("--mcts-gamma", type=float, default=0.9)
    ap.add_argument("--theta", type=float, default=0.1)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--nll-coef", type=float, default=1.0, help="RPO: NLL of the chosen replies added to DPO")
    ap.add_argument("--min-visits", type=int, default=3, help="least visits of both siblings of a pair")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dpo-epochs", type=float, default=4.0)
    ap.add_argument("--samples", type=int, default=2, help="sampled evaluation episodes per start cell")
    ap.add_argument("--out", default="runs/multiturn/agent_q_iteration")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--quick", action="store_true", help="write the JSON/PNG under --out, not docs/results")
    ap.add_argument("--no-cache", action="store_true", help="search again even when --out holds this search")
    args = ap.parse_args(argv)
    set_threads()
    t0 = time.time()
    runs = [run_seed(seed, args) for seed in args.seeds]
    payload = {"config": vars(args), "summary": summarise(runs), "runs": runs, "wall_s": time.time() - t0}
    print(json.dumps(payload["summary"], indent=1), flush=True)
    dest = Path(args.out) if args.quick else RESULTS
    dest.mkdir(parents=True, exist_ok=True)
    name = f"agent_q_iteration{args.tag}"
    (dest / f"{name}.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    plot(runs, dest / f"{name}.png", args.maze)
    return payload


def plot(runs: list[dict[str, Any]], path: Path, maze: str) -> None:
    before_after_bars(
        runs, path,
        [("greedy, every start cell", lambda e: (e["greedy"]["rate"], e["greedy"]["se"])),
         ("sampled (T=1), every cell x samples", lambda e: (e["sampled"]["rate"], e["sampled"]["se"]))],
        after_label="after 1 Agent Q iteration", ylabel="success rate", ylim=1.15,
        suptitle=f"Agent Q on the {maze} maze: MCTS -> step pairs -> DPO (error bars: binomial SE)",
    )



# ---------------------------------------------------------------------------------------------------
# Pooling result files of the same setting over more seeds (``pool`` sub-command).
# Seeds are run in separate invocations (each writes its own JSON) so that a slow box still lands
# every finished seed; this merges them and tests the gain over seeds and over (seed, cell) pairs.
# ---------------------------------------------------------------------------------------------------

# Settings that may differ between pooled files: they name the run, not the method.
POOL_FREE_KEYS = ("seeds", "out", "tag", "quick", "no_cache")


def two_sided_binomial_p(k: int, n: int) -> float:
    """Exact two-sided sign-test p-value: k successes of n under p = 1/2 (doubling the smaller tail)."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def t_two_sided_p(t: float, df: int) -> float:
    """Two-sided p-value of Student's t with ``df`` degrees of freedom (scipy is not a dependency):
    1 - 2 x the density integrated from 0 to |t| by Simpson's rule."""
    if math.isnan(t) or df < 1:
        return float("nan")
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(x: float) -> float:
        return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))

    a, n = abs(t), 4000  # n even; the density is smooth, so this is accurate to ~1e-12
    h = a / n
    s = density(0.0) + density(a) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, n))
    return max(0.0, 1.0 - 2.0 * s * h / 3.0)


def pool_stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The pooled numbers of the must-show: mean gain and SE over seeds (``summarise``), seeds that
    gained / lost / tied, a one-sample t-test and a sign test over seeds, and the (seed, cell) pairs
    gained vs lost with an exact McNemar (sign) test."""
    out = summarise(runs)
    diffs = out["greedy_gain_per_seed"]
    eps = 1e-9
    up, down = sum(d > eps for d in diffs), sum(d < -eps for d in diffs)
    se = out["greedy_gain_se_over_seeds"]
    t = out["greedy_gain_mean"] / se if se and not math.isnan(se) else float("nan")
    gained = lost = 0
    for r in runs:
        b, a = r["before"]["greedy_by_cell"], r["after"]["greedy_by_cell"]
        gained += sum(a[c] and not b[c] for c in b)
        lost += sum(b[c] and not a[c] for c in b)
    s_diffs = out["sampled_gain_per_seed"]
    s_se = out["sampled_gain_se_over_seeds"]
    s_t = out["sampled_gain_mean"] / s_se if s_se and not math.isnan(s_se) else float("nan")
    out.update({
        "seeds": [r["seed"] for r in runs],
        "greedy_seeds_gain_loss_tie": [up, down, len(diffs) - up - down],
        "greedy_t": t,
        "greedy_t_p_two_sided": t_two_sided_p(t, len(diffs) - 1),
        "greedy_sign_test_p_two_sided": two_sided_binomial_p(up, up + down),
        "greedy_cells_gained_lost": [gained, lost],
        "greedy_cells_mcnemar_p_two_sided": two_sided_binomial_p(gained, gained + lost),
        "sampled_seeds_gain_loss_tie": [sum(d > eps for d in s_diffs), sum(d < -eps for d in s_diffs),
                                        sum(abs(d) <= eps for d in s_diffs)],
        "sampled_t_p_two_sided": t_two_sided_p(s_t, len(s_diffs) - 1),
    })
    # The search and the DPO step, summed / averaged over seeds (runs before these were recorded
    # have neither).
    graded = [r["pair_grades"] for r in runs if r.get("pair_grades")]
    if graded:
        out["pairs_right_wrong_tie"] = [int(sum(g[k] for g in graded)) for k in ("right", "wrong", "tie")]
    checks = [r["dpo_check"] for r in runs if r.get("dpo_check")]
    if checks:
        out["dpo_check_mean"] = {k: sum(c[k] for c in checks) / len(checks) for k in checks[0]}
    stuck = [trap_failures(r) for r in runs if r.get("traps") and "greedy_moves_by_cell" in r["before"]]
    if stuck:
        out["greedy_failures_at_a_trap_before_after"] = [sum(b for b, _ in stuck), sum(a for _, a in stuck)]
        out["greedy_failures_before_after"] = [sum(35 - round(35 * r["before"]["greedy"]["rate"]) for r in runs
                                                   if r.get("traps") and "greedy_moves_by_cell" in r["before"]),
                                               sum(35 - round(35 * r["after"]["greedy"]["rate"]) for r in runs
                                                   if r.get("traps") and "greedy_moves_by_cell" in r["before"])]
    return out


def trap_failures(run: dict[str, Any]) -> tuple[int, int]:
    """Greedy failures (before, after) whose walk ended on one of the seed's trap cells: replays
    the recorded greedy moves on the rooms maze from each start cell."""
    from plyground.envs.lmrl.maze import MOVES

    layout = env_kwargs_for(argparse.Namespace(maze="rooms", max_steps=12))["maze"]
    letters = {m.split()[-1][0].upper(): d for m, d in MOVES.items()}
    traps = {tuple(int(x) for x in key.split(",")) for key in run["traps"]}
    counts = []
    for when in ("before", "after"):
        n = 0
        for key, moves in run[when]["greedy_moves_by_cell"].items():
            if run[when]["greedy_by_cell"][key]:
                continue
            r, c = (int(x) for x in key.split(","))
            for letter in moves:
                if letter in letters and layout.is_open((r + letters[letter][0], c + letters[letter][1])):
                    r, c = r + letters[letter][0], c + letters[letter][1]
            n += int((r, c) in traps)
        counts.append(n)
    return counts[0], counts[1]


def pool_main(argv: list[str] | None = None) -> dict[str, Any]:
    """``agent_q_iteration.py pool FILE.json ... --name NAME``: merge result files of one setting
    (refuses files whose method settings differ or that repeat a seed), write ``NAME.{json,png}``."""
    ap = argparse.ArgumentParser(description="pool agent_q_iteration result files of the same setting")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--name", default="agent_q_iteration_pooled", help="stem of the written JSON/PNG")
    ap.add_argument("--dest", default=str(RESULTS))
    args = ap.parse_args(argv)
    runs: list[dict[str, Any]] = []
    setting: dict[str, Any] | None = None
    for f in args.files:
        data = json.loads(Path(f).read_text())
        cfg = {k: v for k, v in data["config"].items() if k not in POOL_FREE_KEYS}
        if setting is None:
            setting = cfg
        elif cfg != setting:
            diff = {k: (setting.get(k), cfg.get(k)) for k in set(setting) | set(cfg) if setting.get(k) != cfg.get(k)}
            raise SystemExit(f"{f}: another setting than {args.files[0]}: {diff}")
        runs.extend(data["runs"])
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"a seed appears twice: {seeds}")
    runs.sort(key=lambda r: r["seed"])
    summary = pool_stats(runs)
    payload = {"config": setting, "pooled_from": args.files, "summary": summary, "runs": runs}
    print(json.dumps(summary, indent=1), flush=True)
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{args.name}.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    plot_pooled(runs, summary, dest / f"{args.name}.png", str((setting or {}).get("maze", "")))
    return payload


def plot_pooled(runs: list[dict[str, Any]], summary: dict[str, Any], path: Path, maze: str) -> None:
    """Greedy success before/after per seed, and the per-seed gains with their mean +- 2 SE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    xs = list(range(len(runs)))
    labels = [str(r["seed"]) for r in runs]
    width = 0.38
    ax = axes[0]
    for off, when, color in ((-width / 2, "before", "tab:gray"), (width / 2, "after", "tab:green")):
        ax.bar([x + off for x in xs], [r[when]["greedy"]["rate"] for r in runs], width,
               yerr=[r[when]["greedy"]["se"] for r in runs], capsize=2, color=color,
               label="start policy" if when == "before" else "after 1 Agent Q iteration")
    ax.set_xticks(xs, labels)
    ax.set_xlabel("seed")
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("greedy success (35 start cells)")
    ax.set_title("greedy success per seed (error bars: binomial SE)")
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1]
    for off, key, color in ((-width / 2, "greedy", "tab:blue"), (width / 2, "sampled", "tab:orange")):
        ax.bar([x + off for x in xs], summary[f"{key}_gain_per_seed"], width, color=color, label=f"{key} gain")
        m, se = summary[f"{key}_gain_mean"], summary[f"{key}_gain_se_over_seeds"]
        ax.axhline(m, color=color, lw=1.5, ls="--")
        ax.axhspan(m - 2 * se, m + 2 * se, color=color, alpha=0.12)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(xs, labels)
    ax.set_xlabel("seed")
    ax.set_ylabel("after - before")
    ax.set_title("gain per seed; dashed: mean, band: mean +- 2 SE over seeds")
    ax.legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Agent Q, one iteration, {maze} maze, {len(runs)} seeds: greedy gain "
                 f"{summary['greedy_gain_mean']:+.3f} +- {summary['greedy_gain_se_over_seeds']:.3f}, "
                 f"cells gained/lost {summary['greedy_cells_gained_lost'][0]}/{summary['greedy_cells_gained_lost'][1]}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    if sys.argv[1:2] == ["pool"]:
        pool_main(sys.argv[2:])
    else:
        main()
