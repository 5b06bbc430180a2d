#!/usr/bin/env bash
# One call on a GPU machine (e.g. the lent H100), sized for a ~9-minute slot:
# build the extension against the installed torch, run the GPU tests (CUDA- and
# Triton-marked, on the GPU), profile the three ops' kernels (with the A/Bs of the
# gathers' tile and loop forms and of DynOPool's one and four channels per thread),
# the GPU benchmark (the resize_blend and fused-cell cases of Shape Adaptor and ELASTIC
# and the DynOPool cases, both layouts; float32 and bfloat16),
# compute-sanitizer memcheck + racecheck over the CUDA kernels' own tests, the
# smaller benchmark cases, and print a short summary table last.
# Every step has its own time limit, so a slow step cannot eat the ones after it.
# Everything (logs, CSVs, PNGs) is packed into ${OUT:-results}/gpu_check.tgz.
#   bash scripts/gpu_check.sh
#   STEPS="build tests bench" bash scripts/gpu_check.sh   # a subset
#   PROFILE_OPS="blend cell" BENCH="blend-sa-imagenet-vgg:" BENCH2="" ...  # fewer cases
#   BENCH_BACKENDS=cuda,cuda-lanes,eager-reference ...  # the benchmark's --backends (quick: with cuda-lanes)
#   BENCH_S=400 ...  # seconds per benchmark run (default 150; still capped by DEADLINE)
#   PRESET=quick DEADLINE=540 bash scripts/gpu_check.sh  # ~8 min: build, tests, memcheck, DynOPool profile (cuda vs cuda-lanes, cuda-fused, cuda-rows, cuda-separable and cuda-fused-separable, triton vs triton-rows and 8 warps; ImageNet and CIFAR), racecheck of the fused backward and the separable forward, one benchmark
# Optional wheels (e.g. expecttest, which torch.library.opcheck needs) are
# installed from .whl/ when that folder exists. A carried .prebuilt/ (scripts/prebuild.sh:
# the extension built elsewhere for this torch and these sources) replaces the build
# step's compilation; PREBUILT=0 builds anyway.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-results}"
log="$out/gpu_check"
mkdir -p "$log"
export MPLBACKEND=Agg RESIZEOPS_REQUIRE_EXT=1 RESIZEOPS_REQUIRE_CUDA_BUILD=1 PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}"
# PRESET=quick: for a session with a few minutes of device time (the full run takes
# about 9): build, the GPU tests, the DynOPool kernel profile (its A/B of one and
# four channels per thread, of the fused backward (NCHW: winners by cells and separable;
# channels_last: blocks of 8 channels)
# and the NCHW row and separable forwards, Triton's flat and 2-D tile NCHW forward; then the CIFAR case, whose
# channels_last step was 5x its NCHW one), memcheck over the CUDA kernel tests,
# racecheck over the float32 tests of the fused backward and the separable forward
# (their shared memory), and the DynOPool ImageNet benchmark in
# channels_last, with the experimental kernel forms. Explicit variables still win.
if [ "${PRESET:-}" = quick ]; then
  : "${STEPS:=build tests sanitize profile racecheck bench}" "${SANITIZERS:=memcheck}" "${PROFILE_OPS:=dynopool dynopool-cifar}"
  : "${SANITIZE_FILES:=tests/test_dynopool2d.py tests/test_dynopool2d_kernel_forms.py}" "${SANITIZE_S:=120}"  # DynOPool's kernels only
  : "${PROFILE_PROVIDERS:=cuda cuda-lanes cuda-fused cuda-fused-lanes cuda-rows cuda-separable cuda-fused-separable triton triton-rows triton-w8 triton-rows-w8}"
  # (channels_last: the NCHW-only forms would time the default again; the profile and the
  # benchmark skip them there)
  : "${BENCH_BACKENDS:=cuda,cuda-lanes,cuda-fused,cuda-fused-lanes,cuda-separable,cuda-fused-separable,triton,triton-rows,eager-reference,compiled-reference}"
  export PROFILE_PROVIDERS
  # channels_last first (its defaults' backward never timed), then NCHW with what is left
  # (a benchmark stopped at its limit keeps the rows it measured).
  : "${BENCH:=dynopool-imagenet:--channels-last dynopool-imagenet:}" "${BENCH2:=}" "${BENCH_S:=200}"
