"""The HTML report renders its plots in a real browser (headless Debian Chromium via Playwright)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from plyground.envs.guess_number import bisection_chat_policy
from plyground.evaluation import EvalConfig, evaluate
from plyground.evaluation.report import render_report
from plyground.inference.scripted import ScriptedBackend

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install 'plyground[web]'")
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian chromium is not installed: apt-get install chromium")
    run = tmp_path / "GuessNumber-v0"
    evaluate(EvalConfig("GuessNumber-v0", episodes=4, out_dir=str(run)), ScriptedBackend(bisection_chat_policy), progress=False)
    report = render_report([run], tmp_path / "report.html")
    shot = tmp_path / "report.png"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(report.as_uri())
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            assert len(widths) == 2 and all(w > 100 for w in widths), widths
            assert "100.0%" in page.inner_text("table")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000  # a rendered page with plots, not a blank one
