"""Progress of long work (training steps, eval and generation chunks, judge requests), with a
rate and an ETA, in the job's log and on the console that runs the workflow.

- Our own lines (``report``) go to the job's log (logging) and, when the job's stderr is its
  log (``rulekit.start_job``), also to the console the job was started from, prefixed with the
  job's name and at most one every ``CONSOLE_INTERVAL_S`` per job (the last one always).
- Elapsed time, ETA and rate are formatted by tqdm's own ``format_meter``.
- The libraries' own bars (lm-eval's requests, datasets' maps, transformers) are tqdm bars;
  in a job log they refresh at most every ``BAR_INTERVAL_S``: the Snakefile sets tqdm's
  ``TQDM_MININTERVAL`` for every job (tqdm reads it when it is imported).
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("deltaflow.progress")
BAR_INTERVAL_S = 30
CONSOLE_INTERVAL_S = 30
_job = {"name": "", "last": 0.0}


def set_job(name: str) -> None:
    """The job's name on its console lines (``rulekit.start_job``)."""
    _job["name"] = name


def meter(done: float, total: float, elapsed: float, unit: str) -> str:
    """'[00:14<00:29, 1.70 docs/s]': elapsed time, ETA and rate of ``done`` of ``total``."""
    from tqdm import tqdm

    return tqdm.format_meter(
        done, total, elapsed, unit=f" {unit}", bar_format="[{elapsed}<{remaining}, {rate_noinv_fmt}]"
    )


def report(message: str, *, last: bool = False) -> None:
    """A progress line for the job's log, and (rate-limited) for the console."""
    log.info(message)
    console = sys.__stderr__
    now = time.time()
    if console is None or sys.stderr is console or not (last or now - _job["last"] >= CONSOLE_INTERVAL_S):
        return
    _job["last"] = now
    print(f"[{_job['name'] or 'deltaflow'}] {message}", file=console, flush=True)
