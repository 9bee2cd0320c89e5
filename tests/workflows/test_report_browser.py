"""A curve run's report, checked as HTML and opened in headless Chromium (Debian's ``chromium``):
a screenshot shows a page, and every <img> decoded."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from atool.data.images import read_image
from conftest import run_cli
from test_report import build_runs, check_page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
# Records each <img>'s decoded width in the DOM once the page has loaded (added to a copy: the report itself has no script).
PROBE = ("<script>window.addEventListener('load',function(){var w=[];for(const i of document.images)"
         "{w.push(i.complete?i.naturalWidth:-1)}document.body.setAttribute('data-widths',w.join(','))});</script>")


@pytest.fixture(scope="module")
def curve_report(tmp_path_factory, synth_pair, tiny_checkpoint) -> tuple[Path, str]:
    """The report of a curve folder, its pool images and start model found from the run's own JSON."""
    root = tmp_path_factory.mktemp("curve_report")
    runs = build_runs(root, synth_pair, tiny_checkpoint)
    page = root / "report.html"
    r = run_cli("report", runs["curve"], "--out", page, "--thumbnails", "2", "--sample", "2")
    assert r.exit_code == 0, r.output
    return page, r.output


def test_report_of_a_curve_run_finds_its_pool_and_model(curve_report):
    page, output = curve_report
    text = page.read_text()
    assert len(check_page(text)) == 2 + 2 + 1 + 1  # thumbnails, two class-share figures, mIoU curve, IoU bars
    assert "Per-class IoU" in text and "mIoU against clicks" in text and "note:" not in output


def chromium(page: Path, profile: Path, *args: str) -> str:
    """Run headless Chromium on ``page`` offline (no network services, a throwaway profile); return its stdout."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium): cannot render the report")
def test_report_renders_in_chromium(curve_report, tmp_path):
    page = curve_report[0]
    n_img = page.read_text().count("<img ")
    # One Chromium run: a screenshot, and the DOM after load.
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    shot = tmp_path / "shot.png"
    dom = chromium(probe, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,1600", "--dump-dom")
    pixels = read_image(shot).astype(np.float64)
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels.std() > 20  # not a blank page
    colourful = (pixels.max(axis=2) - pixels.min(axis=2)) > 60  # figures and thumbnails, not black text on white
    assert colourful.mean() > 0.01

    marker = 'data-widths="'
    assert marker in dom, dom[-500:]
    widths = [int(w) for w in dom.split(marker, 1)[1].split('"', 1)[0].split(",")]
    assert len(widths) == n_img >= 5 and all(w > 100 for w in widths)  # every embedded PNG decoded
