#!/usr/bin/env bash
# Time `make demo` on a fresh clone: setup (venv + installs) and workflow separately,
# then the no-op dry run. Prints one line per phase and the workflow/total ratio.
#   bash bench/demo_timing.sh [--reuse-venv | --cold] [--setup-only]
# --reuse-venv copies this checkout's .venv into the clone (measures the workflow only).
# --cold: pip's cache off and an empty uv cache, so setup downloads every package as on a fresh
#   machine (torch still comes from this platform's local wheel folder, PIP_FIND_LINKS).
# --setup-only stops after `make setup`.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
reuse=0; setup_only=0
for arg in "$@"; do
  case $arg in
    --reuse-venv) reuse=1 ;;
    --cold) export PIP_NO_CACHE_DIR=1 UV_CACHE_DIR="$work/uv-cache" ;;
    --setup-only) setup_only=1 ;;
    *) echo "unknown option $arg"; exit 2 ;;
  esac
done
git clone -q "$src" "$work/p"
cd "$work/p"
if [ $reuse = 1 ]; then
  cp -a "$src/.venv" .venv
  # python -m pip: the copied bin/pip's shebang still names the original venv, whose
  # editable install it would repoint at this temporary clone
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1
fi
t0=$(date +%s.%N)
make setup >setup.log 2>&1
t1=$(date +%s.%N)
if [ $setup_only = 1 ]; then
  python3 -c "import sys; print(f'setup_s={float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$t1"
  grep -E "^llama.cpp prebuilt|^llama-cpp-python" setup.log || true
  echo "clone left in $work/p"; exit 0
fi
# python -m: a copied venv's bin/snakemake would run the original venv's python (its shebang)
.venv/bin/python -m snakemake --profile profiles/local >workflow.log 2>&1
t2=$(date +%s.%N)
.venv/bin/python -m snakemake --profile profiles/local -n >noop.log 2>&1
t3=$(date +%s.%N)
grep -q "Nothing to be done" noop.log || { echo "dry run after the demo still has work:"; tail noop.log; exit 1; }
python3 - "$t0" "$t1" "$t2" "$t3" <<'PY'
import sys
t0, t1, t2, t3 = map(float, sys.argv[1:])
print(f"setup_s={t1-t0:.1f} workflow_s={t2-t1:.1f} total_s={t2-t0:.1f} noop_dryrun_s={t3-t2:.2f} "
      f"workflow_share={(t2-t1)/(t2-t0):.2f}")
PY
cat results/tables/delta.md
echo "clone left in $work/p"
