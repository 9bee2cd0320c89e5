"""`atool labelstudio push/pull` against a real Label Studio server (see conftest.py).

The atool CLI runs from atool's own environment (the python running these
tests); the server and the SDK-driven annotator run from .venv-labelstudio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from atool.ops import rle

pytestmark = pytest.mark.integration

ATOOL = str(Path(sys.executable).with_name("atool"))  # the CLI under test, from atool's own environment
ANNOTATOR = Path(__file__).with_name("annotator.py")


def atool(server, *args, ok: bool = True, **env_over) -> subprocess.CompletedProcess:
    env = {
        **os.environ, "LABEL_STUDIO_URL": server["url"], "LABEL_STUDIO_API_KEY": server["token"],
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(server["root"]), "OMP_NUM_THREADS": "1", **env_over,
    }
    r = subprocess.run([ATOOL, *map(str, args)], env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def one_line_error(r: subprocess.CompletedProcess, contains: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("atool: error:") and "Traceback" not in r.stderr, r.stderr
    assert contains.lower() in lines[0].lower(), lines[0]


def api(server, method: str, path: str, **kw):
    r = requests.request(method, server["url"] + path, headers={"Authorization": f"Token {server['token']}"}, timeout=60, **kw)
    r.raise_for_status()
    return r.json() if r.content else None


def project_tasks(server, title: str) -> list[dict]:
    (pid,) = [p["id"] for p in api(server, "GET", "/api/projects", params={"page_size": 500})["results"] if p["title"] == title]
    return api(server, "GET", "/api/tasks", params={"project": pid, "page_size": 1000})["tasks"]


@pytest.mark.parametrize("kind", ["points", "regions"])
def test_push_annotate_pull_ingest_equals_oracle(ls_server, pool, queries, kind, tmp_path):
    qfile, title = queries[kind], f"atool {kind}"
    qlist = json.loads(qfile.read_text())
    n_images = len(qlist["images"])
    assert {q["kind"] for item in qlist["images"] for q in item["queries"]} == {kind[:-1]}

    first = atool(ls_server, "labelstudio", "push", qfile, "--project", title, "--images", pool / "images")
    assert f"{n_images} tasks imported, 0 already" in first.stdout
    again = atool(ls_server, "labelstudio", "push", qfile, "--project", title, "--images", pool / "images")
    assert f"0 tasks imported, {n_images} already" in again.stdout
    tasks = project_tasks(ls_server, title)
    assert sorted(t["data"]["atool_image"] for t in tasks) == sorted(item["image"] for item in qlist["images"])

    # The served image is the pool's file: the local-files storage works.
    url = ls_server["url"] + tasks[0]["data"]["image"]
    got = requests.get(url, headers={"Authorization": f"Token {ls_server['token']}"}, timeout=60)
    assert got.status_code == 200 and got.content == (pool / "images" / tasks[0]["data"]["atool_image"]).read_bytes()

    ann = subprocess.run(
        [str(ls_server["python"]), str(ANNOTATOR), ls_server["url"], ls_server["token"], title, pool / "oracle_labels",
         pool / "classes.txt", tmp_path],
        capture_output=True, text=True, timeout=300,
    )
    assert ann.returncode == 0, ann.stderr
    assert json.loads(ann.stdout.splitlines()[-1])["annotated"] == n_images

    # atool's brush encoding, decoded by the SDK, is the query's mask.
    decoded = np.load(tmp_path / "pred_masks.npz")
    regions = {q["id"]: q for item in qlist["images"] for q in item["queries"] if q["kind"] == "region"}
    assert sorted(decoded.files) == sorted(regions)
    for qid, q in regions.items():
        assert np.array_equal(decoded[qid], rle.decode(q["mask"])), qid

    pulled = atool(ls_server, "labelstudio", "pull", "--project", title, "--queries", qfile, "--out", tmp_path / "answers.json")
    assert "left out: 0 unannotated, 0 skipped" in pulled.stdout and "1 tasks had several annotations" in pulled.stdout
    answers = json.loads((tmp_path / "answers.json").read_text())
    assert answers["format"] == "atool.answers/v1" and len(answers["images"]) == n_images

    atool(ls_server, "ingest", tmp_path / "answers.json", "--classes", pool / "classes.txt", "--out", tmp_path / "from_ls")
    atool(ls_server, "oracle", "--queries", qfile, "--labels", pool / "oracle_labels", "--out", tmp_path / "oracle.json")
    atool(ls_server, "ingest", tmp_path / "oracle.json", "--out", tmp_path / "from_oracle")
    ours = sorted(p.name for p in (tmp_path / "from_ls" / "labels").glob("*.png"))
    assert ours and ours == sorted(p.name for p in (tmp_path / "from_oracle" / "labels").glob("*.png"))
    labeled = 0
    for name in ours:
        a = np.array(_png(tmp_path / "from_ls" / "labels" / name))
        b = np.array(_png(tmp_path / "from_oracle" / "labels" / name))
        assert np.array_equal(a, b), name
        labeled += int((a != 255).sum())
    assert labeled >= (12 if kind == "points" else 100)


def _png(path: Path) -> np.ndarray:
    from atool.data.images import read_label

    return read_label(path)


def test_bad_token_other_labels_renamed_labels_and_foreign_images(ls_server, pool, queries, tmp_path):
    qfile = queries["points"]
    push = ("labelstudio", "push", qfile, "--images", pool / "images")
    one_line_error(atool(ls_server, *push, "--project", "p", ok=False, LABEL_STUDIO_API_KEY="not-the-token"), "refused the token")
    assert not any(p["title"] == "p" for p in api(ls_server, "GET", "/api/projects")["results"])

    config = '<View><Image name="image" value="$image"/><KeyPointLabels name="kp" toName="image"><Label value="cat"/></KeyPointLabels></View>'
    api(ls_server, "POST", "/api/projects", json={"title": "cats", "label_config": config})
    one_line_error(atool(ls_server, *push, "--project", "cats", ok=False), "labels")
    assert project_tasks(ls_server, "cats") == []

    atool(ls_server, *push, "--project", "renamed")
    (project,) = [p for p in api(ls_server, "GET", "/api/projects")["results"] if p["title"] == "renamed"]
    classes = json.loads(qfile.read_text())["classes"]
    api(ls_server, "PATCH", f"/api/projects/{project['id']}",
        json={"label_config": project["label_config"].replace(f'"{classes[0]}"', '"renamed-class"')})
    out = tmp_path / "answers.json"
    one_line_error(atool(ls_server, "labelstudio", "pull", "--project", "renamed", "--queries", qfile, "--out", out, ok=False), "renamed-class")
    assert not out.exists()

    # The 'renamed' project holds every pool image; the region list names fewer.
    foreign = ("labelstudio", "pull", "--project", "atool points", "--queries", queries["regions"], "--out", out)
    if not any(p["title"] == "atool points" for p in api(ls_server, "GET", "/api/projects")["results"]):
        atool(ls_server, *push, "--project", "atool points")
    one_line_error(atool(ls_server, *foreign, ok=False), "not in the query list")
    assert not out.exists()
    skipped = atool(ls_server, *foreign, "--skip-unknown")
    assert "not in the query list" in skipped.stdout and out.exists()
