#!/usr/bin/env bash
# Run the multi-turn must-show experiments A (ArCHer vs REINFORCE, two learning rates), B (SCoRe)
# and C (Agent Q) side by side, each writing docs/results/<name>.{json,png}; logs go to $1.
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
A="examples/multiturn/archer_vs_reinforce.py --jobs 6 --steps 200 --episodes 32 --center 1 --time-budget-s $BUDGET"
$PY $A --lr 1e-4 > "$LOGS/A_lr1e-4.log" 2>&1 &
$PY $A --lr 3e-4 --tag lr3e-4 > "$LOGS/A_lr3e-4.log" 2>&1 &
$PY examples/multiturn/score_selfcorrect.py --jobs 2 --steps 100 --stage1-steps 40 --sft-steps 300 --lr 3e-4 \
  --time-budget-s "$((BUDGET - 60))" > "$LOGS/B.log" 2>&1 &
[ "${RUN_C:-1}" = 1 ] && $PY examples/multiturn/agent_q_iteration.py --temperature 2.0 --k 6 --episodes 12 --simulations 64 --dpo-steps 16 > "$LOGS/C.log" 2>&1 &
wait
tar czf "$LOGS/results.tgz" docs/results/archer_vs_reinforce* docs/results/score_selfcorrect* docs/results/agent_q_iteration* 2>/dev/null
echo done
