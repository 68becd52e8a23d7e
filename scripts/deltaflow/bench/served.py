"""Served models: a model behind an OpenAI-compatible server (vLLM's `vllm serve`, SGLang, TGI,
llama.cpp's server), evaluated, judging or generating through HTTP instead of loaded in the job.

The client is lm-eval's own ``local-completions`` model (``LocalCompletionsAPI``): bounded
concurrency (``num_concurrent``), a timeout, retries with exponential backoff on any failed
request (429, 5xx, a refused connection; tenacity inside lm-eval), and prompts built in our
process with the model's tokenizer exactly as for a model we load, so a served model and the
same weights in the job see the same text. Requests go to the completions endpoint as text
(llama.cpp's server takes no token ids).

- **Identity.** ``identity()`` asks the server's ``/v1/models``: the configured model must be
  listed, and what the server reports of it (its id, owner, root path, context length; not its
  start time) goes into the import manifest, the eval cache key and the audit chain. The eval
  job asks again before any request and refuses a server that now reports something else.
- **Request cache.** Each request's answer is saved as it arrives, by content (model identity,
  prompt, decoding), with lm-eval's ``CachingLM`` (``simple_evaluate(use_cache=...)``): a
  killed eval or judge resumes without asking again for what it already has. Sampled
  generations are not cached by lm-eval (each sample must be drawn).
- **Failures.** After the retries, the job stops with the endpoint, the model and the last
  error (``ServedModelError``). A choice without text (null, which lm-eval would turn into an
  empty answer) is an error too, never a silent empty answer.
- **Servers the workflow starts** (``start:``) run inside each job that uses them: the import
  job, then each eval, judge or generation job starts the server on 127.0.0.1 over the
  workflow's own weights (llama-cpp-python's server over a GGUF, ``vllm serve`` over a whole
  model), waits for ``/v1/models``, and stops it when the job ends (also if the job is killed:
  the server dies with its parent). On SLURM the server runs in that job's allocation, on
  its node. Snakemake's own mechanism, a ``service()`` output, was not used: it puts the
  service job and *every* consumer into one pipe group that the scheduler runs at once
  (``dag.handle_pipes_and_services``; the scheduler refuses a group that does not fit the
  cores: "have to run simultaneously"), so a judge served for 30 judge jobs would need 30 job
  slots at the same time, and an import job and the evals that depend on it could not both be
  consumers. The price of the per-job server is one start per job; a judge that must stay up
  across jobs is started outside the workflow and reached with ``url:``.
- **Log-likelihoods** (multiple-choice benchmarks, logprob judges) need prompt log-probs:
  completions with ``echo`` + ``logprobs``, as lm-eval's ``local-completions`` asks for them.
  vLLM gives them; llama.cpp's own server gives none and llama-cpp-python's server gives them
  one position late. So a served model declares them (``served.logprobs: true``, checked by
  the import job: ``probe_logprobs``) and is otherwise refused for them before any job
  (``outside._check_served``). The server tokenizes the text
  it is sent; the echoed tokens must spell the context and the continuation exactly as our
  tokenizer split them (a server BOS in front is allowed), or the job stops: lm-eval's own
  parser counts positions from the end, which is one token off on llama.cpp's server (it
  echoes the prompt without the generated token) and silently wrong on any tokenizer mismatch.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DeltaflowError
from ..io import sha256_path, sha256_text

log = logging.getLogger(__name__)
# what a server reports of a model that stays with the model (vLLM adds a permission entry with a
# fresh id and time on every request; every server, its start time)
STABLE = ("id", "object", "owned_by", "root", "parent", "max_model_len")


class ServedModelError(DeltaflowError):
    pass


def api_key(served: dict) -> str:
    """The key from the environment variable the config names (never the key itself)."""
    var = served.get("api_key_env")
    if not var:
        return ""
    if var not in os.environ:
        raise ServedModelError(
            f"served model at {served['url']}: the environment variable {var} (api_key_env) is not set"
        )
    return os.environ[var]


def identity(served: dict, *, timeout: float = 30) -> dict:
    """What the server at ``served['url']`` reports of ``served['model']`` (``/v1/models``):
    its entry without the fields that change every start. A server that does not answer, or
    does not list the model, is an error naming both."""
    url = served["url"].rstrip("/") + "/models"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key(served)}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            listing = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ServedModelError(f"served model '{served['model']}': {url} did not answer ({exc})") from exc
    entries = {e.get("id"): e for e in listing.get("data", [])}
    if served["model"] not in entries:
        raise ServedModelError(
            f"the server at {served['url']} serves {sorted(entries)}, not '{served['model']}' "
            "(the config's served model name); fix the name or point url at the right server"
        )
    return {
        "url": served["url"],
        "model": served["model"],
        "reported": {k: v for k, v in sorted(entries[served["model"]].items()) if k in STABLE},
    }


def check_identity(served: dict, recorded: dict) -> None:
    """The server still reports what the import job recorded (``identity``): else the cached
    outputs and the manifest would describe another model."""
    now = identity(served)
    if now["reported"] != recorded["reported"]:
        raise ServedModelError(
            f"the server at {served['url']} now reports {now['reported']} for '{served['model']}', but the "
            f"workflow recorded {recorded['reported']}; the model changed behind the endpoint. Rerun its "
            "import (delete its results/models/outside/<name>/manifest.json) to evaluate the new one"
        )


def _complete(served: dict, body: dict, timeout: float) -> dict:
    """One completion request (the first choice), ``extra_body`` added as to every request."""
    url = served["url"].rstrip("/") + "/completions"
    req = urllib.request.Request(
        url,
        data=json.dumps(
            {"model": served["model"], "temperature": 0, **body, **served["extra_body"]}
        ).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key(served)}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.load(resp)["choices"][0]
    except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as exc:
        raise ServedModelError(
            f"served model '{served['model']}' (served.logprobs: true): {url} did not answer a completion "
            f"with logprobs ({exc}); set served.logprobs: false if the server cannot give them"
        ) from exc


PROBE = "The sky is blue and the grass is green, and the sea is"


def probe_logprobs(served: dict, *, timeout: float = 120) -> None:
    """``served.logprobs: true`` checked with two requests: an echoed prompt must get a log-prob
    for every token after the first, and the one for its last token must come from the
    distribution *before* that token: its top entry equals the top entry of a plain completion
    of the prompt without that token. llama-cpp-python's server fails the second check (its
    echoed log-prob of a token is taken after the token, llama-cpp-python issue #1983), which
    would score every choice of a multiple-choice benchmark wrongly without an error."""
    lp = (
        _complete(served, {"prompt": PROBE, "max_tokens": 1, "logprobs": 1, "echo": True}, timeout).get(
            "logprobs"
        )
        or {}
    )
    values, tokens, tops = (
        lp.get("token_logprobs") or [],
        lp.get("tokens") or [],
        lp.get("top_logprobs") or [],
    )
    prompt_len = len(
        [t for t, off in zip(tokens, lp.get("text_offset") or [], strict=False) if off < len(PROBE)]
    )
    where = f"served model '{served['model']}' at {served['url']} (served.logprobs: true)"
    if (
        prompt_len < 3
        or any(not isinstance(x, (int, float)) for x in values[1:prompt_len])
        or len(tops) < prompt_len
    ):
        raise ServedModelError(
            f"{where}: the server gave no prompt log-probs with echo ({lp!r}); set served.logprobs: false, and "
            "leave the model out of multiple-choice benchmarks and logprob judges"
        )
    last = tokens[prompt_len - 1]
    if not PROBE.endswith(last) or not last:
        raise ServedModelError(f"{where}: the echoed tokens {tokens[:prompt_len]} do not spell the prompt")
    before = _complete(served, {"prompt": PROBE[: -len(last)], "max_tokens": 1, "logprobs": 1}, timeout)
    want = max(((before.get("logprobs") or {}).get("top_logprobs") or [{}])[0].values(), default=None)
    got = max((tops[prompt_len - 1] or {}).values(), default=None)
    if want is None or got is None or abs(want - got) > 1e-2:
        raise ServedModelError(
            f"{where}: the echoed log-prob of the prompt's last token {last!r} is not from the distribution "
            f"before it (top log-prob {got} echoed, {want} when the prompt stops before it); the server's "
            "prompt log-probs are misplaced (llama-cpp-python's server takes them after each token), so it "
            "cannot score multiple-choice benchmarks. Set served.logprobs: false, or serve the model with "
            "vLLM"
        )


def aligned_logprobs(choice: dict, tokens: list[int], ctxlen: int, decode, where: str) -> tuple[float, bool]:
    """(log-likelihood, is_greedy) of ``tokens[ctxlen:]`` from an echoed completion, after
    checking the server's tokens spell the context and the continuation as ``tokens`` does
    (see the module: lm-eval's parser would count from the end)."""
    lp = choice.get("logprobs") or {}
    toks, values, tops = lp.get("tokens") or [], lp.get("token_logprobs") or [], lp.get("top_logprobs") or []
    ctx_text, cont_text = decode(tokens[:ctxlen]), decode(tokens[ctxlen:])
    for off in (0, 1):  # 1: a BOS the server put in front
        if (
            "".join(toks[off : off + ctxlen]) == ctx_text
            and "".join(toks[off + ctxlen : off + len(tokens)]) == cont_text
        ):
            break
    else:
        raise ServedModelError(
            f"{where}: the server's echoed tokens do not match this tokenizer's ({len(toks)} echoed for "
            f"{len(tokens)} sent; context {ctx_text[-40:]!r}, continuation {cont_text!r}): its log-probs "
            "cannot be read per token. Give served.tokenizer the served model's own tokenizer"
        )
    span = slice(off + ctxlen, off + len(tokens))
    vals, top = values[span], tops[span] if len(tops) >= off + len(tokens) else []
    if any(not isinstance(v, (int, float)) for v in vals):
        raise ServedModelError(f"{where}: the server gave no log-prob for a continuation token: {vals!r}")
    greedy = bool(top) and all(t and v >= max(t.values()) for v, t in zip(vals, top, strict=True))
    return float(sum(vals)), greedy


# The server gets SIGTERM when the job that started it dies, however it dies (Linux
# prctl PR_SET_PDEATHSIG, kept across exec): set in a small launcher that then execs the server,
# since Popen's preexec_fn is unsafe in a job with threads.
DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys; ctypes.CDLL('libc.so.6').prctl(1, signal.SIGTERM); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def _server_command(served: dict, port: int) -> tuple[list[str], dict]:
    start, weights = served["start"], served["weights_path"]
    address = ["--host", "127.0.0.1", "--port", str(port)]
    if start["server"] == "llama_cpp":
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", weights, "--model_alias", served["model"]]
        return [*cmd, *address, *start["args"]], dict(os.environ)
    from .vllm_backend import vllm_python

    python = vllm_python(served.get("server_python"))
    cmd = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", weights]
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "HF_HUB_OFFLINE": "1",
    }
    return [*cmd, "--served-model-name", served["model"], *address, *start["args"]], env