fi
steps="${STEPS:-build tests bench profile sanitize}"
py=python3
t0=$SECONDS
deadline="${DEADLINE:-540}"  # seconds for the whole script; each step gets at most what is left
want() { [[ " $steps " == *" $1 "* ]]; }
# lim N: N seconds, or less if the deadline (minus 25 s for packing up) is closer.
lim() { local left=$((deadline - 25 - (SECONDS - t0))); [ "$left" -lt "$1" ] && echo $((left > 5 ? left : 5)) || echo "$1"; }
stamp() { echo "== $1 ($((SECONDS - t0)) s)"; }
# bench "cases:flag" ...: one GPU bench run per spec (flag: empty or --channels-last).
bench() {
  local spec cases flag name
  for spec in "$@"; do
    cases="${spec%%:*}"; flag="${spec#*:}"
    name="bench-${cases//,/+}${flag:+-cl}"
    stamp "$name"
    timeout $(lim "${BENCH_S:-150}") $py -m resizeops bench --device cuda --cases "$cases" --dtype float32,bfloat16 $flag \
      ${BENCH_BACKENDS:+--backends "$BENCH_BACKENDS"} \
      --out "$log/$name" >"$log/$name.txt" 2>&1 || echo "$name: exit code $?"
  done
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader || true
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

# A prebuilt extension (scripts/prebuild.sh, carried as .prebuilt) replaces the build
# when it was built for this torch from these sources and loads with its CUDA kernels.
prebuilt_ok() {
  [ -f .prebuilt/_C.abi3.so ] && [ -f .prebuilt/STAMP ] || return 1
  local want_stamp
  want_stamp="torch=$($py -c 'import torch; print(torch.__version__.split("+")[0])') src=$(bash scripts/ext_hash.sh)"
  [ "$(cat .prebuilt/STAMP)" = "$want_stamp" ] || { echo "prebuilt: stamp $(cat .prebuilt/STAMP) != $want_stamp"; return 1; }
  cp .prebuilt/_C.abi3.so resizeops/_C.abi3.so
  # setup.py installs triton_kernels/ as resizeops.triton_kernels; uninstalled, a link does.
  [ -e resizeops/triton_kernels ] || ln -s ../triton_kernels resizeops/triton_kernels
  PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" $py -c '
import torch, resizeops
x = torch.rand(2, 3, 7, 9, device="cuda")
y = resizeops.dynopool2d(x, torch.tensor([2.0, 1.6], device="cuda"), backend="cuda")
torch.testing.assert_close(y.cpu(), resizeops.dynopool2d(x.cpu(), torch.tensor([2.0, 1.6]), backend="reference"))
import resizeops.triton_kernels.dynopool
' >"$log/prebuilt.log" 2>&1 || { echo "prebuilt: does not run here"; tail -5 "$log/prebuilt.log"
                                     rm -f resizeops/_C.abi3.so resizeops/triton_kernels; return 1; }
}
if want build; then
  stamp build
  if [ "${PREBUILT:-1}" = 1 ] && prebuilt_ok; then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the tree's package, with the prebuilt extension
    echo "prebuilt extension: $(cat .prebuilt/STAMP)"
  else
    timeout $(lim 240) $py -m pip install --no-build-isolation --no-deps -e . >"$log/build.log" 2>&1 \
      || { tail -40 "$log/build.log"; echo "BUILD FAILED"; tar -czf "$out/gpu_check.tgz" -C "$out" gpu_check; exit 1; }
  fi
  $py -m resizeops info 2>&1 | tee "$log/info.txt" | head -12
fi

tests_rc=-1
if want tests; then
  stamp tests
  xdist=""
  $py -c "import xdist" 2>/dev/null && xdist="-n 8"
  $py -c "import pytest_timeout" 2>/dev/null && xdist="$xdist --timeout=100"  # one hung test fails alone
  # --experimental: the kernel forms no GPU has timed are deselected by default; a GPU run is where they are checked.
  timeout $(lim 170) $py -m pytest -q $xdist --durations=8 -m "cuda or triton" --experimental tests -p no:cacheprovider \
    --junitxml="$log/tests.xml" >"$log/tests.txt" 2>&1
  tests_rc=$?
  grep -E "passed|failed|error" "$log/tests.txt" | tail -3
  grep -E "^(FAILED|ERROR)" "$log/tests.txt" | head -20
fi

