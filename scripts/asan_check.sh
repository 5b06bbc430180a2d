#!/usr/bin/env bash
# AddressSanitizer over the C++ CPU kernels and the serial emulations of the CUDA
# kernels (csrc/cpu/*_emulation.cpp: the per-element code every GPU thread runs, its
# tables, vector loads of the lanes form, scatter and gather). compute-sanitizer's
# memcheck needs a GPU; this runs on any Linux machine with gcc's libasan.
#
# Builds a CPU-only copy of the extension with ASAN=1 (setup.py) in a temporary
# tree (the checkout and its build are untouched), then runs the kernel tests
# against it with libasan preloaded (and libstdc++ before it: Triton's module
# throws C++ exceptions at import). An ASan report aborts the run and is printed.
#   bash scripts/asan_check.sh            # the kernel test files
#   bash scripts/asan_check.sh -k lanes   # extra pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
libasan=$(gcc -print-file-name=libasan.so)
libstdcxx=$(gcc -print-file-name=libstdc++.so.6)
[ -f "$libasan" ] || { echo "asan_check: no libasan.so (gcc -print-file-name=libasan.so)"; exit 1; }
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
# The tracked and the untracked, not ignored, files: the working tree as it is.
git ls-files -z -co --exclude-standard | xargs -0 cp --parents -t "$tree"
cd "$tree"
echo "asan_check: building a CPU-only ASAN=1 copy of the extension in $tree"
if ! ASAN=1 USE_CUDA=0 MAX_JOBS="${MAX_JOBS:-2}" "$py" setup.py build_ext --inplace >asan_build.log 2>&1; then
  tail -30 asan_build.log
  echo "asan_check: build failed"
  exit 1
fi
ls resizeops/_C*.so >/dev/null 2>&1 || { tail -30 asan_build.log; echo "asan_check: no extension was built"; exit 1; }
set +e
LD_PRELOAD="$libasan $libstdcxx" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$tree/asan" \
  RESIZEOPS_REQUIRE_EXT=1 "$py" -m pytest -q -p no:cacheprovider \
  tests/test_dynopool2d.py tests/test_dynopool2d_kernel_forms.py tests/test_resize_blend.py \
  tests/test_shape_adaptor_maxpool.py "$@"
rc=$?
set -e
if ls "$tree"/asan.* >/dev/null 2>&1; then
  cat "$tree"/asan.*
  echo "asan_check: AddressSanitizer reported an error"
  exit 1
fi
exit $rc
