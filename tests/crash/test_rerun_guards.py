"""Reruns that would mix or destroy outputs are refused: a loop with other settings in the same --out,
an ingest whose --out holds labels/ that no ingest wrote (ingest replaces labels/ and origin/ whole)."""

from __future__ import annotations

import pytest

from atool.core.errors import Mismatch
from atool.workflows.rounds import _claim_run_folder


def test_a_rerun_with_other_settings_is_refused_naming_the_setting(tmp_path):
    settings = {"config": {"stages": 2, "query": {"budget": 10, "params": {}}}, "seed": 0, "init": "a.pt", "val": None}
    _claim_run_folder(tmp_path, settings)
    _claim_run_folder(tmp_path, settings)  # the same run again: resumes
    other = {**settings, "config": {"stages": 2, "query": {"budget": 20, "params": {}}}}
    with pytest.raises(Mismatch, match=r"config\.query\.budget: 10 before, 20 now"):
        _claim_run_folder(tmp_path, other)
    with pytest.raises(Mismatch, match="seed: 0 before, 1 now"):
        _claim_run_folder(tmp_path, {**settings, "seed": 1})


def test_ingest_refuses_an_out_folder_with_a_datasets_labels(tmp_path):
    from crash_harness import write_answers

    from atool.core.errors import BadInput
    from atool.annotate.ingest import ingest_answers

    answers = write_answers(tmp_path / "a.json", 3, seed=0)
    dataset = tmp_path / "dataset"
    (dataset / "labels").mkdir(parents=True)
    (dataset / "labels" / "gt.png").write_bytes(b"ground truth")
    with pytest.raises(BadInput, match="no `atool ingest` wrote"):
        ingest_answers(answers, dataset)
    assert (dataset / "labels" / "gt.png").read_bytes() == b"ground truth"
    ingest_answers(answers, tmp_path / "sparse")
    again = ingest_answers(answers, tmp_path / "sparse")  # an earlier ingest's folder: replaced
    assert again["images"] == 3 and len(list((tmp_path / "sparse" / "labels").iterdir())) == 3
