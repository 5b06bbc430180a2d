"""The Triton kernels compiled for the H100 (sm_90) without a GPU.

The Triton interpreter (TRITON_INTERPRET=1, the TestTriton sections of tests/test_<op>.py) runs the
kernels' Python on the CPU; it does not type-check them or lower them, so an
error that only the compiler sees (a dtype mismatch, an unsupported construct,
a shape error in a reduction) would first show on a GPU, which this project
rarely has. Here every launch of the Triton backend's adapters is intercepted:
instead of running, the kernel is compiled by triton.compile for
GPUTarget("cuda", 90, 32) with the launch's own argument types, constexprs and
num_warps, down to a cubin (Triton bundles ptxas). The calls cover the kernels'
variants: dtypes, layouts, needed gradients, 32- and 64-bit indexing,
pass-through branches, scales, shape_adaptor_maxpool's gathers; and the kernel forms of
the Triton variants of the backend registry (resizeops/core/kernel_forms.py;
the experimental ones with ``pytest --experimental``).

The same cubins give each kernel's registers and local memory
(`cuobjdump --dump-resource-usage`, bundled with Triton): no kernel may spill.
`python tests/test_triton_aot.py` prints that table.
"""

import dataclasses
import os
import sys
import tempfile

import pytest
import torch
from conftest import cuobjdump, resource_usage

triton = pytest.importorskip("triton")

if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    pytest.skip("compiles the kernels: run without TRITON_INTERPRET", allow_module_level=True)

try:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
except ImportError:  # pragma: no cover - an older Triton
    pytest.skip("this Triton has no ASTSource / GPUTarget", allow_module_level=True)

from resizeops.core import _triton_backend as tb  # noqa: E402
from resizeops.core.kernel_forms import DEFAULT, VARIANTS, KernelForms  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
_TYPES = {
    torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64",
    torch.int32: "i32", torch.int64: "i64", torch.uint8: "u8", torch.bool: "i1",
}  # fmt: skip


def _arg_type(v):
    if isinstance(v, torch.Tensor):
        return "*" + _TYPES[v.dtype]
    if isinstance(v, bool):
        return "i1"
    if isinstance(v, int):
        return "i32" if -(2**31) <= v < 2**31 else "i64"
    if isinstance(v, float):
        return "fp32"
    raise TypeError(f"no Triton type for {type(v).__name__}")


class _Compiler:
    """Stands in for ``kernel[grid](...)``: compiles instead of launching (cached per variant)."""

    def __init__(self):
        self.compiled = {}  # (kernel, signature, constexprs, options) -> CompiledKernel

    def launcher(self, fn, grid):
        def launch(*args, **kwargs):
            options = {k: kwargs.pop(k) for k in ("num_warps", "num_stages", "enable_fp_fusion") if k in kwargs}
            bound = dict(zip([p.name for p in fn.params], args))
            bound.update(kwargs)
            signature, constexprs = {}, {}
            for p in fn.params:
                v = bound[p.name]
                if p.is_constexpr:
                    signature[p.name] = "constexpr"
                    constexprs[p.name] = v
                else:
                    signature[p.name] = _arg_type(v)
            key = (fn.__name__, tuple(signature.items()), tuple((k, str(v)) for k, v in constexprs.items()),
                   tuple(options.items()))  # fmt: skip
            if key not in self.compiled:
                src = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
                self.compiled[key] = triton.compile(src, target=TARGET, options=options)

        return launch


@pytest.fixture
def compiler(monkeypatch):
    c = _Compiler()
    monkeypatch.setattr(triton.runtime.jit.JITFunction, "__getitem__", lambda fn, grid: c.launcher(fn, grid))
    return c


def _cl(t, cl):
    return t.contiguous(memory_format=torch.channels_last) if cl else t


# The variants compiled: float32 and bfloat16 (float16 lowers like bfloat16) in both
# layouts, float64 (used by the GPU gradcheck) in one; the 64-bit index variants in
# float32 NCHW. About 110 kernels, 1-3 s each on 2 cores.
FULL = [(torch.float32, False), (torch.float32, True), (torch.bfloat16, False), (torch.bfloat16, True),
        (torch.float64, False)]  # fmt: skip
