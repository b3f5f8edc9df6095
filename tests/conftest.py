"""Shared fixtures. Nothing here may reach a model hub: HF_HUB_OFFLINE is forced on."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_backend():  # type: ignore[no-untyped-def]
    """The tiny random Llama with the SmolLM2 tokenizer, loaded once per test session."""
    from plyground.inference.hf import HFBackend

    backend = HFBackend(model="tiny")
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
