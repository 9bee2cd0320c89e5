"""Kill -9 harness for the crash tests: real `atool` processes, killed at random moments.

Every run is a fresh process running ``atool.cli.main`` with the command's
argv, forked from a *zygote*: one long-lived Python process that imported
torch and atool once and then forks a child per run. The child is a separate
OS process (its own pid, killed with SIGKILL, nothing shared with the test
process), so a kill is as real as one of ``.venv/bin/atool``; the zygote only
saves the ~3-8 s of importing torch per run, which would otherwise make a
dozen kills per command too slow for the test suite. The zygote never runs a
torch op before forking, so the children start with fresh thread pools.

A kill moment is drawn with a seeded RNG: a uniform fraction of the
reference run's duration after the fork (with the imports already done, that
is the command's own work: option parsing is milliseconds).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

_ZYGOTE = textwrap.dedent(
    r"""
    import json, os, sys, traceback
    import numpy, torch  # the heavy imports, paid once: the children inherit them
    import atool.cli
    for name in sys.argv[1:]:
        __import__(name)
    reply = sys.stdout
    reply.write("ready\n"); reply.flush()
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "run":
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    os.setpgid(0, 0)
                    if req.get("fsize") is not None:  # a "full disk": writes past this many bytes fail
                        import resource
                        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
                        resource.setrlimit(resource.RLIMIT_FSIZE, (req["fsize"], hard))
                    os.chdir(req["cwd"])
                    out_path = os.devnull if req.get("fsize") is not None else req["stdout"]
                    for fd, path in ((1, out_path), (2, req["stderr"])):
                        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                        os.dup2(f, fd)
                        os.close(f)
                    devnull = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(devnull, 0)
                    os.environ.update(req["env"])
                    sys.argv = ["atool", *req["args"]]
                    try:
                        atool.cli.main(args=req["args"], prog_name="atool")
                        code = 0
                    except SystemExit as exc:
                        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                    except BaseException:
                        traceback.print_exc()
                        code = 1
                    sys.stdout.flush(); sys.stderr.flush()
                finally:
                    os._exit(code)
            reply.write(json.dumps({"pid": pid}) + "\n"); reply.flush()
        elif req["op"] == "wait":
            _, status = os.waitpid(req["pid"], 0)
            reply.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n"); reply.flush()
    """
)


class Zygote:
    """A process that forks `atool` runs on request (see the module docstring)."""

    def __init__(self, preload: tuple[str, ...] = ()) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE, *preload], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the crash-test zygote did not start")

    def _ask(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def start(self, args: list, cwd: Path, log: Path, fsize: int | None = None) -> int:
        """Start ``atool ARGS`` in ``cwd``; its stdout/stderr go to ``log``.out/.err. Returns its pid.

        ``fsize``: RLIMIT_FSIZE of the run (bytes). Its SIGXFSZ is left at the default (kill), so the
        run's clean EFBIG error shows that atool itself ignores the signal.
        """
        req = {"op": "run", "args": [str(a) for a in args], "cwd": str(cwd), "stdout": f"{log}.out", "stderr": f"{log}.err",
               "env": {"OMP_NUM_THREADS": "1"}, "fsize": fsize}
        return self._ask(req)["pid"]

    def wait(self, pid: int) -> int:
        """The run's exit code (negative: killed by that signal)."""
        return self._ask({"op": "wait", "pid": pid})["code"]

    def close(self) -> None:
        # Its interpreter teardown (torch) takes seconds and there is nothing to flush: end it now.
        self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait(timeout=30)


_shared: Zygote | None = None


def shared_zygote() -> Zygote:
    """One zygote for every crash-test module of the session (it costs one torch import)."""
    global _shared
    if _shared is None:
        import atexit

        _shared = Zygote(preload=("atool.train.trainer", "atool.workflows.export", "atool.workflows.rounds",
                                  "atool.annotate.ingest", "atool.workflows.query"))
        atexit.register(_shared.close)
    return _shared


