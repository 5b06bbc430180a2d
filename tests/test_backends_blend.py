"""Every kernel backend of resize_blend against the reference backend (docs/SEMANTICS.md, resize_blend).

Parametrised over the backends; each is skipped where it cannot run or has no
resize_blend kernel yet, and marked so that `-m triton` / `-m cuda` select them.
Forward and all four gradients (x1, x2, w1, w2) are compared.
"""

import os
import random

import pytest
import test_resize_blend
import torch
from conftest import assert_close, require_backend, use_cuda_emulation
from conftest import device_for_backend as _device_for

import resizeops
from resizeops.core import _dispatch
from resizeops.core.kernel_forms import KernelForms

BACKENDS = [
    pytest.param("cpu", id="cpu"),
    # The CUDA kernels' per-element code run serially on the CPU
    # (conftest.use_cuda_emulation): the GPU indexing and arithmetic without a GPU.
    pytest.param("cuda_emulated", id="cuda_emulated"),
    pytest.param("triton", id="triton", marks=pytest.mark.triton),
    pytest.param("cuda", id="cuda", marks=pytest.mark.cuda),
]


def _interpreted(backend):
    """Triton under TRITON_INTERPRET=1 on CPU tensors: a few thousand times slower, so
    the heaviest checks use smaller shapes there (tests/test_triton_blend.py has more)."""
    return backend == "triton" and _device_for(backend).type == "cpu"


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    if request.param == "cuda_emulated":
        return use_cuda_emulation(monkeypatch, "resize_blend")
    return require_backend(request.param, "resize_blend")


def _cases():
    """(shape1, shape2, size, align_corners, scales): up/down, odd/prime, pass-through, 1x1, crops."""
    # The reference tests' fixed cases (up/down, pass-through, 1x1, H or W = 1,
    # ELASTIC crops, a scale under align_corners=True), then more.
    fixed = list(test_resize_blend.CASES[:9]) + [
        ((1, 37, 11, 13), (1, 37, 22, 26), (16, 19), True, None),  # C over two channel blocks
    ]
    rng = random.Random(123)
    for _ in range(4):
        n, c = rng.randint(1, 3), rng.randint(1, 20)
        s1 = (n, c, rng.randint(1, 15), rng.randint(1, 15))
        s2 = (n, c, rng.randint(1, 15), rng.randint(1, 15))
        fixed.append((s1, s2, (rng.randint(1, 19), rng.randint(1, 19)), rng.random() < 0.5, None))
    return fixed


CASES = _cases()

# grad_w is a sum over every output: compared relative to its magnitude.
W_TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def _run(backend, x1, x2, w1, w2, size, ac, scales, g=None):
    leaves = [t.detach().requires_grad_(True) for t in (x1, x2, w1, w2)]
    out = resizeops.resize_blend(*leaves, size, ac, scales, backend=backend)
    if g is None:
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(5)).to(out)
    return (out,) + torch.autograd.grad(out, leaves, g)


def _on_cpu(*tensors):
    return [t.detach().cpu() for t in tensors]


def _compare(backend, x1, x2, w1, w2, size, ac, scales, dt=None):
    dt = dt or x1.dtype
    got = _run(backend, x1, x2, w1, w2, size, ac, scales)
    want = _run("reference", x1, x2, w1, w2, size, ac, scales)
    for name, a, b in zip(("forward", "grad_x1", "grad_x2"), got[:3], want[:3]):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert a.stride() == b.stride(), f"{name}: strides {a.stride()} vs {b.stride()}"
        assert_close(a, b, dt, msg=name)
    for name, a, b in zip(("grad_w1", "grad_w2"), got[3:], want[3:]):
        tol = W_TOL[dt] * (1.0 + float(b.abs()))
        assert a.dtype == b.dtype and a.shape == b.shape == ()
        assert_close(a, b, msg=name, atol=tol, rtol=W_TOL[dt])


