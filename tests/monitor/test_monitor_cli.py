"""`atool monitor calibrate / run` through the CLI with the tiny checkpoint: outputs and one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Two short in-domain reference sequences and a test stream (in -> night) of 64x32 frames."""
    from atool.data.synth.stream import parse_segments, rendered_bases, write_stream

    root = tmp_path_factory.mktemp("monframes")
    for i in (1, 2):
        write_stream(root / "ref" / f"seq{i}", rendered_bases(i, (64, 32)), parse_segments("in:40"), seed=i)
    write_stream(root / "test", rendered_bases(9, (64, 32)), parse_segments("in:20,night:20"), seed=9)
    return root


@pytest.fixture(scope="module")
def calibration(frames, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("moncal") / "monitor.json"
    r = run_cli("monitor", "calibrate", "--model", tiny_checkpoint, "--images", frames / "ref", "--ert", 200, "--out", out)
    assert r.exit_code == 0, r.output
    return out


def test_calibration_file(calibration, tiny_checkpoint):
    from atool.core.io import sha256_file

    doc = json.loads(calibration.read_text())
    assert doc["model"]["sha256"] == sha256_file(tiny_checkpoint)
    assert doc["reference"] == {"frames": 80, "sequences": 2, "fit_frames": 60, "path": doc["reference"]["path"]}
    assert doc["detector"]["h"] > 0 and doc["detector"]["ert"] == 200
    assert doc["held_out"]["frames"] == 20


def test_run_events_capture_metrics_and_corrupt_frame(frames, calibration, tiny_checkpoint, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(frames / "test" / "frames", src)
    (src / "f_000010.png").write_bytes(b"not a png")  # a corrupt frame mid-stream
    events, prom, summary = tmp_path / "events.jsonl", tmp_path / "m.prom", tmp_path / "summary.json"
    r = run_cli("monitor", "run", "--model", tiny_checkpoint, "--calibration", calibration, "--source", src,
                "--events", events, "--metrics-file", prom, "--capture", tmp_path / "cap", "--capture-quota", "200KB",
                "--capture-max", 5, "--summary", summary)
    assert r.exit_code == 0, r.output
    s = json.loads(summary.read_text())
    assert s["corrupt"] == 1 and s["frames"] == 39 and s["dropped"] == 0
    text = prom.read_text()
    assert "atool_monitor_frames_total 39.0" in text and "atool_monitor_corrupt_frames_total 1.0" in text
    for line in events.read_text().splitlines() if events.exists() else []:
        ev = json.loads(line)
        assert ev["event"] in ("alarm_start", "alarm_end") and 0 <= ev["frame"] < 40
    from atool.core.schemas import validate

    qlist = json.loads((tmp_path / "cap" / "queries.json").read_text())
    validate(qlist, "query-list", "capture list")
    assert 1 <= len(qlist["images"]) <= 5
    assert all((tmp_path / "cap" / e["image"]).is_file() for e in qlist["images"])


def test_fps_drops_and_counts(frames, calibration, tiny_checkpoint, tmp_path):
    summary = tmp_path / "s.json"
    r = run_cli("monitor", "run", "--model", tiny_checkpoint, "--calibration", calibration, "--source",
                frames / "test" / "frames", "--fps", 5000, "--summary", summary)
    assert r.exit_code == 0, r.output
    s = json.loads(summary.read_text())
    assert s["dropped"] > 0 and s["frames"] + s["dropped"] == 40


def test_calibration_for_another_model(frames, calibration, tiny_checkpoint, tmp_path):
    other = tmp_path / "other.pt"
    other.write_bytes(tiny_checkpoint.read_bytes() + b"\0")
    r = run_cli("monitor", "run", "--model", other, "--calibration", calibration, "--source", frames / "test" / "frames")
    assert_one_line_error(r, 2, "another model")


@pytest.mark.parametrize("source", ["broken.mp4", "97"])
def test_unreadable_video_or_camera(calibration, tiny_checkpoint, tmp_path, source):
    if source.endswith(".mp4"):
        (tmp_path / source).write_bytes(b"\0" * 100)
        source = str(tmp_path / source)
    r = run_cli("monitor", "run", "--model", tiny_checkpoint, "--calibration", calibration, "--source", source)
    assert_one_line_error(r, 2, "cannot read")


def test_empty_reference_and_bad_ert(tiny_checkpoint, frames, tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_cli("monitor", "calibrate", "--model", tiny_checkpoint, "--images", tmp_path / "empty", "--out", tmp_path / "m.json")
    assert_one_line_error(r, 2, "no images")
    for ert in ("1", "0.5", "-3"):
        r = run_cli("monitor", "calibrate", "--model", tiny_checkpoint, "--images", frames / "ref", "--ert", ert,
                    "--out", tmp_path / "m.json")
        assert_one_line_error(r, 2, "--ert")
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("quota", ["1KB", "4500"])
def test_quota_too_small_for_one_frame(frames, calibration, tiny_checkpoint, tmp_path, quota):
    r = run_cli("monitor", "run", "--model", tiny_checkpoint, "--calibration", calibration, "--source",
                frames / "test" / "frames", "--capture", tmp_path / "cap", "--capture-quota", quota)
    assert_one_line_error(r, 2, "too small for one frame")


@pytest.mark.slow
def test_eval_cli_reports_every_method(calibration, tiny_checkpoint, tmp_path):
    out = tmp_path / "eval.json"
    r = run_cli("monitor", "eval", "--model", tiny_checkpoint, "--calibration", calibration, "--shifts", "night",
                "--streams", 1, "--in-frames", 40, "--size", "64x32", "--out", out)
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert set(res["methods"]) == {"cusum", "page_hinkley", "adwin"}
    row = res["methods"]["cusum"]["curve"][0]
    assert 0 <= row["night"]["median_delay"] <= res["post"] + 1 and row["night"]["streams"] == 1
    assert "cusum" in r.output and "night" in r.output
    assert_one_line_error(run_cli("monitor", "eval", "--model", tiny_checkpoint, "--calibration", calibration,
                                  "--shifts", "snow", "--out", out), 2, "snow")
