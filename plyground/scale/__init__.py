"""Scaling out: Ray rollout workers and env actors (``pip install 'plyground[scale]'``).

Imports of Ray happen on use, so ``import plyground.scale`` is cheap.
"""

from plyground.scale.ray_workers import (
    EnvActor,
    RayGRPOTrainer,
    RolloutPool,
    RolloutWorker,
    backend_from_spec,
    init_ray,
)

__all__ = ["EnvActor", "RayGRPOTrainer", "RolloutPool", "RolloutWorker", "backend_from_spec", "init_ray"]
