"""OpenMP workers that sleep at their barriers instead of spinning.

A query decodes and selects on threads of its own beside inference. torch's
OpenMP workers spin at the end of every parallel region by default, taking
the cores those threads need: on 2 loaded cores the query's end to end went
from 0.53 to 0.84 of inference-only throughput with passive waits. OpenMP
reads ``OMP_WAIT_POLICY`` once, when torch loads it, so this must run before
anything imports torch; processes spawned afterwards (``atool bench``'s
children) inherit it. A value the user set is kept.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

ENV = "OMP_WAIT_POLICY"


def passive_openmp_waits() -> bool:
    """Default ``OMP_WAIT_POLICY`` to PASSIVE; True when this process's torch will still read it.

    False when torch was imported first (the setting then reaches only child
    processes); that case is logged at debug level.
    """
    os.environ.setdefault(ENV, "PASSIVE")
    if "torch" in sys.modules:
        log.debug("%s=%s set after torch was imported: it applies to child processes only", ENV, os.environ[ENV])
        return False
    return True


__all__ = ["ENV", "passive_openmp_waits"]