@pytest.mark.parametrize("s1,s2,size,ac,scales", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_reference(backend, s1, s2, size, ac, scales, dtype):
    dev = _device_for(backend)
    x1, x2 = torch.randn(s1, dtype=dtype, device=dev), torch.randn(s2, dtype=dtype, device=dev)
    w1, w2 = torch.tensor(0.7, dtype=dtype, device=dev), torch.tensor(-1.3, dtype=dtype, device=dev)
    _compare(backend, x1, x2, w1, w2, size, ac, scales)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("s1,s2,size,ac,scales", CASES[:8])
def test_half_types(backend, s1, s2, size, ac, scales, dtype):
    # Both sides compute in float32 from the same half inputs and round once (conftest.TOL);
    # the weights stay float32, as under mixed precision.
    dev = _device_for(backend)
    x1, x2 = torch.randn(s1).to(dtype).to(dev), torch.randn(s2).to(dtype).to(dev)
    w1, w2 = torch.tensor(0.6, device=dev), torch.tensor(1.4, device=dev)
    _compare(backend, x1, x2, w1, w2, size, ac, scales, dt=dtype)


@pytest.mark.parametrize("layout", ["x1_channels_last", "x2_channels_last", "both_channels_last", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_layouts(backend, layout, dtype):
    dev = _device_for(backend)
    c = 6 if _interpreted(backend) else 20  # 20: two channel blocks of the CPU kernel
    a = torch.randn(2, c, 9, 11).to(dtype).to(dev)
    b = torch.randn(2, c, 17, 23).to(dtype).to(dev)
    cl = torch.channels_last
    if layout == "x1_channels_last":
        a = a.contiguous(memory_format=cl)
    elif layout == "x2_channels_last":
        b = b.contiguous(memory_format=cl)
    elif layout == "both_channels_last":
        a, b = a.contiguous(memory_format=cl), b.contiguous(memory_format=cl)
    else:
        a, b = a[:, ::2, 1:, :], b.contiguous(memory_format=cl)[:, 1::2, :, 2:]
    w1, w2 = torch.tensor(0.25, device=dev), torch.tensor(0.75, device=dev)
    _compare(backend, a, b, w1, w2, (13, 14), True, None, dt=dtype)


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (4, 1)])
def test_degenerate_outputs_have_the_canonical_strides(backend, size):
    """An output with H = W = 1 (or one side 1) of channels_last inputs is channels_last
    with the strides torch.empty(..., memory_format=torch.channels_last) gives, on every
    backend and the reference (which returned (3, 1, 1, 1) for (2, 3, 1, 1): contiguous in
    both formats, so .contiguous() kept NCHW strides); _compare checks the gradients'."""
    dev = _device_for(backend)
    cl = torch.channels_last
    a = torch.randn(2, 3, 5, 7, device=dev).contiguous(memory_format=cl)
    b = torch.randn(2, 3, 1, 1, device=dev).contiguous(memory_format=cl)
    w1, w2 = torch.tensor(0.5, device=dev), torch.tensor(1.5, device=dev)
    want = torch.empty(2, 3, *size, memory_format=cl).stride()
    for x1, x2 in [(a, b), (b, a), (a, a)]:
        for name in (backend, "reference"):
            out = resizeops.resize_blend(x1, x2, w1, w2, size, True, backend=name)
            assert out.stride() == want, (name, out.stride(), want)
        _compare(backend, x1, x2, w1, w2, size, True, None)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_full_channel_blocks(backend, dtype, channels_last):
    # C = 16 and 35: whole blocks of the CPU kernel's 16 channels (its unrolled
    # vector path) and a remainder; strong down-sampling, where the backward's
    # input rows complete several at a time, up-sampling and a pass-through.
    dev = _device_for(backend)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for c in (3,) if _interpreted(backend) else (16, 35):
        for s1, s2, size, ac in [
            ((1, c, 40, 9), (1, c, 5, 3), (2, 3), False),
            ((2, c, 6, 7), (2, c, 11, 13), (11, 13), True),
            ((1, c, 9, 4), (1, c, 31, 2), (17, 5), True),
        ]:
            x1 = torch.randn(s1, dtype=dtype, device=dev).contiguous(memory_format=fmt)
            x2 = torch.randn(s2, dtype=dtype, device=dev).contiguous(memory_format=fmt)
            w1, w2 = torch.tensor(0.7, dtype=dtype, device=dev), torch.tensor(-1.3, dtype=dtype, device=dev)
            _compare(backend, x1, x2, w1, w2, size, ac, None)


def test_shape_adaptor_and_elastic_weights(backend):
    dev = _device_for(backend)
    sigma = torch.sigmoid(torch.tensor(-0.3466, dtype=torch.float64))
    x = torch.randn(2, 5, 16, 16, dtype=torch.float64, device=dev)
    low = torch.nn.functional.max_pool2d(x, 2)
    w1, w2 = (2 * (1 - sigma)).to(dev), (2 * sigma).to(dev)  # residual cell, k = 2
    _compare(backend, low, x, w1, w2, (11, 11), True, None)
    one = torch.tensor(1.0, dtype=torch.float64, device=dev)
    _compare(backend, low, x, one, one, (16, 16), False, ((2, 2), None))  # ELASTIC merge


@pytest.mark.parametrize("mask", [(True, False, False, False), (False, True, False, True), (False, False, True, False)])
def test_only_the_needed_gradients(backend, mask):
    dev = _device_for(backend)
    x1, x2 = torch.randn(2, 3, 5, 7, device=dev), torch.randn(2, 3, 9, 13, device=dev)
    w1, w2 = torch.tensor(0.4, device=dev), torch.tensor(0.9, device=dev)

    def grads(b):
        leaves = [t.detach().requires_grad_(m) for t, m in zip((x1, x2, w1, w2), mask)]
        out = resizeops.resize_blend(*leaves, (7, 10), True, backend=b)
        return torch.autograd.grad(out.sum(), [t for t in leaves if t.requires_grad])

    for a, b in zip(grads(backend), grads("reference")):
        assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_nan_propagates_like_the_reference(backend):
    dev = _device_for(backend)
    x1, x2 = torch.randn(1, 2, 6, 6, device=dev), torch.randn(1, 2, 9, 9, device=dev)
    x1[0, 0, 2, 3] = float("nan")
    x2[0, 1, 4, 4] = float("inf")
    w = torch.tensor(0.5, device=dev)
    got = resizeops.resize_blend(x1, x2, w, w, (9, 9), True, backend=backend)
    want = resizeops.resize_blend(x1, x2, w, w, (9, 9), True, backend="reference")
    assert torch.equal(torch.isnan(got), torch.isnan(want)) and torch.isnan(got).any()
    assert_close(got, want)


@pytest.mark.parametrize("s1,s2,size,ac", [((1, 2, 7, 9), (1, 2, 16, 15), (11, 12), True),
                                         ((1, 2, 7, 9), (1, 2, 16, 15), (11, 12), False),
                                         ((1, 3, 4, 4), (1, 3, 8, 8), (6, 6), True),
                                         ((1, 2, 5, 5), (1, 2, 9, 9), (9, 9), False)])
def test_infinite_values_like_the_reference(backend, s1, s2, size, ac, request):
    """±inf in the inputs (last row and column, inside) and in grad_out, against F.interpolate.

    The forward's inf / NaN pattern is the reference's, element by element. The backward
    is non-finite exactly where the reference's is; where both taps of an output are the
    last pixel and one weight is 0, F.interpolate's scatter adds g·λ0 + g·0 (NaN for an
    infinite g) while a gather (CUDA and Triton backends) sums the weights first and
    gives ±inf: NaN versus inf is the one documented difference (docs/DESIGN.md); the
    C++ CPU kernel, which sweeps like the scatter, matches NaN for NaN.

    The reference runs on the CPU: its arithmetic is the rule on every device (no
    FMA contraction in the source index, docs/DESIGN.md)."""
    dev = _device_for(backend)
    dtype = torch.float32 if backend == "cuda" else torch.float64
    gen = torch.Generator().manual_seed(3)
    x1, x2 = torch.randn(s1, generator=gen, dtype=dtype), torch.randn(s2, generator=gen, dtype=dtype)
    x1[:, 0, -1, :] = float("inf")
    x2[:, -1, :, -1] = float("-inf")
    x1[0, -1, 1, 2] = float("inf")
    w1, w2 = torch.tensor(0.7, dtype=dtype, device=dev), torch.tensor(1.3, dtype=dtype, device=dev)
    got = resizeops.resize_blend(x1.to(dev), x2.to(dev), w1, w2, size, ac, backend=backend)
    got = got.cpu()
    want = resizeops.resize_blend(*_on_cpu(x1, x2, w1, w2), size, ac, backend="reference")
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.isposinf(), want.isposinf())
    assert_close(got[want.isfinite()], want[want.isfinite()])
    a, b = torch.randn(s1, generator=gen, dtype=dtype).to(dev), torch.randn(s2, generator=gen, dtype=dtype).to(dev)
    g = torch.randn(1, s1[1], *size, generator=gen, dtype=dtype)
    g[..., -1, :] = float("inf")
    g[..., :, -1] = float("-inf")
    g[..., 0, 0] = float("-inf")
    g = g.to(dev)
    got = _on_cpu(*_run(backend, a, b, w1, w2, size, ac, None, g=g)[1:3])
    want = _run("reference", *_on_cpu(a, b, w1, w2), size, ac, None, g=g.cpu())[1:3]
    exact_nan = request.node.callspec.params["backend"] == "cpu"  # the C++ CPU kernel, not the CUDA emulation
    for name, p, q in zip(("grad_x1", "grad_x2"), got, want):
        assert torch.equal(p.isfinite(), q.isfinite()), name
        assert torch.equal(p.isposinf() & ~q.isnan(), q.isposinf()), name
        assert torch.equal(p.isneginf() & ~q.isnan(), q.isneginf()), name
        if exact_nan:
            assert torch.equal(p.isnan(), q.isnan()), name
        assert_close(p[q.isfinite()], q[q.isfinite()], msg=name)


