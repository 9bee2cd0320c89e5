"""kill -9 at random moments of `atool train`, `loop`, `ingest` and `export`, then the same command again.

For each command: one uninterrupted reference run, then a chain of runs of the
same command in one output folder, each SIGKILLed at a seeded random moment,
then one run to the end. After every kill the output folder may hold only
complete files under their final names (each one byte-equal to the
reference's, an earlier good output, or a checkpoint that loads) and temp
files under atool's temp naming; the final run must end exactly as the
reference did: weights ``torch.equal`` tensor by tensor (bit-exact: same
machine, same thread count, CPU), files byte-equal apart from timings and
``created``.

The default suite kills train, loop and ingest ``KILLS`` time(s) each (the
2-core CI budget); the slow variants kill every command ``SLOW_KILLS`` times,
and export (tens of seconds per ONNX conversion on 2 cores) only there.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from crash_harness import kill_moments, normalized_json, run, shared_zygote, temp_or_final, write_answers

KILLS = 1
SLOW_KILLS = 6
TINY = ["--batch-size", "2", "--crop", "64x32"]


@pytest.fixture(scope="module")
def zygote():
    return shared_zygote()


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _same_file(a: Path, b: Path) -> bool:
    if a.suffix == ".json":
        return normalized_json(a) == normalized_json(b)
    return a.read_bytes() == b.read_bytes()


def _check_after_kill(out: Path, ref: Path, earlier: Path | None, evolving: tuple[str, ...], also=None) -> int:
    """Every file under a final name in ``out`` is complete; returns the number of temp files seen.

    ``also(rel)``: other reference files that ``rel`` may equal (an output that is replaced as a whole
    as the command goes on, e.g. the loop's OUT/labels, a copy of the last finished stage's labels).
    """
    temps, finals = temp_or_final(out)
    for path in finals:
        rel = path.relative_to(out)
        if path.suffix == ".pt" and path.name in evolving:
            ck = _state(path)  # a checkpoint mid-training: it must load
            assert ck["step"] >= 0
            continue
        if path.suffix == ".json" and path.name in evolving:
            json.loads(path.read_text())
            continue
        if ".partial-state" in path.name:  # query's own resume state (atool.active.resume): a complete .npz
            import numpy as np

            with np.load(path, allow_pickle=False) as state:
                assert state.files
            continue
        if earlier is not None and (earlier / rel).is_file() and _same_file(path, earlier / rel):
            continue  # the earlier good output, untouched
        if also is not None and any(_same_file(path, ref / alt) for alt in also(rel) if (ref / alt).is_file()):
            continue
        assert (ref / rel).is_file(), f"{rel} appeared after a kill but is not an output of the command"
        assert _same_file(path, ref / rel), f"{rel} is visible under its final name but differs from the complete output"
    return len(temps)


def _crash_chain(zygote, tmp_path: Path, args: list, kills: int, seed: int, verify, *, earlier=None, evolving=(), also=None,
                 moments=None, observe=None):
    """Reference run, then runs SIGKILLed at seeded random moments until ``kills`` kills landed, then a final run.

    ``verify(ref_dir, chain_dir)`` compares a finished chain with the reference. Runs go on in one folder,
    each resuming what the killed ones left; a run that finishes before its kill moment (a resumed run has
    less left to do) is verified and the chain starts again in a fresh folder. Each run's working folder is
    its own and ``args`` name outputs relative to it, so the paths recorded in the outputs are the same.
    ``moments(rng, chain_dir, ref_seconds)``: the next kill's (stderr line, delay after it), given what the
    chain holds, instead of a uniform delay from the start; ``observe(chain_dir)`` records what a kill left.
    Returns the number of kills that landed, temp files seen after kills, and the reference's duration.
    """
    ref_dir, chain_dir = tmp_path / "ref", tmp_path / "chain"
    ref_dir.mkdir()

    def fresh_chain() -> None:
        shutil.rmtree(chain_dir, ignore_errors=True)
        chain_dir.mkdir()
        if earlier is not None:  # an earlier good output sits where the new one will go
            shutil.copytree(earlier, chain_dir, dirs_exist_ok=True)

    fresh_chain()
    ref = run(zygote, args, ref_dir, tmp_path / "ref_log")
    assert ref.code == 0, ref.stderr
    killed, temps, finished = 0, 0, 0
    uniform = kill_moments(seed, 3 * kills, ref.seconds)
    rng = random.Random(seed)
    for i in range(3 * kills):
        if killed == kills:
            break
        line, delay = moments(rng, chain_dir, ref.seconds) if moments else (None, uniform[i])
        r = run(zygote, args, chain_dir, tmp_path / f"kill{i}", kill_after=delay, kill_line=line)
        assert r.code in (0, -9), r.stderr
        assert "Traceback" not in r.stderr
        if r.killed:
            killed += 1
            temps += _check_after_kill(chain_dir, ref_dir, earlier, evolving, also)
            if observe is not None:
                observe(chain_dir)
        else:
            verify(ref_dir, chain_dir)
            finished += 1
            fresh_chain()
    final = run(zygote, args, chain_dir, tmp_path / "final")
    assert final.code == 0, final.stderr
    left, _ = temp_or_final(chain_dir)
    assert not left, f"temp files left after the final run: {left}"
    verify(ref_dir, chain_dir)
    return {"killed": killed, "finished_before_kill": finished, "temps_seen": temps, "ref_seconds": round(ref.seconds, 2)}


def _equal(a, b, where: str) -> None:
    """Nested dicts/lists of tensors and plain values, tensors compared with torch.equal."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs after resume"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for k in a:
            _equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# --- atool train ------------------------------------------------------------------------------


