"""Evaluate a model on an env from Python, then look at one trajectory.

    .venv/bin/python examples/evaluate_model.py            # the embedded SmolLM2-135M-Instruct
    .venv/bin/python examples/evaluate_model.py tiny       # a tiny random model (seconds)
"""

import sys

from plyground.evaluation import EvalConfig, evaluate
from plyground.inference import make_backend
from plyground.types import SamplingParams

model = sys.argv[1] if len(sys.argv) > 1 else "default"
backend = make_backend("hf", model=model)
config = EvalConfig(
    env_id="GuessNumber-v0",
    episodes=4,
    samples=2,
    concurrency=4,
    sampling=SamplingParams(max_tokens=24, temperature=0.7, seed=0),
    out_dir=f"runs/example-{model}",
)
summary = evaluate(config, backend, model_name=model)
print(f"success {summary.success_rate:.0%}, mean turns {summary.mean_turns:.1f}, {summary.pass_at_k}")

# Every episode is on disk, token ids and loss mask included, ready for a trainer.
from plyground.types import read_trajectories  # noqa: E402

traj = read_trajectories(f"runs/example-{model}/trajectories.jsonl")[0]
for turn in traj.turns:
    print(f"obs: {turn.observation[:70]!r}\n  -> action: {turn.action[:40]!r}  reward {turn.reward}")
if traj.tokens:
    print(f"{len(traj.tokens.token_ids)} tokens, {sum(traj.tokens.loss_mask)} of them sampled by the model")
backend.close()
