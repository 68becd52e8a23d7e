#!/usr/bin/env bash
# make setup's llama.cpp, prebuilt (the default: tools/setup_llamacpp.py over
# envs/llamacpp-prebuilt.txt) vs llama-cpp-python's source build (LLAMA_CPP=source), in one run.
# Each goes into a fresh venv with pip's cache off (every download and the compile are paid);
# the timed step is exactly the one `make setup` runs. Then the same GGUF through both:
#   - llama.cpp's quantizer, f16 -> q8_0 (the two files' sha256),
#   - full-vocabulary logits over 12 prompts, on the f16 file and on each side's q8_0,
#   - greedy generation, 48 tokens, on the same prompts;
#   - speed at one thread: a 100-token prompt, and single-token decode steps.
#   bash bench/llama_prebuilt.sh [F16.gguf]   (default: a demo run's results/gguf/*/model-f16.gguf)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
f16=${1:-$(ls "$src"/results/gguf/*/model-f16.gguf 2>/dev/null | head -1)}
[ -f "$f16" ] || { echo "no f16 GGUF: pass one (make demo writes results/gguf/<model>/model-f16.gguf)"; exit 2; }
work=$(mktemp -d)
for kind in prebuilt source; do
  python3 -m venv "$work/$kind"
  "$work/$kind/bin/pip" install -q --disable-pip-version-check numpy jinja2 diskcache typing-extensions 2>/dev/null
  flag=""; [ $kind = source ] && flag="--source"
  t0=$(date +%s.%N)
  (cd "$src" && PIP_NO_CACHE_DIR=1 "$work/$kind/bin/python" -m tools.setup_llamacpp \
     envs/gguf.txt envs/llamacpp-prebuilt.txt $flag) >"$work/$kind.log" 2>&1
  t1=$(date +%s.%N)
  python3 -c "import sys; print(f'{sys.argv[1]}_install_s={float(sys.argv[3]) - float(sys.argv[2]):.1f}')" \
    $kind "$t0" "$t1" | tee -a "$work/times"
  "$work/$kind/bin/python" - "$f16" "$work/$kind" 2>"$work/$kind.outputs.log" <<'PY'
import hashlib, json, sys, time
from pathlib import Path
import numpy as np
import llama_cpp

f16, out = Path(sys.argv[1]), Path(sys.argv[2])
q8 = out / "model-q8_0.gguf"
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
params.nthread = 2
assert llama_cpp.llama_model_quantize(str(f16).encode(), str(q8).encode(), params) == 0
prompts = [f"Question: What is {a} + {b}?\nAnswer:" for a, b in [(12, 30), (7, 8), (101, 99), (45, 46)]] + [
    "Question: Which gas do plants take in for photosynthesis?\nAnswer:",
    "Question: What is the boiling point of water at sea level?\nAnswer:",
    "The capital of France is", "Once upon a time, in a small village,",
    "def fibonacci(n):\n    ", "Translate to French: Good morning, how are you?\n",
    "List three primary colors:\n1.", "Q: If a train travels 60 miles in 1.5 hours, what is its speed?\nA:"]
res = {"q8_sha256": hashlib.sha256(q8.read_bytes()).hexdigest()}
for name, path in [("f16", f16), ("q8_0", q8)]:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=2, n_threads_batch=2,
                          logits_all=True, verbose=False, seed=0)
    logits, texts, t0 = [], [], time.time()
    for p in prompts:
        toks = llm.tokenize(p.encode())
        llm.reset()
        llm.eval(toks)
        logits.append(np.array(llm.scores[:len(toks)]))
        texts.append(llm.create_completion(p, max_tokens=48, temperature=0.0)["choices"][0]["text"])
    np.savez(out / f"{name}_logits.npz", *logits)
    res[name] = {"texts": texts, "seconds": round(time.time() - t0, 2)}
    # speed at one thread (an eval job's share in the local profile): a 100-token prompt, 5
    # times, then 40 single-token decode steps
    one = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=1, n_threads_batch=1,
                          logits_all=True, verbose=False, seed=0)
    toks = one.tokenize((" ".join(prompts) * 2).encode())[:150]
    t0 = time.time()
    for _ in range(5):
        one.reset()
        one.eval(toks[:100])
    res[name]["prompt100_ms"] = round((time.time() - t0) / 5 * 1000, 1)
    one.reset()
    one.eval(toks[:10])
    t0 = time.time()
    for tok in toks[10:50]:
        one.eval([tok])
    res[name]["decode_ms"] = round((time.time() - t0) / 40 * 1000, 2)
(out / "result.json").write_text(json.dumps(res))
print(f"  {Path(llama_cpp.__file__).parent}: quantized, {len(prompts)} prompts x {{f16, q8_0}}")
PY
done
"$work/prebuilt/bin/python" - "$work" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
w = Path(sys.argv[1])
t = dict(line.strip().split("=") for line in (w / "times").read_text().splitlines())
a, b = (json.loads((w / k / "result.json").read_text()) for k in ("prebuilt", "source"))
print(f"prebuilt_install_s={t['prebuilt_install_s']} source_install_s={t['source_install_s']} "
      f"ratio={float(t['source_install_s']) / float(t['prebuilt_install_s']):.1f}x")
print(f"quantized q8_0 identical: {a['q8_sha256'] == b['q8_sha256']}")
for name in ("f16", "q8_0"):
    la, lb = (np.load(w / k / f"{name}_logits.npz") for k in ("prebuilt", "source"))
    diffs = [float(np.abs(la[f] - lb[f]).max()) for f in la.files]
    argmax = sum(int((la[f].argmax(-1) == lb[f].argmax(-1)).all()) for f in la.files)
    same = sum(x == y for x, y in zip(a[name]["texts"], b[name]["texts"]))
    print(f"{name}: max |logit diff| {max(diffs):.3g}; argmax equal at every position in "
          f"{argmax}/{len(diffs)} prompts; greedy texts equal {same}/{len(diffs)}; "
          f"eval+generate {a[name]['seconds']} s prebuilt vs {b[name]['seconds']} s source")
    print(f"{name} at 1 thread: 100-token prompt {a[name]['prompt100_ms']} ms prebuilt vs "
          f"{b[name]['prompt100_ms']} ms source ({a[name]['prompt100_ms'] / b[name]['prompt100_ms']:.2f}x); "
          f"decode {a[name]['decode_ms']} vs {b[name]['decode_ms']} ms/token")
PY
echo "venvs and logs left in $work"