# compute-sanitizer right after the tests: correctness before timings.
if want sanitize && command -v compute-sanitizer >/dev/null; then
  stamp sanitize
  for tool in ${SANITIZERS:-memcheck racecheck}; do
    k="${SANITIZE_K:-TestCuda and (matches or empty or stream)}"
    [ "$tool" = racecheck ] && k="${RACECHECK_K:-$k}"
    timeout $(lim ${SANITIZE_S:-90}) compute-sanitizer --tool "$tool" --error-exitcode 9 $py -m pytest -q -x \
      --experimental -p no:cacheprovider ${SANITIZE_FILES:-tests/test_dynopool2d.py tests/test_dynopool2d_kernel_forms.py tests/test_resize_blend.py tests/test_shape_adaptor_maxpool.py} -k "$k" \
      >"$log/$tool.txt" 2>&1
    echo "$tool exit code: $? ($(grep -E "ERROR SUMMARY|passed|failed" "$log/$tool.txt" | tr '\n' ' '))"
  done
fi

# The profile first among the timings: its A/B of the gathers' two forms is short and decides the next step.
if want profile; then
  stamp profile
  timeout $(lim 120) $py scripts/profile_kernels.py ${PROFILE_OPS:-} >"$log/profile.txt" 2>&1; echo "profile exit code: $?"
  # The A/Bs (docs/PERF_NOTES.md: tiles vs loop, one vs four channels per thread):
  # each CUDA run's total and its forward, pass 1 and gather kernels.
  awk '/^--- /{show = ($0 ~ / cuda/)} show && /^---|all kernels|wall per step|forward_kernel|forward_rows|forward_separable|backward_pixels|backward_cells|backward_fused|blend_backward|sa_backward/' \
    "$log/profile.txt" | cut -c1-100
fi

# racecheck over the fused DynOPool backward and the separable forward (shared memory), float32: its own step,
# after the profile, so that a slow racecheck cannot eat the A/B (the sanitize step's
# racecheck, in the full run, covers it too).
if want racecheck && command -v compute-sanitizer >/dev/null; then
  stamp racecheck
  timeout $(lim 90) compute-sanitizer --tool racecheck --error-exitcode 9 $py -m pytest -q -x -p no:cacheprovider \
    --experimental tests/test_dynopool2d_kernel_forms.py -k "${RACECHECK_K:-(fused or separable) and float32 and not lanes}" >"$log/racecheck-fused.txt" 2>&1
  echo "racecheck (fused) exit code: $? ($(grep -E "RACECHECK SUMMARY|ERROR SUMMARY|passed|failed" "$log/racecheck-fused.txt" | tr '\n' ' '))"
fi

bench1="blend-sa-imagenet-vgg,sa-cell-imagenet-vgg,blend-elastic: blend-sa-imagenet-vgg,sa-cell-imagenet-vgg:--channels-last"
bench1+=" dynopool-imagenet: dynopool-imagenet:--channels-last"
want bench && bench ${BENCH-$bench1}


bench2="dynopool-cifar,dynopool-resnet: blend-sa-cifar-vgg,blend-sa-resnet50,sa-cell-cifar-vgg:"
want bench && bench ${BENCH2-$bench2}

stamp done
tar -czf "$out/gpu_check.tgz" -C "$out" gpu_check
# The summary: one line per case / dtype / layout / mode / provider.
$py - "$log" <<'EOF'
import csv, glob, sys
rows = []
for path in sorted(glob.glob(f"{sys.argv[1]}/bench-*/*.csv")):
    rows += list(csv.DictReader(open(path)))
if rows:
    print(f"device: {rows[0]['device_name']}, torch {rows[0]['torch']}, copy bandwidth {float(rows[0]['copy_gbps']):.0f} GB/s")
print(f"{'case':<22}{'dtype':<9}{'layout':<14}{'mode':<8}{'provider':<20}{'ms':>8}{'xeager':>8}{'%copy':>7}{'peakMiB':>9}{'extraMiB':>9}{'maxerr':>9}")
for r in rows:
    f = lambda k, fmt: (fmt % float(r[k])) if r.get(k) not in (None, "", "nan") else "-"
    print(f"{r['case']:<22}{r['dtype']:<9}{r['layout']:<14}{r['mode']:<8}{r['provider']:<20}"
          f"{f('ms_p50', '%.3f'):>8}{f('ratio_vs_eager', '%.2f'):>8}{f('frac_copy_bw', '%.2f'):>7}"
          f"{f('peak_mib', '%.0f'):>9}{f('extra_mib', '%.0f'):>9}{f('max_err', '%.1e'):>9}" + (f"  {r['error'][:40]}" if r.get("error") else ""))
EOF
# The DynOPool kernel targets from the same CSVs (scripts/targets.py).
$py scripts/targets.py "$log" 2>&1 | tail -12
echo "tests exit code: $tests_rc; total $((SECONDS - t0)) s"