@dataclass
class Run:
    code: int
    seconds: float  # from the fork to the end
    killed: bool
    stderr: str


def run(z: Zygote, args: list, cwd: Path, log: Path, *, kill_after: float | None = None, timeout: float = 300,
        fsize: int | None = None, kill_line: str | None = None) -> Run:
    """Run ``atool ARGS`` to its end, or SIGKILL it ``kill_after`` seconds after it started
    (after the first stderr line containing ``kill_line``, when given).

    Under ``fsize`` the run's stderr is a FIFO (a file would be cut at the limit) and its stdout is discarded.
    """
    err = Path(f"{log}.err")
    reader = None
    if fsize is not None:
        import threading

        err.unlink(missing_ok=True)
        os.mkfifo(err)
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(err.read_bytes()), daemon=True)
        reader.start()
    pid = z.start(args, cwd, log, fsize)
    t_start = time.monotonic()
    t_mark = t_start if kill_line is None else None
    killed = False
    while not _exited(pid):
        now = time.monotonic()
        if now - t_start > timeout:
            os.kill(pid, signal.SIGKILL)
            raise TimeoutError(f"atool {' '.join(map(str, args))} ran over {timeout} s")
        if t_mark is None and err.is_file() and kill_line in err.read_text(errors="replace"):
            t_mark = now
        if kill_after is not None and t_mark is not None and now - t_mark >= kill_after:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed = True
            break
        time.sleep(0.002)
    code = z.wait(pid)
    seconds = time.monotonic() - t_start
    if reader is not None:
        reader.join(timeout=10)
        text = b"".join(got).decode(errors="replace")
        err.unlink()
    else:
        text = err.read_text(errors="replace") if err.is_file() else ""
    return Run(code, seconds, killed and code == -signal.SIGKILL, text)


def _exited(pid: int) -> bool:
    """Whether the zygote's child ``pid`` has exited (a zombie awaiting its wait counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def kill_moments(seed: int, n: int, work_seconds: float) -> list[float]:
    """``n`` kill delays (seconds after the start), uniform over the reference run's duration."""
    rng = random.Random(seed)
    return [rng.uniform(0.02, 0.95) * work_seconds for _ in range(n)]


def temp_or_final(folder: Path) -> tuple[list[Path], list[Path]]:
    """(temp files/folders by atool's naming, every other file) under ``folder``, recursively."""
    from atool.core.io import is_temp_name

    temps, finals = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in list(dirnames):
            if is_temp_name(name):
                temps.append(Path(dirpath) / name)
                dirnames.remove(name)
        for name in filenames:
            (temps if is_temp_name(name) else finals).append(Path(dirpath) / name)
    return temps, finals


# Timings and timestamps, and the hash of a query list (which holds its ``created`` time).
VOLATILE = frozenset({"created", "seconds", "timings", "query_seconds", "steps_run", "export_seconds", "verify_seconds", "query_list_sha256"})


def normalized_json(path: Path) -> object:
    """A JSON file's content without its timing and timestamp fields (which differ between runs)."""

    def strip(x: object) -> object:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in VOLATILE}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(json.loads(path.read_text(encoding="utf-8")))


def write_answers(path: Path, n_images: int, seed: int) -> Path:
    """An atool.answers/v1 file over ``n_images`` 64x32 images with about 20 answered points each."""
    rng = random.Random(seed)
    images = []
    for i in range(n_images):
        pts = sorted({(rng.randrange(64), rng.randrange(32)) for _ in range(20)})
        answers = [{"id": f"{i}-{j}", "x": x, "y": y, "label": rng.choice(["a", "b", "c", None])} for j, (x, y) in enumerate(pts)]
        images.append({"image": f"img{i:04d}.png", "width": 64, "height": 32, "answers": answers})
    path.write_text(json.dumps({"format": "atool.answers/v1", "classes": ["a", "b", "c"], "images": images}))
    return path