def _weight_gradient_cases():
    """(name, x1, x2, size, align_corners, scales, grad_out): inf and NaN where dL/dw_k =
    Σ g·R_k(x_k) and the transposed sum <R_kᵀ(g), x_k> differ."""
    gen = torch.Generator().manual_seed(23)

    def rnd(*shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    inf, nan = float("inf"), float("nan")
    x1 = rnd(1, 2, 4, 5)
    x1[0, 0, 1, 2] = inf  # read with positive weights; R(x1) holds 0·inf = NaN next to it
    yield "inf_inside", x1, rnd(1, 2, 6, 7), (6, 7), True, None, None
    for value in (inf, -inf, nan):  # 5 -> 3 under align_corners=True: pixel 1 is read with weight 0 only
        x1 = rnd(1, 2, 5, 5)
        x1[0, 1, 1, 1] = value
        yield f"read_with_weight_0_{value}", x1, rnd(1, 2, 3, 3), (3, 3), True, None, None
    x1 = rnd(1, 2, 5, 7)
    x1[0, 0, 4, 6] = inf  # x2 up-sampled and cropped to 4x4: no kept output reads row 4
    x2 = rnd(1, 2, 4, 4)
    x2[0, 1, 3, 3] = nan  # a pass-through input: every pixel read
    yield "unread_and_pass_through", x1, x2, (4, 4), False, ((2, 2), None), None
    x1 = rnd(1, 2, 6, 6)
    x1[0, 0, 2, 2], x1[0, 0, 2, 3] = inf, -inf  # one output reads both: inf - inf
    yield "plus_and_minus_inf", x1, rnd(1, 2, 8, 8), (8, 8), False, None, None
    g = rnd(1, 2, 7, 9)
    g[0, 0, 3, 4] = inf
    g[0, 1, 0, 0] = 0.0
    yield "infinite_grad_out", rnd(1, 2, 5, 6), rnd(1, 2, 7, 9), (7, 9), True, None, g
    x1 = rnd(1, 2, 3, 3)
    x1[0, 0, 1, 1] = inf
    g = rnd(1, 2, 5, 5)
    g[..., 1:4, 1:4] = 0.0  # the outputs that read the inf pixel have g = 0: 0·inf
    yield "zero_grad_at_inf", x1, rnd(1, 2, 5, 5), (5, 5), False, None, g


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", list(_weight_gradient_cases()), ids=lambda c: c[0])
def test_weight_gradients_with_non_finite_values_like_the_reference(backend, case, dtype):
    """dL/dw_k is the reference's Σ g·R_k(x_k), inf and NaN included: the C++ CPU kernel
    and the CUDA kernels take it as <R_kᵀ(g), x_k> (one read of x_k), which gave +inf
    where the reference's R(x) holds 0·inf = NaN, and a finite value where an infinite or
    NaN pixel is read only with weight 0; now a sum that is not finite is taken again in
    the reference's form, and a pixel no output reads stays out."""
    _, x1, x2, size, ac, scales, g = case
    dev = _device_for(backend)
    x1, x2 = x1.to(dtype), x2.to(dtype)
    g = torch.randn(1, 2, *size, generator=torch.Generator().manual_seed(4), dtype=dtype) if g is None else g.to(dtype)
    wdt = torch.float32 if dtype == torch.bfloat16 else dtype  # float32 weights beside bfloat16, as under AMP
    w1, w2 = torch.tensor(0.7, dtype=wdt), torch.tensor(-1.3, dtype=wdt)
    got = _on_cpu(*_run(backend, x1.to(dev), x2.to(dev), w1.to(dev), w2.to(dev), size, ac, scales, g=g.to(dev)))
    want = _run("reference", x1, x2, w1, w2, size, ac, scales, g=g)
    for name, a, b in zip(("grad_w1", "grad_w2"), got[3:], want[3:]):
        assert (a.isnan(), a.isposinf(), a.isneginf()) == (b.isnan(), b.isposinf(), b.isneginf()), (name, a, b)
        if b.isfinite():
            assert_close(a, b, msg=name, atol=W_TOL[dtype] * (1.0 + float(b.abs())), rtol=W_TOL[dtype])


def test_empty_batch(backend):
    dev = _device_for(backend)
    x1 = torch.randn(0, 3, 5, 7, device=dev, requires_grad=True)
    x2 = torch.randn(0, 3, 9, 13, device=dev, requires_grad=True)
    w1 = torch.tensor(0.5, device=dev, requires_grad=True)
    out = resizeops.resize_blend(x1, x2, w1, 1.0, (7, 10), True, backend=backend)
    assert out.shape == (0, 3, 7, 10)
    g1, g2, gw = torch.autograd.grad(out.sum(), (x1, x2, w1))
    assert g1.shape == x1.shape and g2.shape == x2.shape and float(gw) == 0.0


def test_deterministic_mode_bit_identical(backend):
    if not _dispatch.get_backend(backend).kernels["resize_blend"].deterministic_backward(_device_for(backend)):
        pytest.skip(f"{backend}'s backward is not deterministic: the dispatcher routes around it")
    torch.use_deterministic_algorithms(True)
    dev = _device_for(backend)
    c = 3 if _interpreted(backend) else 40
    args = (torch.randn(3, c, 13, 17, device=dev), torch.randn(3, c, 29, 31, device=dev),
            torch.tensor(0.3, device=dev), torch.tensor(0.9, device=dev), (21, 23), True, None)  # fmt: skip
    first, second = _run(backend, *args), _run(backend, *args)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("seed", range(3))
def test_gradcheck_float64(backend, seed):
    if _interpreted(backend):
        pytest.skip("minutes under the Triton interpreter; tests/test_triton_blend.py gradchecks a small case")
    rng = random.Random(seed)
    dev = _device_for(backend)
    s1 = (2, 3, rng.randint(1, 7), rng.randint(1, 7))
    s2 = (2, 3, rng.randint(1, 9), rng.randint(1, 9))
    size = (rng.randint(1, 8), rng.randint(1, 8))
    ac = seed % 2 == 0
    inputs = (
        torch.randn(s1, dtype=torch.float64, device=dev, requires_grad=True),
        torch.randn(s2, dtype=torch.float64, device=dev, requires_grad=True),
        torch.tensor(0.3, dtype=torch.float64, device=dev, requires_grad=True),
        torch.tensor(-0.8, dtype=torch.float64, device=dev, requires_grad=True),
    )
    assert torch.autograd.gradcheck(lambda *a: resizeops.resize_blend(*a, size, ac, backend=backend), inputs)


@pytest.mark.parametrize("cl", [False, True])
def test_opcheck_extension_ops(backend, cl):
    if backend != "cpu":
        pytest.skip("the extension ops are checked on the CPU here")
    from torch.library import opcheck

    fmt = torch.channels_last if cl else torch.contiguous_format
    x1 = torch.randn(2, 3, 5, 7).contiguous(memory_format=fmt)
    x2 = torch.randn(2, 3, 9, 13)
    w1, w2 = torch.tensor(0.5), torch.tensor(1.5)
    ext = torch.ops.resizeops_ext
    opcheck(ext.resize_blend_forward.default, (x1, x2, w1, w2, [7, 10], True, None, None, cl, []))
    opcheck(ext.resize_blend_forward.default, (x1, x2, w1, w2, [9, 13], False, [2.0, 2.0], None, cl, []))
    g = torch.randn(2, 3, 7, 10)
    for mask in [(True, True, True, True), (False, True, True, False)]:
        opcheck(
            ext.resize_blend_backward.default, (g, x1, x2, w1, w2, [7, 10], True, None, None, *mask, cl, False, [])
        )


def test_copy_axis_and_float32_floor_match_aten(backend):
    # Two details of ATen's bilinear source index (math.h interp_taps):
    # (1) an axis whose full interpolate size equals its input size is copied, even
    #     with a scale that is not 1 (7 · 1.1 → 7 outputs): a NaN stays one pixel;
    # (2) i0 = floorf(src): float64 coordinates are rounded to float32 before the
    #     floor, so src = 1 − 4.5e-9 reads pixel 1 with weight 1 (value 1000 exactly).
    # Both are ATen's CPU kernel; its CUDA kernel (H200, torch 2.11) floors float64
    # in float64 (999.99999 here) and lets the NaN leak along the unchanged axis.
    # The rule is the CPU one on every device (docs/DESIGN.md), so the reference
    # runs on the CPU.
    dev = _device_for(backend)
    cpu = _on_cpu
    x = torch.tensor([0.0, 1000.0, 0.0, 0.0, 0.0], dtype=torch.float64, device=dev).reshape(1, 1, 1, 5)
    x = x.expand(1, 1, 2, 5).contiguous()
    s = 1 / (1 / 3 - 1e-9)
    other = torch.zeros(1, 1, 2, 15, dtype=torch.float64, device=dev)
    one = torch.tensor(1.0, dtype=torch.float64, device=dev)
    zero = torch.tensor(0.0, dtype=torch.float64, device=dev)
    for scales in (((1.1, s), None), ((1.0, s), None)):
        out = resizeops.resize_blend(x, other, one, zero, (2, 15), False, scales, backend=backend).cpu()
        ref = resizeops.resize_blend(*cpu(x, other, one, zero), (2, 15), False, scales, backend="reference")
        assert_close(out, ref)
        assert out[0, 0, 0, 4].item() == ref[0, 0, 0, 4].item() == 1000.0
    y = torch.randn(1, 2, 7, 7, device=dev)
    y[0, 0, 3, 3] = float("nan")
    z = torch.zeros(1, 2, 7, 7, device=dev)
    w = torch.tensor(1.0, device=dev)
    out = resizeops.resize_blend(y, z, w, w, (7, 7), False, ((1.1, 1.1), None), backend=backend).cpu()
    ref = resizeops.resize_blend(*cpu(y, z, w, w), (7, 7), False, ((1.1, 1.1), None), backend="reference")
    assert torch.isnan(out[0, 0]).sum() == 1 and torch.equal(torch.isnan(out), torch.isnan(ref))
    assert_close(out, ref)


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cuda_gather_tile_and_loop_forms_bit_identical(dtype, cl):
    """The CUDA blend gathers' two forms (blend_elements.h) in the serial emulation: the
    4x4 tiles issue every load of a pixel at once and select afterwards, the loop loads
    what it uses; same sum, same order, so bit-identical results, for resize_blend and
    shape_adaptor_maxpool. Covers tiles (up to x2 either way, ELASTIC's scale), pixels that need
    the loop (more than 4 outputs per axis: x3 up-sampling), pixels no output reads
    (x0.3), pass-through branches, and NaN / inf in grad_out."""
    ext = torch.ops.resizeops_ext
    if not hasattr(ext, "_resize_blend_backward_emulated"):
        if os.environ.get("RESIZEOPS_REQUIRE_EXT") == "1":
            pytest.fail("the CUDA-kernel emulation must run here (RESIZEOPS_REQUIRE_EXT=1)")
        pytest.skip("the compiled extension is not loaded")
    gen = torch.Generator().manual_seed(9)

    def t(*shape, nan_every=0, inf_every=0):
        x = torch.randn(shape, generator=gen).to(dtype)
        if nan_every:
            x.view(-1)[::nan_every] = float("nan")
        if inf_every:
            x.view(-1)[2::inf_every] = float("inf")
        return x.contiguous(memory_format=torch.channels_last) if cl else x

    def both(fn):
        """fn(forms) with the tiles and with the loop (KernelForms.gather)."""
        return fn(KernelForms(gather="tile").encode()), fn(KernelForms(gather="loop").encode())

    wdt = torch.float64 if dtype == torch.float64 else torch.float32
    w1, w2 = torch.tensor(0.7, dtype=wdt), torch.tensor(-1.3, dtype=wdt)
    blend_cases = [((2, 3, 7, 9), (2, 3, 16, 15), (11, 12), True, (None, None)),
                   ((1, 2, 5, 4), (1, 2, 40, 33), (15, 12), False, (None, None)),  # x3 up, x0.3 down
                   ((2, 3, 8, 8), (2, 3, 16, 16), (16, 16), False, ([2.0, 2.0], None)),  # ELASTIC
                   ((1, 2, 1, 6), (1, 2, 9, 1), (4, 3), True, (None, None))]  # fmt: skip
    for s1, s2, size, ac, sc in blend_cases:
        x1, x2, g = t(*s1), t(*s2), t(s1[0], s1[1], *size, nan_every=7, inf_every=9)
        tile, loop = both(lambda forms: ext._resize_blend_backward_emulated(
            g, x1, x2, w1, w2, list(size), ac, *sc, True, True, True, True, cl, cl, forms))  # fmt: skip
        for name, a, b in zip(("grad_x1", "grad_x2", "grad_w1", "grad_w2"), tile, loop):
            assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()), (s1, s2, name)
    for shape, size in [((2, 3, 16, 14), (12, 11)), ((1, 2, 9, 7), (14, 20)), ((1, 2, 12, 12), (6, 6))]:
        x, g = t(*shape), t(shape[0], shape[1], *size, inf_every=5)
        tile, loop = both(lambda forms: ext._shape_adaptor_maxpool_backward_emulated(
            g, x, w1, w2, list(size), True, True, True, True, cl, forms))  # fmt: skip
        for name, a, b in zip(("grad_x", "grad_w1", "grad_w2"), tile, loop):
            assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()), (shape, name)

