"""Static checks of the compiled CUDA kernels, without a GPU.

The extension's CUDA kernels (in CI built with setup.py's default, sm_80 SASS
and compute_80 PTX) are inspected with cuobjdump (bundled with Triton's NVIDIA
backend, or on PATH): the library holds SASS for exactly the architectures its
build_info() records, every kernel is there, none uses local memory, and the hot kernels of the 32-bit
index path keep everything in registers (no stack frame). The per-element code
holds small fixed arrays (the DynOPool gather's 3x3 tiles, the 4 queries of a
cell, the blend gathers' 4x4 tiles) that must be fully unrolled (RESIZEOPS_UNROLL, resizeops/math.h): a loop
the compiler does not unroll indexes them at run time and moves them to a stack
frame in local memory, which these checks catch. A run-time cost that only a
GPU could otherwise show.

`python tests/test_cuda_static.py` prints every kernel's registers and stack.
"""

import os
import re
import subprocess
import sys

import pytest
from conftest import cuobjdump, resource_usage

from resizeops import _extension


def _kernels():
    """{demangled kernel name: {"REG": n, "STACK": n, "LOCAL": n, ...}} of the cubins, and their architectures."""
    status = _extension.load()
    if not (status.loaded and status.has_cuda_kernels):
        if os.environ.get("RESIZEOPS_REQUIRE_CUDA_BUILD") == "1":
            pytest.fail("a CUDA build of the extension is required here (RESIZEOPS_REQUIRE_CUDA_BUILD=1)")
        pytest.skip("the extension was built without CUDA kernels")
    tool = cuobjdump()
    if tool is None:
        pytest.skip("no cuobjdump (neither Triton's bundled one nor on PATH)")
    usage, arch = resource_usage(tool, status.path)
    names = list(usage)
    demangled = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout
    return dict(zip(demangled.splitlines(), usage.values())), arch


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
    ("sa_backward_kernel", "true, true"),  # the fused cell's backward, tiles
    ("sa_backward_kernel", "false, true"),
]


def _hot(kernels, name, first_arg):
    pat = re.compile(r"^void resizeops::\(anonymous namespace\)::" + name + r"<(.*)>\(")
    found = []
    for k, u in kernels.items():
        m = pat.match(k)
        # 32-bit: an Indexer32, or (kernels without an indexer) index_t = int last.
        if m and m.group(1).startswith(first_arg) and ("Indexer32" in m.group(1) or m.group(1).endswith(", int")):
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
    kernels, _ = _kernels()
    found = _hot(kernels, name, first_arg)
    assert len(found) >= 4, f"{name}<{first_arg}...>: {len(found)} 32-bit instantiations found"
    stacked = [(k[:140], u["STACK"]) for k, u in found if u.get("STACK", 0) > 0]
    assert not stacked, f"stack frames (arrays indexed at run time, or spills): {stacked}"


if __name__ == "__main__":
    ks, arches = _kernels()
    print("arch:", sorted(set(arches)))
    for k, u in sorted(ks.items()):
        short = k.replace("resizeops::(anonymous namespace)::", "").replace("resizeops::", "")
        print(f"regs {u.get('REG', 0):>3}  stack {u.get('STACK', 0):>4}  local {u.get('LOCAL', 0)}  {short[:120]}")
