#!/usr/bin/env bash
# Run the multi-turn must-show experiments A (ArCHer vs REINFORCE, each at its tuned learning rate, 3 seeds), B (SCoRe)
# C (Agent Q) and D (BFS-Prover) side by side, each writing docs/results/<name>.{json,png}; logs go to $1.
# Needs ~16 cores (15 single-threaded processes; a GPU is used when torch sees one).
#   bash examples/multiturn/run_all.sh runs/multiturn/logs 300
# $2: wall-clock budget in seconds for the training runs of A and B (curves so far are kept).
set -u
LOGS=$(realpath -m "${1:-runs/multiturn/logs}")
BUDGET=${2:-1800}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1
mkdir -p "$LOGS"
cd "$(dirname "$0")/../.."
# A: one process per method (ArCHer: replay-buffer actor, 2 x 32 states per batch at lr 3e-4; REINFORCE: lr 1e-3;
# the main comparison of docs/results/archer_vs_reinforce.md, 64 batches), from the 20-step SFT start, 2-token replies.
A="examples/multiturn/archer_vs_reinforce.py --jobs 1 --episodes 16 --max-tokens 2 --sft-steps 20 --center 1 --critic-steps 50 --critic-context turn --quick"
AO=runs/multiturn/archer_vs_reinforce
# First the shared warm start (cached under $AO) and its measured start point (128 episodes).
$PY examples/multiturn/archer_vs_reinforce.py --eval-start 128 --sft-steps 20 --max-tokens 2 --out $AO > "$LOGS/A_start.log" 2>&1
$PY $A --methods archer --steps 64 --lr 3e-4 --actor-states replay --actor-batch 32 --archer-actor-steps 2 --warmup-iters 2 \
  --tag A_archer > "$LOGS/A_archer.log" 2>&1 &
$PY $A --methods reinforce --steps 64 --lr 1e-3 --tag A_reinforce > "$LOGS/A_reinforce.log" 2>&1 &
# B: configuration I (the bonus in the episode's return, alpha = 1 vs the alpha = 0 ablation), 7 seeds.
$PY examples/multiturn/score_selfcorrect.py --seeds 0 1 2 3 4 5 6 --alphas 1 0 --no-scale-rewards --turn1-credit shaped_return \
  --steps 160 --stage1-steps 20 --out runs/multiturn/score_v6 --name score_selfcorrect_collapse_I > "$LOGS/B.log" 2>&1 &
# C: the shown setting (T5 in docs/results/agent_q_iteration.md), 9 seeds one after another, then pooled.
C="--quick --out runs/multiturn/agent_q_traps --eps 0.2 --sft-episodes 128 --traps 3 --trap-prob 0.7 --sft-steps 150 --rollout policy --action-parser env --k 8 --lr 3e-4"
[ "${RUN_C:-1}" = 1 ] && (for s in 0 1 2 3 4 5 6 7 8; do $PY examples/multiturn/agent_q_iteration.py --seeds $s $C --tag _t5_seed$s; done
  $PY examples/multiturn/agent_q_iteration.py pool runs/multiturn/agent_q_traps/agent_q_iteration_t5_seed{0,1,2,3,4,5,6,7,8}.json \
    --name agent_q_iteration_traps) > "$LOGS/C.log" 2>&1 &
[ "${RUN_D:-1}" = 1 ] && $PY examples/multiturn/bfs_prover_round.py --seeds 0 1 2 --samples 6 > "$LOGS/D.log" 2>&1 &
wait
$PY examples/multiturn/archer_vs_reinforce.py --merge $AO/archer_vs_reinforce_A_{archer,reinforce}.json >> "$LOGS/A_merge.log" 2>&1
tar czf "$LOGS/results.tgz" docs/results/archer_vs_reinforce* docs/results/score_selfcorrect* docs/results/agent_q_iteration* docs/results/bfs_prover_round* 2>/dev/null
echo done
