"""Bridges to the ecosystem: envs over HTTP (``serve-envs``, ``RemoteEnv``, AgentGym routes)."""

from plyground.bridges.remote import RemoteEnv

__all__ = ["RemoteEnv"]
