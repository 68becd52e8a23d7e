"""Progress lines (deltaflow.progress): tqdm's elapsed<ETA, rate meter; every line in the job's
log, and on the console (the job's original stderr) at most one per 30 s, the last one always."""

import io
import logging
import sys

from deltaflow import progress


def test_meter_has_elapsed_eta_and_rate():
    assert progress.meter(50, 100, 10, "steps") == "[00:10<00:10,  5.00 steps/s]"
    assert progress.meter(0, 100, 0, "docs") == "[00:00<?, ? docs/s]"


def test_lines_go_to_the_log_and_rate_limited_to_the_console(monkeypatch, caplog):
    console, job_log = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", console)
    monkeypatch.setattr(sys, "stderr", job_log)  # rulekit.start_job points stderr at the job's log
    monkeypatch.setitem(progress._job, "last", 0.0)
    progress.set_job("evaluate model=base")
    with caplog.at_level(logging.INFO, logger="deltaflow.progress"):
        for i in range(3):
            progress.report(f"chunk {i + 1}/4")
        progress.report("chunk 4/4", last=True)
    assert [r.message for r in caplog.records] == ["chunk 1/4", "chunk 2/4", "chunk 3/4", "chunk 4/4"]
    assert console.getvalue().splitlines() == [
        "[evaluate model=base] chunk 1/4",
        "[evaluate model=base] chunk 4/4",
    ]
    monkeypatch.setattr(sys, "stderr", console)  # not redirected: the log is the console already
    progress.report("once", last=True)
    assert console.getvalue().count("once") == 0
