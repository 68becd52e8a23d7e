"""What every entry script does first: send stderr and logging to the rule's log file."""

from __future__ import annotations

import logging
import signal
import sys

from .provenance import now, write_job_record


def start_job(snakemake) -> str:
    """Route stderr/logging to ``snakemake.log[0]``; return the start timestamp.

    SIGTERM (scancel, a timeout) becomes a normal exit, so the atomic writers remove
    their temporary files instead of leaving them behind.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    from .progress import set_job

    wildcards = ",".join(f"{k}={v}" for k, v in snakemake.wildcards.items())
    set_job(f"{snakemake.rule}{' ' + wildcards if wildcards else ''}")
    if snakemake.log:
        fh = open(snakemake.log[0], "a", buffering=1)  # noqa: SIM115 (stderr for the job's life)
        sys.stderr = fh
        logging.basicConfig(
            stream=fh, level=logging.INFO, force=True, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
    else:
        logging.basicConfig(level=logging.INFO, force=True)
    # what made these outputs, kept with results/ (a copy without .snakemake/ is checked with it)
    write_job_record(snakemake)
    return now()