def start_server(served: dict, log_path: Path):
    """Start the server ``served.start`` describes on a free port of 127.0.0.1; return the
    served settings with its ``url`` and a function that stops it (also registered to run at
    exit). A server that exits or does not answer ``/v1/models`` in ``startup_timeout_s`` is
    an error with the end of its log."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd, env = _server_command(served, port)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as out:
        launch = [sys.executable, "-c", DIE_WITH_PARENT, *cmd]
        # its own process group: stopping it stops the processes it starts (vLLM's engine core)
        proc = subprocess.Popen(launch, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def stop():
        stop_group(proc)

    atexit.register(stop)
    url = f"http://127.0.0.1:{port}/v1"
    where = f"the {served['start']['server']} server for '{served['model']}' ({' '.join(cmd[:6])} ...)"
    t0 = time.time()
    log.info("starting %s on %s", where, url)
    while True:
        try:
            urllib.request.urlopen(url + "/models", timeout=2).close()
            break
        except OSError:
            failed = "exited" if proc.poll() is not None else None
            if not failed and time.time() - t0 > served["start"]["startup_timeout_s"]:
                failed = (
                    f"did not answer in {served['start']['startup_timeout_s']} s (start.startup_timeout_s)"
                )
            if failed:
                stop()
                tail = log_path.read_text(errors="replace")[-2000:]
                raise ServedModelError(
                    f"{where} {failed}; the end of its log ({log_path}):\n{tail}"
                ) from None
            time.sleep(0.5)
    log.info("%s answered after %.1f s", where, time.time() - t0)
    return {**served, "url": url}, stop


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM to a server's process group (vLLM shuts its engine down on it), SIGKILL to what
    is left after ``timeout`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def running(served: dict):
    """``served`` with a reachable ``url``: as configured, or a server started for the block."""
    if not served.get("start"):
        yield served
        return
    with tempfile.TemporaryDirectory(prefix="deltaflow-server-") as tmp:
        live, stop = start_server(served, Path(tmp) / "server.log")
        try:
            yield live
        finally:
            stop()


def started_identity(served: dict) -> dict:
    """What a started server serves: the server, its version, its arguments and the weights."""
    from importlib.metadata import version

    from ..io import sha256_path

    start = served["start"]
    if start["server"] == "llama_cpp":
        program = {"llama_cpp_python": version("llama_cpp_python")}
    else:
        from .vllm_backend import vllm_python, worker_versions

        program = worker_versions(vllm_python(served.get("server_python")))
    return {"server": start["server"], "program": program, "args": start["args"],
            "weights": served["weights_path"], "weights_sha256": sha256_path(Path(served["weights_path"]))}  # fmt: skip


def _manifest(served: dict) -> dict:
    """The import job's manifest (results/models/outside/<name>/, beside the tokenizer)."""
    return json.loads((Path(served["tokenizer_dir"]) / "manifest.json").read_text())


