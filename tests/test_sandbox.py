"""The code sandbox: malicious samples fail their own test and leave the run unharmed."""

import os
import socket
import time

import pytest

from deltaflow.sandbox import Limits, run_program

LIMITS = Limits(timeout_s=3, memory_mb=512)
ROOT = os.geteuid() == 0


def test_correct_and_wrong_programs():
    assert run_program("def f(x):\n    return x * 2\nassert f(3) == 6\n", LIMITS).status == "passed"
    out = run_program("assert 1 + 1 == 3\n", LIMITS)
    assert out.status == "failed" and "AssertionError" in out.stderr_tail


@pytest.mark.parametrize("program", ["while True:\n    pass\n", "import time\ntime.sleep(60)\n"])
def test_infinite_loop_is_killed_at_the_time_limit(program):
    t0 = time.monotonic()
    out = run_program(program, LIMITS)
    assert out.status == "timeout" and not out.passed
    assert time.monotonic() - t0 < LIMITS.timeout_s + 3


def test_fork_bomb_is_contained():
    out = run_program("import os\nwhile True:\n    os.fork()\n", LIMITS)
    assert out.status == "failed"
    # around the guard: libc's fork directly, stopped by the process limit
    bomb = (
        "import ctypes\nlibc = ctypes.CDLL(None)\nfor _ in range(10000):\n"
        "    if libc.fork() < 0:\n        raise SystemExit(3)\n"
    )
    t0 = time.monotonic()
    out = run_program(bomb, LIMITS)
    # the forked copies all report (more than one report: suspect), or the bomb runs out of time
    assert not out.passed and out.status in ("early_exit", "suspect", "timeout"), out
    assert time.monotonic() - t0 < LIMITS.timeout_s + 3
    assert run_program("assert True\n", LIMITS).passed  # the machine still runs programs


def test_file_deletion_outside_the_temp_dir_fails(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    for program in (
        f"import os\nos.remove({str(victim)!r})\n",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})\n",
    ):
        assert run_program(program, LIMITS).status == "failed"
    assert victim.read_text() == "precious"


@pytest.mark.skipif(
    not ROOT, reason="bypassing the guard through libc is only stopped by the uid drop (root)"
)
def test_file_deletion_through_libc_fails_as_nobody(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    program = f"import ctypes\nassert ctypes.CDLL(None).unlink({str(victim).encode()!r}) == 0\n"
    assert run_program(program, LIMITS).status == "failed"
    assert victim.read_text() == "precious"


def test_huge_allocation_fails_inside_the_sample():
    out = run_program("x = bytearray(64 * 2**30)\n", LIMITS)
    assert out.status == "failed" and "MemoryError" in out.stderr_tail


def test_no_network():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        out = run_program(
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n", LIMITS
        )
        assert out.status == "failed" and "network" in out.stderr_tail.lower()
        if ROOT:  # the raw socket module too: there is no network in the namespace at all
            raw = f"import _socket\ns = _socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))\n"
            out = run_program(raw, LIMITS)
            assert out.status == "failed" and "unreachable" in out.stderr_tail.lower()
    finally:
        server.close()


def test_output_flood_is_bounded():
    out = run_program("print('x' * 10**8)\n", LIMITS)
    assert out.status == "failed" and "File too large" in out.stderr_tail
