#!/usr/bin/env bash
# Builds the extension HERE (no GPU needed) for the lent GPU machine: against that
# machine's torch (2.11.0, CUDA 13.0), for sm_90, into .prebuilt/ (git-ignored), so
# that scripts/gpu_check.sh can skip its build step (about 100 s of a 15-minute
# device budget). Run it in the session that has the GPU, before the first `run`,
# and carry `.prebuilt` (with `.whl`):
#   bash scripts/prebuild.sh                       # ~6 min on 2 cores
#   run: PRESET=quick DEADLINE=540 bash scripts/gpu_check.sh   carry: [".whl", ".prebuilt"]
# gpu_check.sh uses .prebuilt/_C.abi3.so only if .prebuilt/STAMP names the torch
# there and the hash of the extension's sources it was built from equals the tree's
# (scripts/ext_hash.sh), and the extension then loads with its CUDA kernels;
# otherwise it builds as before.
#   DEVICE_TORCH=2.11.0     the device's torch (docs: the device tool's KINDS.md)
#   PREBUILD_VENV=DIR       the virtual environment with that torch (made if missing)
#   NVIDIA_SITE=DIR         site-packages holding the `nvidia` CUDA packages (torch
#                           imports their libraries; setup.py their headers);
#                           default: the quick start's .venv, else /work/venv
set -euo pipefail
cd "$(dirname "$0")/.."
ver="${DEVICE_TORCH:-2.11.0}"
venv="${PREBUILD_VENV:-/tmp/venv-torch$ver}"
py_site() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
if [ -z "${NVIDIA_SITE:-}" ]; then
  for v in .venv /work/venv; do
    [ -x "$v/bin/python" ] && [ -d "$(py_site "$v")/nvidia" ] && { NVIDIA_SITE="$(py_site "$v")"; break; }
  done
fi
[ -d "${NVIDIA_SITE:-}/nvidia" ] || { echo "prebuild: no nvidia packages found; set NVIDIA_SITE"; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  # torch without its CUDA packages (several GB): the libraries and headers of the
  # quick start's environment stand in for them (same CUDA major version).
  "$venv/bin/pip" install -q --no-deps "torch==$ver"
  "$venv/bin/pip" install -q typing-extensions filelock sympy networkx jinja2 fsspec "setuptools<82" wheel ninja \
    numpy pybind11
fi
shim="$venv/nvidia-shim"
mkdir -p "$shim"
ln -sfn "$NVIDIA_SITE/nvidia" "$shim/nvidia"
echo "$shim" >"$(py_site "$venv")/nvidia-shim.pth"
got=$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')
[ "$got" = "$ver" ] || { echo "prebuild: $venv has torch $got, not $ver"; exit 1; }

tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
git ls-files -z -co --exclude-standard | xargs -0 cp --parents -t "$tree"  # what `run` sends
hash=$(bash scripts/ext_hash.sh)
(cd "$tree" && [ "$(bash scripts/ext_hash.sh)" = "$hash" ] \
  && TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS="${MAX_JOBS:-2}" RESIZEOPS_REQUIRE_CUDA_BUILD=1 \
     "$venv/bin/python" setup.py build_ext --inplace >build.log 2>&1) \
  || { tail -30 "$tree/build.log" 2>/dev/null; echo "prebuild: build failed"; exit 1; }
# The CPU half of the build must load and run under that torch here.
(cd "$tree" && "$venv/bin/python" -c '
import torch, resizeops
x, a = torch.rand(2, 3, 7, 9), torch.tensor([2.0, 1.6])
y = resizeops.dynopool2d(x, a, backend="cpu")
torch.testing.assert_close(y, resizeops.dynopool2d(x, a, backend="reference"))
') || { echo "prebuild: the built extension does not run under torch $ver"; exit 1; }
mkdir -p .prebuilt
cp "$tree/resizeops/_C.abi3.so" .prebuilt/_C.abi3.so
echo "torch=$ver src=$hash" >.prebuilt/STAMP
echo "prebuild: .prebuilt/_C.abi3.so ($(du -h .prebuilt/_C.abi3.so | cut -f1)), $(cat .prebuilt/STAMP)"
