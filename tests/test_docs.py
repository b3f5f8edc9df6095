"""The documentation site builds with no warnings, and its env catalogue covers the registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_strict_with_the_generated_catalogue(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="pip install 'plyground[dev]' (mkdocs-material)")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_docs.py"), "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "WARNING" not in result.stderr, result.stderr[-3000:]
    catalogue = (ROOT / "docs" / "generated" / "envs.md").read_text()
    # The ids a fresh process registers (other tests may have registered adapter envs in this one).
    ids = subprocess.run(
        [sys.executable, "-c", "import plyground; print(' '.join(s.id for s in plyground.list_envs()))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert len(ids) >= 20
    for env_id in ids:
        assert f"## {env_id}" in catalogue
    assert (tmp_path / "site" / "generated" / "envs" / "index.html").exists()
    assert (tmp_path / "site" / "generated" / "benchmarks" / "index.html").exists()
