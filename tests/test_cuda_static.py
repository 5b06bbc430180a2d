"""Static checks of the compiled CUDA kernels, without a GPU.

The extension's CUDA kernels (in CI built with setup.py's default, sm_80 SASS
and compute_80 PTX) are inspected with cuobjdump (bundled with Triton's NVIDIA
backend, or on PATH): the library holds SASS and PTX for exactly the targets its
build_info() records, every kernel is there and none uses local memory. The hot
kernels of the 32-bit index path keep everything in registers (no stack frame)
in the code an H100 runs: the library's sm_90 SASS, or else its PTX compiled for
sm_90 by the toolkit's ptxas, as the driver's JIT does on an H100. The
per-element code holds small fixed arrays (the DynOPool gather's 3x3 tiles, the
4 queries of a cell, the blend gathers' 4x4 tiles) that must be fully unrolled
(RESIZEOPS_UNROLL, resizeops/math.h): a loop the compiler does not unroll
indexes them at run time and moves them to a stack frame in local memory, which
these checks catch. A run-time cost that only a GPU could otherwise show.

`python tests/test_cuda_static.py` prints every kernel's registers and stack.
"""

import functools
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
from conftest import cuobjdump, resource_usage

from resizeops.core import _extension


def _library():
    """The loaded extension's status and the cuobjdump to read it with (skips, or fails, without them)."""
    status = _extension.load()
    if not (status.loaded and status.has_cuda_kernels):
        if os.environ.get("RESIZEOPS_REQUIRE_CUDA_BUILD") == "1":
            pytest.fail("a CUDA build of the extension is required here (RESIZEOPS_REQUIRE_CUDA_BUILD=1)")
        pytest.skip("the extension was built without CUDA kernels")
    tool = cuobjdump()
    if tool is None:
        pytest.skip("no cuobjdump (neither Triton's bundled one nor on PATH)")
    return status, tool


def _demangled(usage):
    names = list(usage)
    demangled = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout
    return dict(zip(demangled.splitlines(), usage.values()))


def _kernels():
    """{demangled kernel name: {"REG": n, "STACK": n, ...}} of the library's cubins, and their architectures."""
    status, tool = _library()
    usage, arch = resource_usage(tool, status.path)
    return _demangled(usage), arch


