"""`rank evaluate --html`: one self-contained page, opened in headless Chromium, where every
figure renders (has a visible size and drawn shapes once the page has laid out)."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from feedctl.pipelines.ranking.evaluate import EvaluationOptions, run_evaluation
from feedctl.pipelines.ranking.report import FAMILIES, write_report
from feedctl.rank.heuristic import Heuristic, load_heuristic
from feedctl.synth import TRUE_PREFERENCE, SeedSpec, seed

from ops_tools import require_tool

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FIGURES = len(FAMILIES) + 3  # metric families against k, MRR, rank movement, scores
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def dump_dom(page: Path, profile: Path) -> str:
    chromium = require_tool("chromium")
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_report_is_self_contained_and_every_figure_renders(
    database_url: str, tmp_path: Path
) -> None:
    stale = Heuristic("stale", 5000.0, 0.0, 0.0, 1.0)
    options = EvaluationOptions(moments=3, sample_users=60, resamples=200, ks=(5, 10, 20))
    with psycopg.connect(database_url, autocommit=True) as conn:
        seed(conn, SeedSpec(users=600, communities=8, posts=900, days=10, now=NOW))
        evaluation = run_evaluation(
            conn, [load_heuristic(), TRUE_PREFERENCE, stale], options, timedelta(days=30)
        )
    page = tmp_path / "report.html"
    write_report(evaluation, page)
    text = page.read_text(encoding="utf-8")
    assert len(text) < 1_500_000, "keep the page small"
    # Nothing to fetch: no external scripts, styles, images or links.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<link" not in text and "@import" not in text
    assert text.count('<figure class="plot">') == FIGURES
    assert text.count("<svg") == FIGURES
    for label in ("default-1", "seed-truth", "stale"):
        assert label in text
    dom = dump_dom(page, tmp_path / "chromium-profile")
    assert f'data-figures="{FIGURES}"' in dom
    assert f'data-figures-rendered="{FIGURES}"' in dom, re.findall(r"data-rendered=\"\w+\"", dom)
    assert dom.count('data-rendered="yes"') == FIGURES
    assert dom.count("<table>") >= 1 + 3 * 3  # the coefficients, then 3 feeds x 3 heuristics
