"""A real Label Studio server for the integration suite (`make test-integration`).

The server runs from its own environment, .venv-labelstudio/ (made once by
tools/labelstudio_env.sh and reused while its stamp is there), on a free
port of 127.0.0.1, with a temporary data dir, local-files serving under a
temporary document root, and a known legacy token. Its first start spends
most of its time migrating a new database; the migrated data dir is kept in
.venv-labelstudio/template-data/ and copied for later runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LS_VENV = Path(os.environ.get("LS_VENV", REPO / ".venv-labelstudio"))
TEMPLATE = LS_VENV / "template-data"
TOKEN = "atool0000integration0000token0000"
USER, PASSWORD = "atool@example.com", "atool-integration"
START_TIMEOUT = 300.0
ATOOL = str(Path(sys.executable).with_name("atool"))  # the CLI under test, from atool's own environment


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _save_template(data: Path) -> None:
    """Keep the freshly migrated data dir (database copied through sqlite's backup API)."""
    tmp = TEMPLATE.with_name(TEMPLATE.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in data.iterdir():
        if f.is_file() and f.suffix != ".sqlite3":
            shutil.copy2(f, tmp / f.name)
    with sqlite3.connect(data / "label_studio.sqlite3") as src, sqlite3.connect(tmp / "label_studio.sqlite3") as dst:
        src.backup(dst)
    shutil.rmtree(TEMPLATE, ignore_errors=True)
    tmp.rename(TEMPLATE)


@pytest.fixture(scope="session")
def ls_process(tmp_path_factory):
    """A started (not yet ready) server: {'url', 'token', 'root' (the document root), 'python', 'proc', ...}."""
    t0 = time.monotonic()
    subprocess.run(["bash", str(REPO / "tools" / "labelstudio_env.sh"), "install"], check=True, env={**os.environ, "LS_VENV": str(LS_VENV)})
    t_install = time.monotonic() - t0
    base = tmp_path_factory.mktemp("labelstudio")
    data, root = base / "data", base / "files"
    root.mkdir()
    cached = (TEMPLATE / "label_studio.sqlite3").is_file()
    if cached:
        shutil.copytree(TEMPLATE, data)
    else:
        data.mkdir()
    port = _free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(root),
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        # Offline: no version check against the registry, no analytics, no converter downloads.
        "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "CONVERTER_DOWNLOAD_RESOURCES": "false",
    }
    cmd = [
        str(LS_VENV / "bin" / "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(data), "--username", USER, "--password", PASSWORD, "--user-token", TOKEN, "--enable-legacy-api-token",
    ]
    log = open(base / "server.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    info = {
        "url": f"http://127.0.0.1:{port}", "token": TOKEN, "root": root, "python": LS_VENV / "bin" / "python", "proc": proc,
        "data": data, "log": base / "server.log", "started": time.monotonic(),
        "timings": {"install_s": round(t_install, 1), "cached_db": cached},
    }
    try:
        yield info
    finally:
        # The server runs in its own process group (start_new_session): end that group, which we made.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        log.close()


@pytest.fixture(scope="session")
def pool(ls_process, synth_pair) -> Path:
    """The synthetic target pool, copied under the server's document root."""
    dest = ls_process["root"] / "pool"
    shutil.copytree(synth_pair / "target_train", dest)
    return dest




@pytest.fixture(scope="session")
def queries(ls_process, pool, tiny_checkpoint, selector_ckpt, tmp_path_factory) -> dict[str, Path]:
    """A point list (entropy, tiny model) and a region list (inconsistency_spl, selector), made by the atool CLI
    while the server is still starting."""
    out = tmp_path_factory.mktemp("queries")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for args in (
        ["--model", tiny_checkpoint, "--strategy", "entropy", "--budget", 12, "--out", out / "points.json"],
        ["--model", selector_ckpt, "--strategy", "inconsistency_spl", "--budget", 6, "--param", "pixel_ratio=0.1", "--out", out / "regions.json"],
    ):
        r = subprocess.run([ATOOL, "query", "--images", pool / "images", "--workers", "0", *map(str, args)], env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
    return {"points": out / "points.json", "regions": out / "regions.json"}


@pytest.fixture(scope="session")
def ls_server(ls_process, queries):
    """The server, once it answers /health (the first time, its migrated data dir is kept as the template)."""
    url, proc = ls_process["url"], ls_process["proc"]
    while not _healthy(url):
        if proc.poll() is not None:
            pytest.fail(f"label-studio exited with {proc.returncode}; see {ls_process['log']}")
        if time.monotonic() - ls_process["started"] > START_TIMEOUT:
            pytest.fail(f"label-studio did not answer /health within {START_TIMEOUT:.0f} s; see {ls_process['log']}")
        time.sleep(1.0)
    ls_process["timings"]["ready_s"] = round(time.monotonic() - ls_process["started"], 1)
    if not ls_process["timings"]["cached_db"]:
        _save_template(ls_process["data"])
    print(f"\nlabel-studio at {url}: {ls_process['timings']}", file=sys.stderr)
    return ls_process