def _train(zygote, synth_pair, tmp_path, kills, method="source", iters=8):
    # advent (slow variant): a discriminator and its Adam state, and a target stream, to restore as well.
    target = ["--target", synth_pair / "target_train"] if method != "source" else []
    args = ["train", method, "--source", synth_pair / "source", *target,
            "--out", "m.pt", "--iters", str(iters), *TINY, "--checkpoint-every", "1", "--log-every", "1", "--resume"]

    def verify(ref: Path, chain: Path) -> None:
        a, b = _state(ref / "m.pt"), _state(chain / "m.pt")
        # Weights, step, and what a further --resume reads: optimiser (and discriminator) states, RNGs, data position.
        for key in ("step", "state_dict", "method_state", "rng", "data"):
            _equal(a[key], b[key], key)
        assert _same_file(ref / "m.yaml", chain / "m.yaml") and _same_file(ref / "m.json", chain / "m.json")

    def moments(rng: random.Random, chain: Path, ref_seconds: float) -> tuple[str, float]:
        # After the log line of a random step k a little past the chain's checkpoint (so step k-1 is
        # checkpointed and the run is mid-way), plus a random part of a step.
        done = _state(chain / "m.pt")["step"] if (chain / "m.pt").is_file() else 0
        k = rng.randint(min(done + 2, iters - 1), min(done + 3, iters - 1))
        return f"step {k}/{iters} ", rng.uniform(0, ref_seconds / iters)

    steps: list[int | None] = []

    def observe(chain: Path) -> None:
        steps.append(_state(chain / "m.pt")["step"] if (chain / "m.pt").is_file() else None)

    report = _crash_chain(zygote, tmp_path, args, kills, seed=1, verify=verify, evolving=("m.pt", "m.json"),
                          moments=moments, observe=observe)
    report["checkpoint_steps_at_kills"] = steps
    # Resume is exercised: every kill came after a checkpoint and before the end.
    assert all(s is not None and 0 < s < iters for s in steps), steps
    return report


def test_train_killed_then_resumed_ends_as_an_uninterrupted_run(zygote, synth_pair, tmp_path):
    report = _train(zygote, synth_pair, tmp_path, KILLS)
    print("crash report", report)
    assert report["killed"] >= 1


@pytest.mark.slow
def test_train_killed_many_times(zygote, synth_pair, tmp_path):
    report = _train(zygote, synth_pair, tmp_path, SLOW_KILLS, method="advent", iters=16)
    print("crash report", report)
    assert report["killed"] >= 5


# --- atool loop -------------------------------------------------------------------------------