INDEX64 = [(torch.float32, False)]
# The 64-bit index path on the small tensors of these calls (the test hook force_int64).
FORCE_INT64 = KernelForms(force_int64=True)
# The backend registry's Triton variants, marked as the registry marks them.
TRITON_VARIANTS = [
    pytest.param(name, marks=[pytest.mark.experimental] if v.experimental else [], id=name)
    for name, v in VARIANTS.items()
    if v.backend == "triton"
]


def _dynopool_calls(variants, forms=DEFAULT):
    for dtype, cl in variants:
        x = _cl(torch.randn(2, 3, 13, 17).to(dtype), cl)
        alpha = torch.tensor([1.9, 1.7])
        out = tb.dynopool2d_forward(x, alpha, (7, 10), forms=forms)
        for need in ((True, True), (True, False), (False, True)):
            g = _cl(torch.randn(2, 3, 7, 10).to(dtype), cl)
            tb.dynopool2d_backward(g, x, alpha, (7, 10), *need, forms=forms)
        assert out.shape == (2, 3, 7, 10)


def _dynopool_forward_calls(variants, forms, nchw_only):
    """The forward in ``forms`` (the Triton variants' forms change the forward only): both
    tile widths of the 2-D tile form; channels_last too unless ``nchw_only``."""
    for dtype, cl in variants:
        if cl and nchw_only:
            continue
        x = _cl(torch.randn(2, 3, 13, 17).to(dtype), cl)
        alpha = torch.tensor([1.9, 1.7])
        tb.dynopool2d_forward(x, alpha, (7, 10), forms=forms)
        tb.dynopool2d_forward(x, alpha, (7, 20), forms=forms)


def _blend_calls(variants, forms=DEFAULT):
    cases = [
        ((2, 3, 7, 9), (2, 3, 16, 15), (11, 12), True, None),  # up and down
        ((2, 3, 11, 12), (2, 3, 16, 15), (11, 12), True, None),  # x1 passes through
        ((2, 3, 8, 8), (2, 3, 16, 16), (16, 16), False, ((2.0, 2.0), None)),  # ELASTIC: a scale, x2 passes
    ]
    for dtype, cl in variants:
        for s1, s2, size, ac, scales in cases:
            x1, x2 = _cl(torch.randn(s1).to(dtype), cl), _cl(torch.randn(s2).to(dtype), cl)
            w1, w2 = torch.tensor(0.7), torch.tensor(1.3)
            if dtype == torch.float64:
                w1, w2 = w1.double(), w2.double()
            tb.resize_blend_forward(x1, x2, w1, w2, size, ac, scales, forms=forms)
            g = _cl(torch.randn(s1[0], s1[1], *size).to(dtype), cl)
            for mask in ((True, True, True, True), (True, False, False, True), (False, False, True, False)):
                tb.resize_blend_backward(g, x1, x2, w1, w2, size, ac, scales, mask, forms=forms)


def _shape_adaptor_calls(variants, forms=DEFAULT):
    for dtype, cl in variants:
        x = _cl(torch.randn(2, 3, 16, 14).to(dtype), cl)
        wdt = torch.float64 if dtype == torch.float64 else torch.float32
        w1, w2 = torch.tensor(0.7, dtype=wdt), torch.tensor(1.3, dtype=wdt)
        for size in ((12, 11), (8, 7), (16, 14)):  # between, the pooled size, x's size
            tb.shape_adaptor_maxpool_forward(x, w1, w2, size, True, forms=forms)
            g = _cl(torch.randn(2, 3, *size).to(dtype), cl)
            for mask in ((True, True, True), (True, False, False), (False, True, True)):
                tb.shape_adaptor_maxpool_backward(g, x, w1, w2, size, True, mask, forms=forms)


CALLS = {"dynopool2d": _dynopool_calls, "resize_blend": _blend_calls, "shape_adaptor_maxpool": _shape_adaptor_calls}


