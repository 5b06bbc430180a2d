#!/usr/bin/env bash
# One call on a GPU machine (e.g. the lent H100): build the extension against the
# installed torch, run the whole test suite (CUDA-marked tests included), the
# Triton tests, optionally compute-sanitizer, then the GPU benchmark, whose table
# is printed last. Results (CSV, PNG, logs) go to ${OUT:-results}.
#   bash scripts/gpu_check.sh              # build + tests + bench
#   SANITIZE=1 bash scripts/gpu_check.sh   # + compute-sanitizer memcheck over the CUDA tests
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-results}"
mkdir -p "$out"
export MPLBACKEND=Agg RESIZEOPS_REQUIRE_EXT=1 RESIZEOPS_REQUIRE_CUDA_BUILD=1
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

t0=$SECONDS
pip install --no-build-isolation --no-deps -e . >"$out/build.log" 2>&1 \
  || { tail -50 "$out/build.log"; echo "BUILD FAILED"; exit 1; }
echo "build: $((SECONDS - t0)) s"
python -m resizeops info | tee "$out/info.txt"

python -m pytest -q -x tests 2>&1 | tail -15 | tee "$out/tests.txt"
tests_rc=${PIPESTATUS[0]}
python -m pytest -q -m triton tests 2>&1 | tail -3 | tee "$out/triton.txt"

if [ "${SANITIZE:-0}" = 1 ] && command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool memcheck --error-exitcode 1 python -m pytest -q -m cuda tests 2>&1 | tail -5 | tee "$out/memcheck.txt"
fi

python -m resizeops bench --device cuda --out "$out" 2>&1 | tee "$out/bench.txt" | tail -60
echo "tests exit code: $tests_rc; total $((SECONDS - t0)) s"
exit "$tests_rc"