def _ptxas():
    """The CUDA toolkit's ptxas (of the nvcc that built the extension's PTX), or None."""
    dirs = [os.path.join(p, "bin") for p in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")) if p]
    nvcc = shutil.which("nvcc")
    if nvcc:  # nvcc may be a wrapper script: the toolkit is where nvcc says it is
        out = subprocess.run([nvcc, "--dryrun", "-E", "-x", "cu", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True)  # fmt: skip
        m = re.search(r"^#\$ _HERE_=(.+)$", out.stdout + out.stderr, re.MULTILINE)
        if m:
            dirs.append(m.group(1).strip())
    dirs.append("/usr/local/cuda/bin")
    for d in dirs:
        if os.access(os.path.join(d, "ptxas"), os.X_OK):
            return os.path.join(d, "ptxas")
    return None


@functools.lru_cache(maxsize=None)
def _h100_kernels_cached(path):
    status, tool = _library()
    usage, arch = resource_usage(tool, path)
    if set(arch) == {"sm_90"}:
        return _demangled(usage), "the library's sm_90 SASS"
    targets = status.cuda_arch or ()
    ptx = [t for t in targets if re.fullmatch(r"compute_\d+", t) and int(t[len("compute_") :]) <= 90]
    if not ptx:
        pytest.skip(f"no sm_90 SASS alone and no PTX an H100 runs in {status.cuda_arch}")
    ptxas = _ptxas()
    if ptxas is None:
        pytest.skip("no ptxas of the CUDA toolkit to compile the PTX for sm_90")
    usage = {}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([tool, "--extract-ptx", "all", path], cwd=tmp, capture_output=True, check=True)
        for f in sorted(glob.glob(os.path.join(tmp, "*.ptx"))):
            cubin = f[: -len(".ptx")] + ".sm_90.cubin"
            subprocess.run([ptxas, "-arch=sm_90", "-O3", f, "-o", cubin], capture_output=True, text=True, check=True)
            usage.update(resource_usage(tool, cubin)[0])
    return _demangled(usage), f"the library's {ptx[0]} PTX compiled for sm_90 by {ptxas}"


def _h100_kernels():
    """The kernels an H100 runs, as _kernels(), and where they came from."""
    status, _ = _library()
    return _h100_kernels_cached(status.path)


# The hot kernels that must have no stack frame, as (kernel, template-argument
# prefix): every dtype's 32-bit index instantiation.
NO_STACK = [
    ("forward_kernel", ""),  # DynOPool forward, one lane and the lanes form
    ("forward_rows_kernel", ""),  # DynOPool forward, the row form (4 cells of a row per thread)
    ("forward_separable_kernel", ""),  # DynOPool forward, the separable form (shared vertical interpolations)
    ("backward_cells_kernel", ""),  # DynOPool backward pass 1, both forms
    ("backward_pixels_kernel", "1, false, true"),  # DynOPool gather, one lane, 3x3 tiles
    ("backward_pixels_kernel", "4"),  # DynOPool gather, 4 lanes (the loop form)
    ("backward_fused_kernel", ""),  # DynOPool fused backward (winners + gather, shared memory)
    ("blend_forward_kernel", "false"),  # resize_blend forward
    ("blend_backward_kernel", "true, true"),  # resize_blend backward, 4x4 tiles, weight gradients
    ("blend_backward_kernel", "false, true"),
    ("sa_backward_kernel", "true, true"),  # shape_adaptor_maxpool's backward, tiles
    ("sa_backward_kernel", "false, true"),
]


def _hot(kernels, name, first_arg):
    pat = re.compile(r"^void resizeops::\(anonymous namespace\)::" + name + r"<(.*)>\(")
    found = []
    for k, u in kernels.items():
        m = pat.match(k)
        # 32-bit: an Indexer32, or (kernels without an indexer) index_t = int last.
        if m and m.group(1).startswith(first_arg) and ("Indexer32" in m.group(1) or m.group(1).endswith(", int")):
            # The dtypes a model trains in. float64 runs for gradcheck and the oracle
            # tests: twice the registers per value, and a spill there costs no one time
            # (the fused backward's 2-lane float64 phase A keeps 16 bytes on the stack).
            if not re.search(r"\bdouble\b", m.group(1)):
                found.append((k, u))
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="the CUDA build is Linux-only")
def test_cuda_kernels_are_built_for_the_recorded_architectures_and_use_no_local_memory():
    kernels, arch = _kernels()
    recorded = _extension.load().cuda_arch
    assert recorded, "the build recorded no GPU targets (build_info cuda_arch)"
    assert sorted(set(arch)) == sorted(t for t in recorded if t.startswith("sm_")), (arch, recorded)
    # and PTX for exactly the recorded compute_XY targets (cuobjdump names them sm_XY)
    listed = subprocess.run([cuobjdump(), "--list-ptx", _extension.load().path], capture_output=True, text=True).stdout
    ptx = sorted(set(re.findall(r"\.(sm_\d+[af]?)\.ptx", listed)))
    assert ptx == sorted("sm_" + t[len("compute_") :] for t in recorded if t.startswith("compute_")), (ptx, recorded)
    assert len(kernels) > 50, f"only {len(kernels)} CUDA kernels in the extension"
    for k, u in kernels.items():
        assert u.get("LOCAL", 0) == 0, f"{k}: {u['LOCAL']} bytes of local memory"


@pytest.mark.skipif(sys.platform != "linux", reason="the CUDA build is Linux-only")
@pytest.mark.parametrize("name,first_arg", NO_STACK)
def test_hot_kernels_keep_their_arrays_in_registers(name, first_arg):
    kernels, source = _h100_kernels()
    found = _hot(kernels, name, first_arg)
    assert len(found) >= 3, f"{name}<{first_arg}...>: {len(found)} 32-bit 16/32-bit-float instantiations in {source}"
    stacked = [(k[:140], u["STACK"]) for k, u in found if u.get("STACK", 0) > 0]
    assert not stacked, f"stack frames (arrays indexed at run time, or spills) in {source}: {stacked}"


if __name__ == "__main__":
    ks, arches = _kernels()
    print("arch:", sorted(set(arches)))
    if "--h100" in sys.argv:
        ks, where = _h100_kernels()
        print("the code an H100 runs:", where)
    for k, u in sorted(ks.items()):
        short = k.replace("resizeops::(anonymous namespace)::", "").replace("resizeops::", "")
        print(f"regs {u.get('REG', 0):>3}  stack {u.get('STACK', 0):>4}  local {u.get('LOCAL', 0)}  {short[:120]}")
