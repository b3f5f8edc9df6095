"""Bridges to the ecosystem: envs over HTTP (``serve-envs``, ``RemoteEnv``, AgentGym routes) and
adapters for other libraries, each imported on use so that none of them is a hard dependency:
``plyground.bridges.trl`` (TRL GRPOTrainer ``environment_factory``), ``plyground.bridges.verl``
(a verl agent loop), ``plyground.bridges.textarena`` (TextArena games as TextEnvs),
``plyground.bridges.verifiers_env`` (PrimeIntellect verifiers environments as TextEnvs)."""

from plyground.bridges.remote import RemoteEnv

__all__ = ["RemoteEnv"]
