"""atool.core.io under failure: full disks, killed writers, staged multi-file outputs."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from atool.core.errors import Failure
from atool.core.io import (
    DiskFull, atomic_write, atomic_write_bytes, atomic_write_json, is_temp_name, remove_stale_temps, replace_dir,
    staged_outputs, temp_prefix,
)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _raise(err: int):
    def write(tmp: Path) -> None:
        tmp.write_bytes(b"half a fi")
        raise OSError(err, os.strerror(err), str(tmp))

    return write


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EFBIG, errno.EDQUOT])
def test_a_full_disk_is_a_one_line_failure_that_keeps_the_old_file(tmp_path, err):
    out = atomic_write_json(tmp_path / "out.json", {"good": True})
    with pytest.raises(DiskFull) as info:
        atomic_write(out, _raise(err))
    assert isinstance(info.value, Failure) and info.value.exit_code == 1
    msg = str(info.value)
    assert msg.startswith(f"disk full writing {out}") and "\n" not in msg
    assert out.read_text() == '{\n  "good": true\n}\n'
    assert _listing(tmp_path) == ["out.json"], "the temp file was removed"


def test_other_errors_pass_through_and_still_clean_up(tmp_path):
    with pytest.raises(PermissionError):
        atomic_write(tmp_path / "x.bin", _raise(errno.EACCES))
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x.bin", lambda p: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert _listing(tmp_path) == []


def test_a_real_file_size_limit_gives_efbig_not_a_killed_process(tmp_path):
    """RLIMIT_FSIZE in this process, for one write: with SIGXFSZ ignored the write fails with EFBIG."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    atomic_write_bytes(tmp_path / "m.bin", b"old")
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        with pytest.raises(DiskFull, match="file-size limit"):
            atomic_write_bytes(tmp_path / "m.bin", bytes(10_000))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert (tmp_path / "m.bin").read_bytes() == b"old"
    assert _listing(tmp_path) == ["m.bin"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temps_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = tmp_path / f".m.pt.{_dead_pid()}.tmpab12.pt"
    dead.write_bytes(b"half")
    dead_dir = tmp_path / f".staging.{_dead_pid()}.tmpzz"
    dead_dir.mkdir()
    (dead_dir / "x.png").write_bytes(b"x")
    live = tmp_path / f".m.pt.{os.getppid()}.tmpcd34.pt"  # the parent process is alive
    live.write_bytes(b"busy")
    assert all(is_temp_name(p.name) for p in (dead, dead_dir, live)) and not is_temp_name("m.pt")
    atomic_write_bytes(tmp_path / "m.pt", b"new")  # the first write into a folder sweeps it
    assert _listing(tmp_path) == sorted(["m.pt", live.name])
    assert remove_stale_temps(tmp_path) == []


def test_temp_names_are_hidden_and_keep_the_suffix(tmp_path):
    seen = []
    atomic_write(tmp_path / "label.png", lambda p: (seen.append(p.name), p.write_bytes(b"png")))
    assert seen[0].startswith(temp_prefix("label.png")) and seen[0].endswith(".png") and seen[0].startswith(".")


def _staged(out: Path, files: dict[str, bytes], fail: BaseException | None = None) -> None:
    with staged_outputs(out, last="summary.json") as stage:
        for rel, data in files.items():
            atomic_write_bytes(stage / rel, data)
        if fail is not None:
            raise fail


def test_staged_outputs_replace_all_or_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("not the command's")
    _staged(out, {"labels/a.png": b"a1", "labels/b.png": b"b1", "summary.json": b"1"})
    assert _listing(out / "labels") == ["a.png", "b.png"]
    with pytest.raises(RuntimeError):
        _staged(out, {"labels/a.png": b"a2", "summary.json": b"2"}, fail=RuntimeError("killed"))
    assert (out / "labels" / "a.png").read_bytes() == b"a1" and (out / "summary.json").read_bytes() == b"1"
    _staged(out, {"labels/c.png": b"c3", "summary.json": b"3"})
    assert _listing(out / "labels") == ["c.png"], "a staged folder replaces the old one whole"
    assert _listing(out) == ["labels", "mine.txt", "summary.json"], "no staging folder left; other files kept"


def test_staged_outputs_name_the_final_path_when_the_disk_is_full(tmp_path):
    out = tmp_path / "out"

    def full(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull, match=f"disk full writing {out / 'labels' / 'a.png'}"):
        with staged_outputs(out) as stage:
            atomic_write(stage / "labels" / "a.png", full)
    assert _listing(out) == []


def test_replace_dir_swaps_whole_folders(tmp_path):
    old, new = tmp_path / "labels", tmp_path / "new"
    old.mkdir()
    (old / "x").write_text("old")
    new.mkdir()
    (new / "y").write_text("new")
    replace_dir(new, old)
    assert _listing(tmp_path) == ["labels"] and _listing(old) == ["y"]