def _loop(zygote, synth_pair, tiny_checkpoint, tmp_path, kills):
    cfg = tmp_path / "loop.yaml"
    cfg.write_text("stages: 2\nquery: {strategy: random, budget: 10, per_image: true}\nretrain: {iters: 3}\n"
                   "train: {batch_size: 2, crop: [64, 32], log_every: 1, checkpoint_every: 1}\n")
    pool = synth_pair / "target_train"
    args = ["loop", "--source", synth_pair / "source", "--target", pool, "--oracle-labels", pool / "oracle_labels",
            "--init", tiny_checkpoint, "--out", "run", "--config", cfg]

    def verify(ref: Path, chain: Path) -> None:
        _, ref_files = temp_or_final(ref)
        _, got_files = temp_or_final(chain)
        assert sorted(p.relative_to(ref) for p in ref_files) == sorted(p.relative_to(chain) for p in got_files)
        for p in ref_files:
            rel = p.relative_to(ref)
            if p.suffix == ".pt":  # every stage's model: weights and training state
                a, b = _state(p), _state(chain / rel)
                for key in ("step", "state_dict", "method_state"):
                    _equal(a[key], b[key], f"{rel}:{key}")
            elif p.name == "queries.json":
                # A query list records its model file's SHA-256, and checkpoint files equal in every
                # tensor and value still differ in bytes (torch.save writes a random serialization id).
                a, b = normalized_json(p), normalized_json(chain / rel)
                a["model"].pop("sha256"), b["model"].pop("sha256")
                assert a == b, rel
            else:
                assert _same_file(p, chain / rel), rel

    def earlier_stage(rel: Path) -> list[Path]:
        if rel.parts[:2] != ("run", "labels"):
            return []
        return [Path("run", f"stage_{k}", "accumulated", *rel.parts[2:]) for k in (1, 2)]

    return _crash_chain(zygote, tmp_path, args, kills, seed=4, verify=verify, evolving=("model.pt", "model.json"), also=earlier_stage)


def test_loop_killed_then_rerun_ends_as_an_uninterrupted_loop(zygote, synth_pair, tiny_checkpoint, tmp_path):
    report = _loop(zygote, synth_pair, tiny_checkpoint, tmp_path, KILLS)
    print("crash report", report)
    assert report["killed"] >= 1


@pytest.mark.slow
def test_loop_killed_many_times(zygote, synth_pair, tiny_checkpoint, tmp_path):
    report = _loop(zygote, synth_pair, tiny_checkpoint, tmp_path, SLOW_KILLS)
    print("crash report", report)
    assert report["killed"] >= 5


# --- atool ingest -----------------------------------------------------------------------------


def _ingest(zygote, tmp_path, kills, n_images):
    new = write_answers(tmp_path / "answers.json", n_images, seed=0)
    old = write_answers(tmp_path / "old_answers.json", n_images // 2, seed=1)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    r = run(zygote, ["ingest", old, "--out", "sparse"], earlier, tmp_path / "earlier_log")
    assert r.code == 0, r.stderr

    def verify(ref: Path, chain: Path) -> None:
        _, ref_files = temp_or_final(ref)
        _, got_files = temp_or_final(chain)
        assert sorted(p.relative_to(ref) for p in ref_files) == sorted(p.relative_to(chain) for p in got_files)
        for p in ref_files:
            assert (chain / p.relative_to(ref)).read_bytes() == p.read_bytes(), p

    return _crash_chain(zygote, tmp_path, ["ingest", new, "--out", "sparse"], kills, seed=3, verify=verify, earlier=earlier)


def test_ingest_killed_then_rerun_writes_the_same_files(zygote, tmp_path):
    report = _ingest(zygote, tmp_path, KILLS, n_images=40)
    print("crash report", report)
    assert report["killed"] >= 1


@pytest.mark.slow
def test_ingest_killed_many_times(zygote, tmp_path):
    report = _ingest(zygote, tmp_path, SLOW_KILLS, n_images=200)
    print("crash report", report)
    assert report["killed"] >= 5


# --- atool export -----------------------------------------------------------------------------


def _export(zygote, tmp_path, tiny_checkpoint, kills):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    other = tmp_path / "other.pt"
    ck = _state(tiny_checkpoint)
    ck["state_dict"] = {k: (v + 1 if v.is_floating_point() else v) for k, v in ck["state_dict"].items()}
    torch.save(ck, other)
    r = run(zygote, ["export", "--checkpoint", other, "--out", "m.onnx", "--no-verify"], earlier, tmp_path / "earlier_log")
    assert r.code == 0, r.stderr
    args = ["export", "--checkpoint", tiny_checkpoint, "--out", "m.onnx", "--sample-size", "64x32"]

    def verify(ref: Path, chain: Path) -> None:
        assert (chain / "m.onnx").read_bytes() == (ref / "m.onnx").read_bytes(), "the re-export differs in bytes"

    return _crash_chain(zygote, tmp_path, args, kills, seed=1, verify=verify, earlier=earlier)


@pytest.mark.slow
def test_export_killed_many_times(zygote, tmp_path, tiny_checkpoint):
    report = _export(zygote, tmp_path, tiny_checkpoint, SLOW_KILLS)
    print("crash report", report)
    assert report["killed"] >= 5