def served_identity(served: dict) -> dict:
    """What decides a served model's outputs, for cache keys: what the server reported at
    import, the tokenizer the prompts are built with, the fields added to each request, and
    this client's code."""
    manifest = _manifest(served)
    return {
        "served": manifest["served"],
        **({"started": manifest["started"]} if "started" in manifest else {}),  # the weights it serves
        "tokenizer": manifest["files"],
        "extra_body": served["extra_body"],  # the request fields it adds decide the answers too
        "client": sha256_path(Path(__file__)),
    }


def key_settings(ref: dict, settings: dict) -> dict:
    """The settings part of a cache key for model ref ``ref``: the job's ``settings`` (batch
    size, device, backend), or for a served model only that it is served, since the server, not
    the job's batch size or device, decides its answers."""
    return {"backend": "served"} if ref.get("served") else settings


def ref_identity(ref: dict, base_manifest: Path) -> dict:
    """``raw_outputs.ref_identity`` for any model ref, served ones included."""
    if ref.get("served"):
        return served_identity(ref["served"])
    from .raw_outputs import ref_identity as loaded

    return loaded(ref, base_manifest)


def load_ref(ref: dict, base_dir: Path, *, request_cache: Path, **kwargs):
    """``raw_outputs.load_ref`` for any model ref; a served one caches its answers in
    ``request_cache`` (one SQLite file per consuming job: jobs side by side never share one)."""
    if ref.get("served"):
        return load_served(ref["served"], cache_db=request_cache)
    from .raw_outputs import load_ref as loaded

    return loaded(ref, base_dir, **kwargs)


