"""A one-sided CUSUM on the standardised score, with its threshold set by simulation for a target ERT.

``S_t = max(0, S_{t-1} + z_t - k)``; an alarm starts when ``S_t > h``. The
expected run time (ERT, frames between false alarms) of a given ``h`` depends
on how the in-domain score is correlated over time, which the i.i.d. formulas
ignore: a video's frames repeat one scene for seconds. So ``h`` is set by
simulating the detector on a moving-block bootstrap of the reference score
sequences (blocks long enough to keep the correlation), many chains at once.

The simulation needs one pass: without a reset, the first time a chain's
statistic exceeds ``h`` is the first time its running maximum does, so keeping
each chain's record highs (time, value) gives the run length for every ``h``.
Run lengths beyond the horizon are censored; the ERT is then estimated as for
an exponential (geometric) law: total observed time / number of alarms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from atool.core.errors import BadInput


@dataclass
class Cusum:
    """The online detector: O(1) work and memory per frame."""

    k: float
    h: float
    s: float = 0.0
    alarm: bool = False

    def update(self, z: float) -> tuple[bool, bool]:
        """Feed one standardised score; returns (alarm started, alarm ended) on this frame.

        In alarm the statistic is capped at 2h so it comes back soon after the stream
        does; the alarm ends when it has fallen back to 0 (the reference level).
        """
        s = self.s + z - self.k
        s = 0.0 if s < 0.0 else s
        if self.alarm:
            s = min(s, 2.0 * self.h)
            self.s = s
            if s == 0.0:
                self.alarm = False
                return False, True
            return False, False
        self.s = s
        if s > self.h:
            self.alarm = True
            return True, False
        return False, False


def alarms_with_restart(z: np.ndarray, k: float, hs: np.ndarray) -> list[np.ndarray]:
    """Alarm frames of CUSUMs restarted at 0 after every alarm, one array per threshold in ``hs``.

    ``z``: float N scores; ``hs``: float H thresholds. Vectorised over thresholds.
    """
    hs = np.asarray(hs, dtype=np.float64)
    s = np.zeros_like(hs)
    hits: list[list[int]] = [[] for _ in hs]
    for t, v in enumerate(np.asarray(z, dtype=np.float64).tolist()):
        s = np.maximum(s + (v - k), 0.0)
        up = s > hs
        if up.any():
            for j in np.flatnonzero(up).tolist():
                hits[j].append(t)
            s[up] = 0.0
    return [np.asarray(h, dtype=np.int64) for h in hits]


def auto_block(seqs: list[np.ndarray], cap: int = 200) -> int:
    """Bootstrap block length: twice the lag at which the pooled autocorrelation first drops below 0.1."""
    x = [s - s.mean() for s in seqs if len(s) > 4]
    if not x:
        return 1
    var = sum(float((s * s).sum()) for s in x)
    if var <= 0:
        return 1
    longest = max(len(s) for s in x)
    for lag in range(1, min(cap, longest - 1)):
        acf = sum(float((s[:-lag] * s[lag:]).sum()) for s in x if len(s) > lag) / var
        if acf < 0.1:
            return max(1, min(cap, 2 * lag, longest // 4 or 1))
    return max(1, min(cap, longest // 4 or 1))


def block_bootstrap(seqs: list[np.ndarray], block: int, chains: int, length: int, rng: np.random.Generator,
                    chunk: int = 2048) -> Iterator[np.ndarray]:
    """Yield float64 chains x <=chunk arrays: ``length`` frames per chain made of random reference blocks
    (moving-block bootstrap; a block never crosses from one reference sequence into another)."""
    data = np.concatenate(seqs)
    starts, pos = [], 0
    for s in seqs:
        if len(s) >= block:
            starts.append(np.arange(pos, pos + len(s) - block + 1))
        pos += len(s)
    if not starts:
        raise BadInput(f"reference sequences are shorter than the bootstrap block ({block} frames); use a smaller --block")
    valid = np.concatenate(starts)
    chunk = max(block, chunk // block * block)
    done = 0
    while done < length:
        n = min(chunk, length - done)
        nblocks = -(-n // block)
        first = valid[rng.integers(0, len(valid), size=(chains, nblocks))]
        idx = (first[:, :, None] + np.arange(block)).reshape(chains, -1)[:, :n]
        yield data[idx]
        done += n


def record_highs(chunks: Iterator[np.ndarray], k: float, chains: int) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Run un-reset CUSUMs over the chains; returns each chain's record times and values, and the horizon."""
    s = np.zeros(chains)
    top = np.zeros(chains)
    rec_t: list[list[int]] = [[] for _ in range(chains)]
    rec_v: list[list[float]] = [[] for _ in range(chains)]
    t = 0
    for block in chunks:
        for col in block.T:
            s = np.maximum(s + col - k, 0.0)
            up = s > top
            if up.any():
                for c in np.flatnonzero(up).tolist():
                    rec_t[c].append(t)
                    rec_v[c].append(s[c])
                top = np.maximum(top, s)
            t += 1
    return [np.asarray(r, np.int64) for r in rec_t], [np.asarray(r) for r in rec_v], t


def ert_of(h: float, rec_t: list[np.ndarray], rec_v: list[np.ndarray], horizon: int) -> float:
    """Estimated ERT (frames) at threshold ``h`` from record highs: observed time / alarms (censored at horizon)."""
    total, alarms = 0, 0
    for t, v in zip(rec_t, rec_v):
        i = int(np.searchsorted(v, h, side="right"))
        if i < len(v):
            total += int(t[i]) + 1
            alarms += 1
        else:
            total += horizon
    return total / alarms if alarms else float("inf")


def calibrate_threshold(seqs: list[np.ndarray], ert: float, k: float = 0.5, block: int = 1, chains: int = 400,
                        seed: int = 0) -> tuple[float, dict]:
    """The smallest ``h`` whose simulated ERT on block-bootstrapped ``seqs`` is >= ``ert`` frames.

    ``seqs``: in-domain standardised score sequences (float, in frame order). Returns (h, info).
    """
    if not ert > 1:
        raise BadInput(f"ERT must be > 1 frame, got {ert}")
    rng = np.random.default_rng(seed)
    horizon = int(min(3 * ert + 100, 2_000_000))
    rec_t, rec_v, horizon = record_highs(block_bootstrap(seqs, block, chains, horizon, rng), k, chains)
    hi = max((float(v[-1]) for v in rec_v if len(v)), default=1.0)
    lo = 0.0
    if ert_of(hi, rec_t, rec_v, horizon) < ert:
        hi *= 1.5  # above every record: no simulated alarm at all
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if ert_of(mid, rec_t, rec_v, horizon) >= ert:
            hi = mid
        else:
            lo = mid
    alarms = sum(int(np.searchsorted(v, hi, side="right") < len(v)) for v in rec_v)
    return hi, {"chains": chains, "horizon": horizon, "block": block, "simulated_alarms": alarms,
                "simulated_ert": ert_of(hi, rec_t, rec_v, horizon)}


def simulated_ert(seqs: list[np.ndarray], h: float, k: float, block: int, chains: int = 200, horizon: int = 30000,
                  seed: int = 1) -> float:
    """ERT at a given ``h`` on a block bootstrap of ``seqs`` (e.g. held-out sequences)."""
    rec_t, rec_v, horizon = record_highs(block_bootstrap(seqs, block, chains, horizon, np.random.default_rng(seed)), k, chains)
    return ert_of(h, rec_t, rec_v, horizon)
