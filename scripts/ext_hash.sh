#!/usr/bin/env bash
# One hash of everything the compiled extension is built from (csrc/, setup.py and
# the GPU architecture choice it loads, resizeops/core/_cuda_arch.py), by content and path:
# scripts/prebuild.sh records it, scripts/gpu_check.sh compares.
cd "$(dirname "$0")/.."
find csrc setup.py resizeops/core/_cuda_arch.py -type f \( -name '*.cu' -o -name '*.cuh' -o -name '*.h' -o -name '*.cpp' -o -name '*.py' \) -print0 \
  | LC_ALL=C sort -z | xargs -0 sha1sum | sha1sum | cut -c1-16