def load_served(served: dict, *, cache_db: Path, max_length: int = 2048):
    """The served model as an lm-eval LM, after checking the server still reports what its
    import recorded (``check_identity``). Requests go through lm-eval's ``local-completions``
    client (see the module); answers are cached in ``cache_db`` by content as they arrive."""
    from lm_eval.api.model import CachingLM

    if served.get("start"):  # a server of this job, stopped when the job ends
        served, _ = start_server(served, Path(f"{cache_db}-server.log"))
    check_identity(served, _manifest(served)["served"])
    endpoint = served["url"].rstrip("/") + "/completions"
    where = f"served model '{served['model']}' at {endpoint}"
    client = _client(served, endpoint, where, max_length=max_length)
    # lm-eval's request cache: each answer saved (SQLite) as its request completes; the file is
    # named by the model's identity, so another model behind the same url never reads it
    ident = sha256_text(json.dumps(served_identity(served), sort_keys=True))[:16]
    cache_db = Path(cache_db)
    cache_db.parent.mkdir(parents=True, exist_ok=True)
    return _served_lm(
        client, CachingLM(client, str(cache_db.parent / f"{cache_db.name}-{ident}.db")), where, served
    )


def _client(served: dict, endpoint: str, where: str, *, max_length: int):
    """lm-eval's local-completions client with the key, the request fields and the checks."""
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    key = api_key(served)

    class Client(LocalCompletionsAPI):
        @property
        def api_key(self):
            return key

        @staticmethod
        def parse_generations(outputs, **kwargs):
            # lm-eval turns a choice without text (null) into "", which would read as an empty answer
            texts = LocalCompletionsAPI.parse_generations(outputs, **kwargs)
            if any(t is None for t in texts):
                raise ServedModelError(f"{where}: the server answered a choice without text: {outputs}")
            return texts

        def parse_logprobs(self, outputs, tokens=None, ctxlens=None, **kwargs):
            # lm-eval's own counts positions from the end (see the module); these are checked
            outputs = outputs if isinstance(outputs, list) else [outputs]
            choices = [c for out in outputs for c in sorted(out["choices"], key=lambda c: c["index"])]
            decode = self.tokenizer.decode
            return [
                aligned_logprobs(c, toks, n, decode, where)
                for c, toks, n in zip(choices, tokens, ctxlens, strict=True)
            ]

        def _create_payload(self, *args, **kwargs):
            # the server's own sampling defaults (llama.cpp's repeat_penalty 1.1 applies even at
            # temperature 0) set to what the benchmark means: served.extra_body, every request
            payload = {**super()._create_payload(*args, **kwargs), **served["extra_body"]}
            if payload["temperature"] > 0:  # lm-eval sets it on every payload
                # lm-eval sends one fixed seed with every request: k samples of a prompt would be
                # k copies of one. Sampled requests go unseeded (and lm-eval never caches them)
                payload.pop("seed", None)
            return payload

    return Client(
        base_url=endpoint,
        model=served["model"],
        tokenizer_backend="huggingface",
        tokenizer=str(served["tokenizer_dir"]),
        tokenized_requests=False,  # llama.cpp's server takes text prompts only
        num_concurrent=served["concurrency"],
        max_retries=served["retries"],
        timeout=served["timeout_s"],
        max_length=max_length,
    )


