"""report.html: self-contained (no network, no scripts) and rendered by headless Chromium with its plots."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from curate.html_report import ReportData, render_report, write_report
from tests.curate.test_manifest import make_manifest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_WIDTHS = (
    '<script>window.addEventListener("load",()=>{document.body.setAttribute("data-widths",'
    "JSON.stringify([...document.images].map(i=>i.naturalWidth)))})</script></body>"
)


def _data() -> ReportData:
    rng = np.random.default_rng(0)
    n = np.array([100, 200, 400, 800, 1600], dtype=float)
    curves = pl.concat(
        [
            pl.DataFrame(
                {
                    "source": "wiki",
                    "bucket": f"wiki/q{b}",
                    "samples_seen": n.astype(int),
                    "observed": 2.0 * n ** (-0.2 - 0.05 * b) + 0.5 + rng.normal(0, 0.01, n.size),
                    "predicted": 2.0 * n ** (-0.2 - 0.05 * b) + 0.5,
                }
            )
            for b in range(3)
        ]
    )
    curves = pl.concat(
        [
            curves,
            curves.with_columns(source=pl.lit("bbc"), bucket=pl.col("bucket").str.replace("wiki", "bbc")),
        ]
    )
    choice = pl.DataFrame(
        {
            "budget": [100, 100, 1000, 1000],
            "source": ["wiki"] * 4,
            "union": ["top-1", "top-2", "top-1", "top-2"],
            "predicted": [1.0, 1.1, 0.9, 0.8],
        }
    )
    return ReportData(
        manifest=make_manifest(),
        accounting=pl.DataFrame(
            {
                "source": ["wiki", "wiki", "bbc", "bbc", "bbc"],
                "reason": ["kept", "exact", "kept", "fuzzy", "empty_text"],
                "n": [80, 20, 80, 15, 5],
            }
        ),
        scores=pl.DataFrame(
            {
                "source": ["wiki"] * 50 + ["bbc"] * 50,
                "target_sim": rng.random(100),
                "proto_dist": rng.random(100),
            }
        ),
        qqt_curves=curves,
        qqt_choice=choice,
        projektor_holdout=pl.DataFrame(
            {"mixture": ["m0", "m1", "m2"], "predicted": [1.0, 1.2, 0.9], "observed": [1.05, 1.15, 0.92]}
        ),
    )


def test_report_is_self_contained_with_every_section() -> None:
    """The HTML has no external URL and no script, and one inline PNG per plot (6 with every section and a
    QQT panel for each of the two sources)."""
    text = render_report(_data())
    assert not re.search(r"(src|href)=\"(?!data:)", text)
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert len(re.findall(r'<img alt="plot" src="data:image/png;base64,', text)) == 6
    for heading in ("Row accounting", "Score histograms", "QQT", "Projektor", "Final weights", "Predicted"):
        assert heading in text
    assert "eval_loss = 1.25" in text and "[1.1, 1.4]" in text
    assert "<td>top-2</td>" in text  # the union chosen at budget 1000 (0.8 < 0.9)
    assert "<h3>bbc</h3>" in text and "<h3>wiki</h3>" in text


def test_missing_sections_get_a_note() -> None:
    """A run without scores, QQT or Projektor still renders, saying what is absent."""
    d = _data()
    text = render_report(ReportData(manifest=d.manifest, accounting=d.accounting))
    assert "No scores in this run" in text and "No QQT fit" in text and "No held-out mixtures" in text
    assert text.count("<img") == 2


def _chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def _natural_widths(page: Path, tmp: Path) -> list[int]:
    probe = tmp / f"probe-{page.name}"
    probe.write_text(page.read_text().replace("</body>", _WIDTHS))
    dom = _chromium(["--virtual-time-budget=5000", "--dump-dom", probe.as_uri()], tmp).stdout
    match = re.search(r'data-widths="([^"]*)"', dom)
    assert match, dom[:500]
    return list(json.loads(match.group(1).replace("&quot;", '"')))


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    """Chromium loads report.html without console errors, screenshots it, and every plot decodes."""
    page = write_report(_data(), tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    run = _chromium(
        [
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,1600",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        tmp_path,
    )
    assert "CONSOLE" not in run.stderr
    pixels = imread(shot)
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels[..., :3].std() > 0.05  # not a blank page
    widths = _natural_widths(page, tmp_path)
    assert len(widths) == 6 and min(widths) > 100


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
def test_width_probe_detects_a_broken_image(tmp_path: Path) -> None:
    """The naturalWidth probe reports 0 for an image that does not decode (so the check above can fail)."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA"></body></html>')
    assert _natural_widths(page, tmp_path) == [0]
