"""Served models, for real: llama-cpp-python's OpenAI-compatible server (`python -m
llama_cpp.server`) over a GGUF of the tiny model, reached through lm-eval's local-completions
client (deltaflow.bench.served). Greedy responses equal the same GGUF run in this process; the
request cache answers a rerun; a wrong model name, a server answering 500 for a while and a
server killed mid-run behave as the issue asks. A small forwarding proxy (a real HTTP server)
counts requests and injects the 500s."""

import http.client
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import bench_spec, run_snakemake, save_smol_tiny, tiny_config, write_config

from deltaflow.bench.items import prepare_docs
from deltaflow.bench.raw_outputs import generate_outputs, load_model
from deltaflow.bench.served import (
    STABLE,
    ServedModelError,
    _client,
    aligned_logprobs,
    check_identity,
    identity,
    load_served,
    served_identity,
)
from deltaflow.bench.served import start_server as start_job_server
from deltaflow.gguf_export import convert
from deltaflow.io import read_json, write_jsonl
from deltaflow.outside import import_outside_model
from deltaflow.provenance import write_manifest

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(gguf: Path, port: int, alias: str = "tiny") -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias,
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512", "--n_threads", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return proc
        except OSError:
            time.sleep(0.25)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not start")


class Proxy:
    """Forwards to the server; ``fail`` next POSTs answer 500; ``after`` (n, fn) runs fn once
    n POSTs have been forwarded."""

    def __init__(self, upstream: int):
        self.upstream, self.posts, self.fail, self.failed, self.after = upstream, 0, 0, 0, None
        self.strip_logprobs = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _forward(self, method):
                body = (
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    if method == "POST"
                    else None
                )
                if method == "POST" and proxy.fail:
                    proxy.fail -= 1
                    proxy.failed += 1
                    return self._answer(500, b'{"error": "injected"}')
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=60)
                    conn.request(method, self.path, body=body, headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    status, data = resp.status, resp.read()
                except OSError:
                    return self._answer(502, b'{"error": "upstream down"}')
                if method == "POST" and proxy.strip_logprobs:
                    answer = json.loads(data)
                    for choice in answer["choices"]:
                        choice["logprobs"] = None
                    data = json.dumps(answer).encode()
                if method == "POST":
                    proxy.posts += 1
                    if proxy.after and proxy.posts == proxy.after[0]:
                        proxy.after[1]()
                self._answer(status, data)

            def _answer(self, status, data):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._forward("GET")

            def do_POST(self):
                self._forward("POST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    save_smol_tiny(root / "base")
    convert(root / "base", root / "tiny.gguf", "f32")
    port = _free_port()
    server = start_server(root / "tiny.gguf", port)
    yield {"root": root, "base": root / "base", "gguf": root / "tiny.gguf", "port": port, "server": server}
    server.kill()


def _served(tiny, url, name, **kw):
    """A served model imported as the workflow's import job does (results/models/outside/<name>/)."""
    served = {"url": url, "model": "tiny", "api_key_env": None, "tokenizer": None, "concurrency": 2,
              "timeout_s": 30, "retries": 3, "extra_body": {"repeat_penalty": 1.0}, "logprobs": False,
              **kw}  # fmt: skip
    out = tiny["root"] / "outside" / name
    extra = import_outside_model({"kind": "served", "served": served}, out, tiny["base"])
    write_manifest(out / "manifest.json", "outside_model", params={}, inputs={}, extra=extra)
    return {**served, "tokenizer_dir": str(out)}


def _docs(tmp_path, n=6, max_gen_toks=6):
    spec = bench_spec("gsm8k", n=n, seed=1234, decoding={"max_gen_toks": max_gen_toks})
    docs = tmp_path / "docs.jsonl"
    write_jsonl(docs, prepare_docs(spec))
    return spec, docs


def _responses(lm, spec, docs, work):
    return [r["responses"] for r in generate_outputs(lm, spec, docs, work, chunk_size=64)]


def test_served_greedy_responses_equal_the_same_gguf_in_process_and_a_rerun_asks_nothing(tiny, tmp_path):
    proxy = Proxy(tiny["port"])
    served = _served(tiny, proxy.url, "srv")
    spec, docs = _docs(tmp_path)
    got = _responses(load_served(served, cache_db=tmp_path / "req"), spec, docs, tmp_path / "a")
    ref = _responses(load_model(tiny["base"], merged_dir=tiny["base"], gguf=tiny["gguf"], threads=1), spec, docs,
                     tmp_path / "b")  # fmt: skip
    assert got == ref and any(r[0] for r in got)
    asked = proxy.posts
    assert asked == len(got)
    # a new eval of the same items (no saved chunks): every answer from the request cache
    again = _responses(load_served(served, cache_db=tmp_path / "req"), spec, docs, tmp_path / "c")
    assert again == got and proxy.posts == asked


def test_a_served_models_cache_key_ignores_the_eval_jobs_batch_size_and_device(tiny, tmp_path):
    """The server decides a served model's answers: another eval.batch_size or eval.device of
    the job that asks it keeps its cached outputs (an in-process model's key changes)."""
    from deltaflow.bench.eval_job import JobSettings, plan_arm

    served = _served(tiny, f"http://127.0.0.1:{tiny['port']}/v1", "keyed")
    spec, docs = _docs(tmp_path)
    write_jsonl(tmp_path / "fewshot.jsonl", [])
    load = {"adapter_dir": None, "merged_dir": None, "gguf": None}
    arm = {"model": "keyed", "base": str(tiny["base"] / "manifest.json"), "specs": [spec.to_dict()],
           "docs": [str(docs)], "fewshot": [str(tmp_path / "fewshot.jsonl")], "inputs": {}}  # fmt: skip

    def keys(load, **settings):
        job = JobSettings(**{"batch_size": 16, "device": "cpu", "chunk_size": 32, "backend": "hf",
                             "vllm_python": None, "vllm_options": {}, "cache_dir": tmp_path / "cache",
                             "code": [], "started": "", **settings})  # fmt: skip
        return plan_arm({**arm, "load": load}, job).keys

    assert keys({**load, "served": served}) == keys({**load, "served": served}, batch_size=4, device="cuda")
    in_process = {**load, "merged_dir": str(tiny["base"])}
    assert keys(in_process) != keys(in_process, batch_size=4)


def test_llama_cpp_servers_misplaced_prompt_logprobs_are_refused_at_import(tiny):
    """served.logprobs: true is checked by the import job. llama-cpp-python's server echoes each
    prompt token's log-prob from the distribution after it (its issue #1983): the import
    refuses it instead of scoring every multiple-choice item wrongly. (A correct server,
    vLLM's, is tested in test_served_vllm.py.)"""
    with pytest.raises(ServedModelError, match="not from the distribution before it"):
        _served(tiny, f"http://127.0.0.1:{tiny['port']}/v1", "mcq", logprobs=True)


def test_echoed_tokens_are_read_by_their_text():
    """lm-eval's parser counts positions from the end of the echo; ours finds the context and
    the continuation by the tokens' text (a BOS in front allowed) and refuses a mismatch."""
    choice = {"logprobs": {"tokens": ["A", "B", "C"], "token_logprobs": [None, -1.0, -2.0],
                           "top_logprobs": [None, {"B": -1.0}, {"X": -0.5, "C": -2.0}]}}  # fmt: skip
    decode = lambda ids: "".join("ABC"[i] for i in ids)
    assert aligned_logprobs(choice, [0, 1, 2], 1, decode, "here") == (-3.0, False)
    assert aligned_logprobs(choice, [1, 2], 1, decode, "here") == (-2.0, False)  # "A" as the server's BOS
    with pytest.raises(ServedModelError, match="echoed tokens do not match"):
        aligned_logprobs(choice, [0, 2], 1, decode, "here")


def test_a_server_without_prompt_logprobs_is_refused_at_import(tiny):
    """A server that ignores echo (the proxy strips logprobs) fails the import's probe."""
    proxy = Proxy(tiny["port"])
    proxy.strip_logprobs = True
    with pytest.raises(ServedModelError, match="gave no prompt log-probs"):
        _served(tiny, proxy.url, "nolp", logprobs=True)


def test_a_started_server_that_exits_or_hangs_is_an_error_with_its_log(tiny, tmp_path):
    """served.start: the job's server exits (a bad argument) or never answers: the error names
    the server and quotes the end of its log; nothing is left running."""
    served = {"model": "x", "weights_path": str(tiny["gguf"]),
              "start": {"server": "llama_cpp", "args": ["--no_such_flag"], "startup_timeout_s": 60}}  # fmt: skip
    with pytest.raises(ServedModelError, match=r"(?s)the llama_cpp server for 'x' .* exited.*no_such_flag"):
        start_job_server(served, tmp_path / "bad.log")
    served["start"] = {"server": "llama_cpp", "args": [], "startup_timeout_s": 1}
    with pytest.raises(ServedModelError, match=r"did not answer in 1 s \(start.startup_timeout_s\)"):
        start_job_server(served, tmp_path / "slow.log")  # its imports alone take longer


def test_a_served_judge_reward_equals_the_same_judge_loaded_in_the_training_process(tiny, tmp_path):
    """A GRPO/RLOO judge reward whose judge is served (generate mode): the same rewards, verdict
    texts and parse-failure counts as the same GGUF loaded in the training process; a second
    reward over the same judgments asks the server nothing."""
    from deltaflow.bench.served import ref_identity
    from deltaflow.training.judge_reward import JudgeReward

    proxy = Proxy(tiny["port"])
    served = _served(tiny, proxy.url, "judge")
    judge = {"kind": "rubric", "mode": "generate", "max_gen_toks": 8, "model": "judge"}
    load = {"device": "cpu", "batch_size": 4, "threads": 1, "base_dir": str(tiny["base"])}
    texts, questions, refs = ["4", "It is 4.", "five", "4"], ["What is 2 + 2?"] * 4, ["4"] * 4

    def reward(ref, cache):
        r = JudgeReward("j", judge, ref, ref_identity(ref, None), cache_dir=tmp_path / cache, load=load)
        return r, r.score(texts, questions, refs)

    srv, got = reward({"model": "judge", "served": served}, "served")
    here, want = reward({"model": "gguf", "gguf": str(tiny["gguf"]), "merged_dir": str(tiny["base"])}, "here")
    assert got == want and srv.counts == here.counts and srv.counts["judge_calls"] == 3
    verdicts = [sorted(str(e["responses"]) for e in r.cache.entries.values()) for r in (srv, here)]
    assert verdicts[0] == verdicts[1] and len(verdicts[0]) == 3
    asked = proxy.posts
    again, _ = reward({"model": "judge", "served": served}, "served")
    assert again.counts["cache_hits"] == 4 and proxy.posts == asked


def test_a_wrong_model_name_and_a_changed_server_are_refused(tiny):
    url = f"http://127.0.0.1:{tiny['port']}/v1"
    with pytest.raises(ServedModelError, match=r"serves \['tiny'\], not 'other'"):
        identity({"url": url, "model": "other"})
    recorded = identity({"url": url, "model": "tiny"})
    # only what stays with the model (no start time; vLLM's per-request permission ids neither)
    assert recorded["reported"]["id"] == "tiny" and set(recorded["reported"]) <= set(STABLE)
    with pytest.raises(ServedModelError, match="now reports"):
        check_identity(
            {"url": url, "model": "tiny"}, {**recorded, "reported": {"id": "tiny", "owned_by": "else"}}
        )
    with pytest.raises(ServedModelError, match="did not answer"):
        identity({"url": f"http://127.0.0.1:{_free_port()}/v1", "model": "tiny"})


def test_request_fields_and_seeds(tiny):
    """extra_body goes into every request and into the identity (cache keys); greedy requests
    keep lm-eval's seed, sampled ones go unseeded (k samples are k draws)."""
    served = _served(tiny, f"http://127.0.0.1:{tiny['port']}/v1", "fields")
    client = _client(served, "http://x/v1/completions", "here", max_length=512)
    greedy = client._create_payload("hi", generate=True, gen_kwargs={"until": [], "max_gen_toks": 4})
    sampled = client._create_payload("hi", generate=True, gen_kwargs={"until": [], "temperature": 0.7})
    assert greedy["repeat_penalty"] == 1.0 and "seed" in greedy and "seed" not in sampled
    assert served_identity(served) != served_identity({**served, "extra_body": {}})


def test_answers_of_500_are_retried_with_backoff(tiny, tmp_path):
    proxy = Proxy(tiny["port"])
    served = _served(tiny, proxy.url, "flaky", concurrency=1)
    spec, docs = _docs(tmp_path, n=3)
    proxy.fail = 2
    got = _responses(load_served(served, cache_db=tmp_path / "req"), spec, docs, tmp_path / "a")
    assert proxy.failed == 2 and proxy.posts == 3 and len(got) == 3


def test_a_server_killed_mid_run_fails_clearly_and_a_rerun_resumes_from_the_cache(tiny, tmp_path):
    port = _free_port()
    server = start_server(tiny["gguf"], port)
    proxy = Proxy(port)
    served = _served(tiny, proxy.url, "killed", concurrency=1, retries=2)
    spec, docs = _docs(tmp_path, n=5)
    proxy.after = (2, server.kill)  # the server dies after answering two requests
    try:
        with pytest.raises(
            ServedModelError, match=rf"at {proxy.url}/completions: a request failed after 2 attempts"
        ):
            _responses(load_served(served, cache_db=tmp_path / "req"), spec, docs, tmp_path / "a")
        server = start_server(tiny["gguf"], port)
        proxy.after, before = None, proxy.posts
        got = _responses(load_served(served, cache_db=tmp_path / "req"), spec, docs, tmp_path / "a")
        assert len(got) == 5 and proxy.posts - before == 3  # the two answered before the kill were cached
    finally:
        server.kill()


def test_served_arm_judge_and_teacher_in_a_workflow(tiny, tmp_path):
    """A served model as an evaluated arm (a generation benchmark), as the pairwise judge of a
    judged benchmark and as the teacher of a generation, in one workflow run. The base is the
    same tiny model the server runs, so the served arm's responses are the base's."""
    cfg = tiny_config()
    cfg["base_model"] = {"name": "tiny-smol-tok", "source": {"type": "local", "path": str(tiny["base"])}}
    served = {
        "url": f"http://127.0.0.1:{tiny['port']}/v1",
        "model": "tiny",
        "extra_body": {"repeat_penalty": 1.0},
    }
    cfg["models"] = {
        "srv": {"kind": "served", "served": served},
        # the same GGUF as an outside model, and a server over it that each of its jobs starts
        "tiny_q": {"kind": "gguf", "source": {"type": "local", "path": str(tiny["root"]), "file": "tiny.gguf"}},
        "started": {"kind": "served", "served": {
            "model": "started", "extra_body": {"repeat_penalty": 1.0},
            "start": {"server": "llama_cpp", "weights": "tiny_q", "args": ["--n_threads", "1", "--n_ctx", "512"]}}},
    }  # fmt: skip
    cfg["runs"] = {"run_a": cfg["runs"]["run_a"]}
    for key in ("labels_from", "benchmark_profile"):  # arithmetic is not a benchmark here
        cfg["mixtures"]["mix_a"]["components"][0].pop(key)
    for key in ("merges", "sweeps", "export", "gates", "tables"):
        cfg.pop(key, None)
    cfg["benchmarks"] = {
        "gsm8k": {"n": 3, "max_gen_toks": 6},
        "chat": {"task": "writingbench_en", "n": 2, "max_gen_toks": 6,
                 "judge": {"model": "srv", "kind": "pairwise", "baseline": "base", "mode": "generate",
                           "max_gen_toks": 4, "max_unparsed_share": 1.0}},
    }  # fmt: skip
    cfg["generations"] = {
        "taught": {"model": "srv", "prompts": {"dataset": "alpaca", "n": 2},
                   "sampling": {"max_tokens": 6, "chat_template": False}, "guards": cfg["eval"]["guards"]},
    }  # fmt: skip
    run_snakemake(
        tmp_path, write_config(tmp_path, cfg),
        "results/evals/srv/summary.json", "results/evals/base/summary.json", "results/judged/srv/summary.json",
        "results/data/taught/rows.jsonl", "results/evals/started/summary.json",
    )  # fmt: skip
    res = tmp_path / "results"
    manifest = read_json(res / "models/outside/srv/manifest.json")
    assert manifest["served"]["reported"]["id"] == "tiny"
    srv = [json.loads(line)["responses"] for line in (res / "evals/srv/gsm8k.jsonl").read_text().splitlines()]
    base = [
        json.loads(line)["responses"] for line in (res / "evals/base/gsm8k.jsonl").read_text().splitlines()
    ]
    assert len(srv) == 3 and srv == base  # the tiny model's f32 GGUF greedy = HF fp32 greedy
    started = [
        json.loads(line)["responses"] for line in (res / "evals/started/gsm8k.jsonl").read_text().splitlines()
    ]
    assert started == base
    imported = read_json(res / "models/outside/started/manifest.json")
    assert imported["started"]["server"] == "llama_cpp" and imported["started"]["weights_sha256"]
    assert imported["served"]["reported"]["id"] == "started"
    # each job stopped the server it started
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "--model_alias started" not in ps
    judged = read_json(res / "judged/srv/chat.json")
    assert judged["n"] == 2 and (res / "judged/srv/chat.jsonl").read_text().count("\n") == 2
    assert (res / "data/taught/rows.jsonl").read_text().count("\n") == 2