def _served_lm(client, cached, where: str, served: dict):
    """lm-eval's client behind its request cache as an LM (simple_evaluate takes an LM, which
    CachingLM is not), failures named."""
    from lm_eval.api.model import LM

    class ServedLM(LM):
        tokenizer = client.tokenizer

        def _failed(self, exc):
            # lm-eval re-raises the last error once its retries are spent
            if isinstance(exc, ServedModelError):
                return exc
            return ServedModelError(f"{where}: a request failed after {served['retries']} attempts: {exc!r}")

        def generate_until(self, requests, disable_tqdm: bool = False):
            try:
                return cached.generate_until(requests)
            except Exception as exc:
                raise self._failed(exc) from exc

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            if not served["logprobs"]:  # refused before any job (outside._check_served)
                raise ServedModelError(f"{where}: log-likelihoods need served.logprobs: true")
            try:
                return cached.loglikelihood(requests)
            except Exception as exc:
                raise self._failed(exc) from exc

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise ServedModelError(f"{where}: rolling log-likelihoods (perplexity) are not asked of servers")

        # the prompt text as for the same weights loaded here (llamacpp.make_lm, HFLM): the
        # tokenizer's own template, applied in this process and sent as text
        def apply_chat_template(self, chat_history, add_generation_prompt=True):
            return client.tokenizer.apply_chat_template(
                chat_history,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=not add_generation_prompt,
            )

        def chat_template(self, chat_template=False):
            return client.tokenizer.chat_template if chat_template else None

        @property
        def tokenizer_name(self) -> str:
            return client.tokenizer_name

        def tok_encode(self, string, **kwargs):
            return client.tok_encode(string)

    return ServedLM()