def _resource_usage(kernels):
    """[(name, constexprs, registers, local bytes, stack bytes)] from cuobjdump on the cubins."""
    tool = cuobjdump()
    if tool is None:
        return None
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for i, (key, k) in enumerate(kernels.items()):
            path = os.path.join(d, f"k{i}.cubin")
            with open(path, "wb") as f:
                f.write(k.asm["cubin"])
            (u,) = resource_usage(tool, path)[0].values()  # one kernel per cubin
            consts = dict(key[2])
            consts.update({k: v for k, v in key[3] if k == "num_warps"})
            rows.append((key[0], consts, u["REG"], u.get("LOCAL", 0), u.get("STACK", 0)))
    return rows


def _check_compiled(compiler):
    """Every intercepted launch compiled to a cubin, and no kernel spills."""
    assert compiler.compiled, "no Triton launch was intercepted"
    for key, k in compiler.compiled.items():
        assert k.asm.get("cubin"), f"{key[0]}: no cubin"
    usage = _resource_usage(compiler.compiled)
    if usage is None:
        pytest.skip("this Triton has no bundled cuobjdump: compiled, resource usage not checked")
    spilled = [(name, c, local) for name, c, _, local, _ in usage if local > 0]
    assert not spilled, f"kernels with local memory (spills): {spilled}"


@pytest.mark.parametrize("op", list(CALLS))
def test_kernels_compile_for_sm90_without_spills(op, compiler):
    CALLS[op](FULL)
    # The 64-bit index variants (taken for tensors of 2^31 elements or more).
    CALLS[op](INDEX64, FORCE_INT64)
    _check_compiled(compiler)


@pytest.mark.parametrize("variant", TRITON_VARIANTS)
def test_variant_kernels_compile_for_sm90_without_spills(variant, compiler):
    """The kernels of a Triton variant's forms (kernel_forms.VARIANTS), 32- and 64-bit indexing."""
    v = VARIANTS[variant]
    assert v.ops == ("dynopool2d",), f"{variant}: compile its ops' calls here"
    _dynopool_forward_calls(FULL, v.forms, v.nchw_only)
    _dynopool_forward_calls(INDEX64, dataclasses.replace(v.forms, force_int64=True), v.nchw_only)
    _check_compiled(compiler)


def test_interpolation_tables_are_not_fma_contracted(compiler):
    # The blend tables' source index rounds ratio·j before subtracting i0, as ATen's
    # CPU kernel does (enable_fp_fusion=False; math.h mul_rn for the CUDA kernels):
    # fused, λ1 = 2/3·3 − 2 came out 6e-8 on the GPU, not 0, and an infinite last
    # pixel gave inf where the reference gives 0·inf = NaN. The PTX shows fusion.
    _blend_calls([(torch.float32, False), (torch.float64, False)])
    ptx = {key: k.asm["ptx"] for key, k in compiler.compiled.items() if key[0] == "_axis_tables_kernel"}
    assert {dict(key[2])["ACC"] for key in ptx} == {"fp32", "fp64"}, sorted(ptx)
    for key, text in ptx.items():
        assert "mul.rn" in text or "mul.f" in text, f"{key}: no multiply in the PTX"
        assert "fma." not in text, f"{key}: a fused multiply-add in the tables kernel"


if __name__ == "__main__":  # the table: kernel, variant, registers, local and stack bytes
    c = _Compiler()
    triton.runtime.jit.JITFunction.__getitem__ = lambda fn, grid: c.launcher(fn, grid)
    for fn in CALLS.values():
        fn(FULL)
    for v in VARIANTS.values():
        if v.backend == "triton":
            _dynopool_forward_calls(FULL, v.forms, v.nchw_only)
    for name, consts, regs, local, stack in sorted(_resource_usage(c.compiled) or [], key=lambda r: (r[0], str(r[1]))):
        flags = ",".join(f"{k}={v}" for k, v in consts.items() if k not in ("BLOCK",))
        print(f"{name:<34} regs {regs:>3}  local {local:>4}  stack {stack:>4}  {flags}")
    sys.exit(0)
