"""resizeops.resize_blend on every backend (docs/SEMANTICS.md, resize_blend, and Backends).

One module for the op, in three parts:

1. The definition: the reference backend against the float64 loop oracle
   (tests/oracle.py) and autograd of F.interpolate, and the two methods it serves
   (Shape Adaptor, ELASTIC). Not parametrised over backends.
2. Every kernel backend against the reference backend, forward and all four
   gradients (x1, x2, w1, w2): the ``backend`` fixture is parametrised over ``cpu``
   (the C++ CPU kernel), ``cuda_emulated`` (the CUDA kernels' per-element code run
   serially on the CPU, conftest.use_cuda_emulation), ``triton`` (marked ``triton``)
   and ``cuda`` (marked ``cuda``); each is skipped where it cannot run, and
   `-m triton` / `-m cuda` select them.
3. What only one backend needs, each in its own section: the CUDA gathers' tile and
   loop forms in the CPU emulation; ``TestTriton`` (marked ``triton``: on a GPU, or on
   the CPU under ``TRITON_INTERPRET=1 python -m pytest -m triton tests``; skipped
   elsewhere): the Triton kernels (resizeops/triton_kernels/blend.py) in awkward
   geometry and layouts, their tables, entry points and 64-bit index path;
   ``TestCuda`` (marked ``cuda``, skipped without a GPU): the CUDA kernels
   (csrc/cuda/resize_blend.cu) against their emulation and the C++ CPU kernel,
   opcheck on CUDA tensors, the 64-bit index path, a non-default stream, empty
   shapes, the default backend.

Shared with tests/test_shape_adaptor_maxpool.py: ``BACKENDS``, ``interpreted`` and the
helpers of the one-backend sections (``skip_unless_triton``, ``tile_and_loop``,
``close_sums``, ...); the helpers of every op module are in tests/conftest.py.
"""

import math
import os
import random

import oracle
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    CUDA_ONLY,
    DEFAULT_FORMS,
    EXT,
    TRITON_DEV,
    TRITON_DTYPES,
    assert_close,
    cpu_randn,
    require_backend,
    require_cuda_kernels,
    require_emulation,
    seeded,
    use_cuda_emulation,
    use_forms,
)
from conftest import device_for_backend as _device_for
from torch.library import opcheck

import resizeops
from resizeops.core import _dispatch
from resizeops.core.kernel_forms import KernelForms

# ============================================================================
# 1. The definition: the reference backend
# ============================================================================


def _cases():
    """(shape1, shape2, size, align_corners, scales): up/down, odd/prime, pass-through, 1x1, crops."""
    fixed = [
        ((2, 3, 5, 7), (2, 3, 9, 13), (7, 10), True, None),  # Shape Adaptor: between the two
        ((2, 3, 5, 7), (2, 3, 9, 13), (7, 10), False, None),
        ((2, 3, 4, 4), (2, 3, 8, 8), (8, 8), True, None),  # x2 passes through
        ((1, 2, 1, 1), (1, 2, 1, 5), (1, 1), True, None),  # 1x1 output, H = 1 inputs
        ((1, 2, 3, 1), (1, 2, 17, 1), (11, 1), False, None),  # W = 1
        ((2, 4, 5, 7), (2, 4, 9, 13), (9, 13), False, ((2, 2), None)),  # ELASTIC: x2 up-sample, crop
        ((2, 4, 5, 7), (2, 4, 9, 13), (10, 13), False, ((2.0, 2.0), (1.25, 1.0))),
        ((1, 3, 6, 6), (1, 3, 12, 12), (11, 11), True, ((2, 2), 1.0)),  # scale under align_corners=True
        ((2, 1, 31, 29), (2, 1, 7, 3), (13, 17), True, None),  # down- and up-sampling at once
    ]
    rng = random.Random(99)
    for _ in range(5):
        n, c = rng.randint(1, 3), rng.randint(1, 4)
        s1 = (n, c, rng.randint(1, 15), rng.randint(1, 15))
        s2 = (n, c, rng.randint(1, 15), rng.randint(1, 15))
        fixed.append((s1, s2, (rng.randint(1, 19), rng.randint(1, 19)), rng.random() < 0.5, None))
    return fixed


CASES = _cases()


@pytest.mark.parametrize("s1,s2,size,ac,scales", CASES)
def test_forward_matches_float64_oracle(s1, s2, size, ac, scales):
    x1 = torch.randn(s1, dtype=torch.float64)
    x2 = torch.randn(s2, dtype=torch.float64)
    out = resizeops.resize_blend(x1, x2, 0.3, 1.7, size, ac, scales, backend="reference")
    assert out.shape == s1[:2] + tuple(size)
    assert_close(out, oracle.resize_blend(x1, x2, 0.3, 1.7, size, ac, scales))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("s1,s2,size,ac,scales", CASES[:9])
def test_forward_dtypes(dtype, s1, s2, size, ac, scales):
    x1 = torch.randn(s1).to(dtype)
    x2 = torch.randn(s2).to(dtype)
    w1, w2 = torch.tensor(0.25), torch.tensor(0.5)
    out = resizeops.resize_blend(x1, x2, w1, w2, size, ac, scales)
    assert out.dtype == dtype
    assert_close(out, oracle.resize_blend(x1, x2, 0.25, 0.5, size, ac, scales), dtype)


@pytest.mark.parametrize("s1,s2,size,ac,scales", CASES)
def test_gradients_match_autograd_of_interpolate(s1, s2, size, ac, scales):
    def interp(x, s):
        if s is None:
            return F.interpolate(x, size=size, mode="bilinear", align_corners=ac)
        s = (s, s) if isinstance(s, (int, float)) else s
        y = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=ac, recompute_scale_factor=False)
        return y[..., : size[0], : size[1]]

    sc = scales or (None, None)
    inputs = [
        torch.randn(s1, dtype=torch.float64, requires_grad=True),
        torch.randn(s2, dtype=torch.float64, requires_grad=True),
        torch.tensor(0.3, dtype=torch.float64, requires_grad=True),
        torch.tensor(-1.1, dtype=torch.float64, requires_grad=True),
    ]
    x1, x2, w1, w2 = inputs
    out = resizeops.resize_blend(x1, x2, w1, w2, size, ac, scales)
    expected = w1 * interp(x1, sc[0]) + w2 * interp(x2, sc[1])
    assert_close(out, expected)
    g = torch.randn_like(out)
    for got, want in zip(torch.autograd.grad(out, inputs, g), torch.autograd.grad(expected, inputs, g)):
        assert_close(got, want)


@pytest.mark.parametrize("s1,s2,size,ac,scales", [CASES[0], CASES[4], CASES[6], CASES[7]])
def test_gradcheck_all_four_inputs(s1, s2, size, ac, scales):
    inputs = (
        torch.randn(s1, dtype=torch.float64, requires_grad=True),
        torch.randn(s2, dtype=torch.float64, requires_grad=True),
        torch.tensor(0.3, dtype=torch.float64, requires_grad=True),
        torch.tensor(0.8, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(lambda *a: resizeops.resize_blend(*a, size, ac, scales), inputs)


@pytest.mark.parametrize("residual", [False, True])
def test_shape_adaptor_cell_official_forward(residual):
    """The official Shape Adaptor blend (lorenmt/shape-adaptor model_list.py; docs/SEMANTICS.md, Shape Adaptor).

    x_low = max-pool 2x2 of x (plain cells) or a stride-2 1x1 conv (residual cells);
    size = floor(D · s(σ)); out = k(1-σ)·interp(x_low) + kσ·interp(x), k = 2 in residual
    cells, align_corners=True; gradients reach the features and the shape parameter.
    """
    torch.manual_seed(3)
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64, requires_grad=True)
    alpha_raw = torch.tensor(-0.3466, dtype=torch.float64, requires_grad=True)  # s = 0.7071: Eq. 5's init for 32 → 8, N = 4
    conv = torch.nn.Conv2d(4, 4, 1, stride=2, bias=False).double()
    x_low = conv(x) if residual else F.max_pool2d(x, 2)
    sigma = torch.sigmoid(alpha_raw)
    k = 2.0 if residual else 1.0
    s = 0.5 + 0.5 * float(sigma.detach())
    size = (int(16 * s), int(16 * s))
    out = resizeops.resize_blend(x_low, x, k * (1 - sigma), k * sigma, size, True)
    expected = k * (1 - sigma) * F.interpolate(x_low, size=size, mode="bilinear", align_corners=True) + k * sigma * (
        F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    )
    assert out.shape == (2, 4, 11, 11)
    assert_close(out, expected)
    g = torch.randn_like(out)
    params = [x, alpha_raw] + list(conv.parameters()) * residual
    got_grads = torch.autograd.grad(out, params, g, retain_graph=True)  # the two share x_low and sigma
    for got, want in zip(got_grads, torch.autograd.grad(expected, params, g)):
        assert_close(got, want)


@pytest.mark.parametrize("h,w", [(9, 13), (8, 8), (1, 5), (7, 1)])
def test_elastic_merge_odd_sizes(h, w):
    """ELASTIC (docs/SEMANTICS.md, ELASTIC): replicate-pad odd sizes, AvgPool2d(2, 2), branch, ×2 up-sample, crop, sum."""
    x = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
    full = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)  # the full-resolution branch
    low = F.avg_pool2d(F.pad(x, (0, w % 2, 0, h % 2), mode="replicate"), 2) * 1.5  # a stand-in branch
    out = resizeops.resize_blend(low, full, 1.0, 1.0, (h, w), align_corners=False, scales=((2, 2), None))
    up = F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)[..., :h, :w]
    expected = up + full
    assert_close(out, expected)
    g = torch.randn_like(out)
    got_grads = torch.autograd.grad(out, (x, full), g, retain_graph=True)  # both use `low`
    for got, want in zip(got_grads, torch.autograd.grad(expected, (x, full), g)):
        assert_close(got, want)


@pytest.mark.parametrize("layout", ["channels_last_x1", "channels_last_both", "sliced", "permuted"])
def test_strided_inputs(layout):
    a = torch.randn(2, 6, 11, 14, dtype=torch.float64)
    b = torch.randn(2, 6, 21, 26, dtype=torch.float64)
    if layout == "channels_last_x1":
        x1, x2 = a.contiguous(memory_format=torch.channels_last), b
    elif layout == "channels_last_both":
        x1, x2 = a.contiguous(memory_format=torch.channels_last), b.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":
        x1, x2 = a[:, ::2, 1:, ::2], b[:, 1::2, :, 1:]
    else:
        x1, x2 = a.permute(0, 1, 3, 2), b.permute(0, 1, 3, 2)
    x1.requires_grad_(True)
    x2.requires_grad_(True)
    w1 = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    w2 = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    size = (15, 9)
    out = resizeops.resize_blend(x1, x2, w1, w2, size, True)
    fmt = torch.channels_last if "channels_last" in layout else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)
    assert_close(out, oracle.resize_blend(x1, x2, 0.4, 0.9, size, True))
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x1, x2, w1, w2), g)
    c = [t.detach().contiguous().requires_grad_(True) for t in (x1, x2, w1, w2)]
    expected = torch.autograd.grad(resizeops.resize_blend(*c, size, True), c, g.contiguous())
    for got, want in zip(grads, expected):
        assert_close(got, want)


@pytest.mark.parametrize("shape", [(0, 3), (2, 0)])
def test_empty_batch_or_channels(shape):
    x1 = torch.randn(shape + (4, 4), requires_grad=True)
    x2 = torch.randn(shape + (8, 8), requires_grad=True)
    w1 = torch.tensor(0.5, requires_grad=True)
    out = resizeops.resize_blend(x1, x2, w1, 0.5, (6, 6))
    assert out.shape == shape + (6, 6)
    out.sum().backward()
    assert x1.grad.shape == x1.shape and x2.grad.shape == x2.shape
    assert float(w1.grad) == 0.0


def test_weight_dtype_does_not_promote():
    x1 = torch.randn(1, 2, 4, 4, dtype=torch.bfloat16)
    x2 = torch.randn(1, 2, 8, 8, dtype=torch.bfloat16)
    w1 = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    out = resizeops.resize_blend(x1, x2, w1, 2, (6, 6))
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert w1.grad.dtype == torch.float64


def test_scaled_reference_computes_only_the_kept_window(monkeypatch):
    """Under align_corners=False a scaled input is interpolated straight to the kept
    window (upsample_bilinear2d with the scale: the source index does not depend on the
    output size), never to the whole up-scaled image: a 4x4 input at scale 500 asks for
    2000x2000 before the crop, here at most (Ho + 1) x (Wo + 1)."""
    sizes = []
    real = torch.ops.aten.upsample_bilinear2d

    class Spy:
        def __getattr__(self, name):
            return getattr(torch.ops.aten, name)

        def upsample_bilinear2d(self, *args):
            out = real(*args)
            sizes.append(tuple(out.shape[-2:]))
            return out

    monkeypatch.setattr(resizeops.reference, "_aten", Spy())
    monkeypatch.setattr(F, "interpolate", lambda *a, **k: pytest.fail("the full up-scaled image was computed"))
    x1, x2 = torch.randn(1, 2, 4, 4, requires_grad=True), torch.randn(1, 2, 5, 5)
    out = resizeops.resize_blend(x1, x2, 1.0, 1.0, (5, 5), False, ((500, 500), None), backend="reference")
    out.sum().backward()
    assert sizes and max(max(s) for s in sizes) <= 6, sizes


def test_scaled_reference_equals_interpolate_then_crop():
    """The kept window computed directly is interpolate-then-crop bit for bit, forward and
    backward, with ±inf and NaN: random sizes, scales and crops, including the axes ATen
    copies (an axis whose full size floor(H·s) equals H, copied by the full call, and a
    window as long as its input but not its full size, which the window's own call would
    copy)."""
    rng = random.Random(17)
    for _ in range(300):
        h, w = rng.randint(1, 9), rng.randint(1, 9)
        scale = (rng.choice([1.0, 1.1, 1.5, 2.0, rng.uniform(1, 4)]), rng.choice([1.0, 1.1, 2.0, rng.uniform(1, 4)]))
        full = (math.floor(h * scale[0]), math.floor(w * scale[1]))
        size = (rng.randint(1, full[0]), rng.randint(1, full[1]))
        dtype = rng.choice([torch.float32, torch.float64])
        x = torch.randn(2, 3, h, w, dtype=dtype)
        if rng.random() < 0.3:
            x[0, 0, rng.randrange(h), rng.randrange(w)] = rng.choice([float("inf"), float("nan")])
        g = torch.randn(2, 3, *size, dtype=dtype)
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        want = F.interpolate(a, scale_factor=scale, mode="bilinear", recompute_scale_factor=False)[..., : size[0], : size[1]]
        got = resizeops.reference.resize(b, size, False, scale)
        want.backward(g)
        got.backward(g)
        by_hand = resizeops.reference._resize_backward(g, x.shape, size, False, scale)
        for p, q in [(got, want), (b.grad, a.grad), (by_hand, a.grad)]:
            assert torch.equal(p.isnan(), q.isnan()) and torch.equal(p.nan_to_num(), q.nan_to_num()), (h, w, scale, size)


# ============================================================================
# 2. Every kernel backend against the reference backend
# ============================================================================

BACKENDS = [
    pytest.param("cpu", id="cpu"),
    # The CUDA kernels' per-element code run serially on the CPU
    # (conftest.use_cuda_emulation): the GPU indexing and arithmetic without a GPU.
    pytest.param("cuda_emulated", id="cuda_emulated"),
    pytest.param("triton", id="triton", marks=pytest.mark.triton),
    pytest.param("cuda", id="cuda", marks=pytest.mark.cuda),
]


def interpreted(backend):
    """Triton under TRITON_INTERPRET=1 on CPU tensors: a few thousand times slower, so
    the heaviest checks use smaller shapes there (TestTriton below has more)."""
    return backend == "triton" and _device_for(backend).type == "cpu"


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    if request.param == "cuda_emulated":
        return use_cuda_emulation(monkeypatch, "resize_blend")
    return require_backend(request.param, "resize_blend")


def _backend_cases():
    """(shape1, shape2, size, align_corners, scales): up/down, odd/prime, pass-through, 1x1, crops."""
    # The reference tests' fixed cases (up/down, pass-through, 1x1, H or W = 1,
    # ELASTIC crops, a scale under align_corners=True), then more.
    fixed = list(CASES[:9]) + [
        ((1, 37, 11, 13), (1, 37, 22, 26), (16, 19), True, None),  # C over two channel blocks
    ]
    rng = random.Random(123)
    for _ in range(4):
        n, c = rng.randint(1, 3), rng.randint(1, 20)
        s1 = (n, c, rng.randint(1, 15), rng.randint(1, 15))
        s2 = (n, c, rng.randint(1, 15), rng.randint(1, 15))
        fixed.append((s1, s2, (rng.randint(1, 19), rng.randint(1, 19)), rng.random() < 0.5, None))
    return fixed


BACKEND_CASES = _backend_cases()

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


@pytest.mark.parametrize("s1,s2,size,ac,scales", BACKEND_CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_reference(backend, s1, s2, size, ac, scales, dtype):
    dev = _device_for(backend)
    x1, x2 = torch.randn(s1, dtype=dtype, device=dev), torch.randn(s2, dtype=dtype, device=dev)
    w1, w2 = torch.tensor(0.7, dtype=dtype, device=dev), torch.tensor(-1.3, dtype=dtype, device=dev)
    _compare(backend, x1, x2, w1, w2, size, ac, scales)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("s1,s2,size,ac,scales", BACKEND_CASES[:8])
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
    c = 6 if interpreted(backend) else 20  # 20: two channel blocks of the CPU kernel
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
    for c in (3,) if interpreted(backend) else (16, 35):
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
    c = 3 if interpreted(backend) else 40
    args = (torch.randn(3, c, 13, 17, device=dev), torch.randn(3, c, 29, 31, device=dev),
            torch.tensor(0.3, device=dev), torch.tensor(0.9, device=dev), (21, 23), True, None)  # fmt: skip
    first, second = _run(backend, *args), _run(backend, *args)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("seed", range(3))
def test_gradcheck_float64(backend, seed):
    if interpreted(backend):
        pytest.skip("minutes under the Triton interpreter; TestTriton.test_gradcheck_float64 gradchecks a small case")
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


# ============================================================================
# 3. What only one backend needs
# ============================================================================

# --- The CUDA kernels' CPU emulation only: the gathers' tile and loop forms ---------


def forms_inputs(dtype, cl, seed=9):
    """t(*shape, nan_every=0, inf_every=0): seeded CPU inputs for the tile/loop checks,
    with NaN / inf every so many elements, channels_last if ``cl``."""
    gen = torch.Generator().manual_seed(seed)

    def t(*shape, nan_every=0, inf_every=0):
        x = torch.randn(shape, generator=gen).to(dtype)
        if nan_every:
            x.view(-1)[::nan_every] = float("nan")
        if inf_every:
            x.view(-1)[2::inf_every] = float("inf")
        return x.contiguous(memory_format=torch.channels_last) if cl else x

    return t


def tile_and_loop(fn):
    """fn(forms) with the gathers' 4x4 tiles and with the loop (KernelForms.gather)."""
    return fn(KernelForms(gather="tile").encode()), fn(KernelForms(gather="loop").encode())


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cuda_gather_tile_and_loop_forms_bit_identical(dtype, cl):
    """The CUDA blend gathers' two forms (blend_elements.h) in the serial emulation: the
    4x4 tiles issue every load of a pixel at once and select afterwards, the loop loads
    what it uses; same sum, same order, so bit-identical results. Covers tiles (up to x2
    either way, ELASTIC's scale), pixels that need the loop (more than 4 outputs per
    axis: x3 up-sampling), pixels no output reads (x0.3), pass-through branches, and
    NaN / inf in grad_out. (shape_adaptor_maxpool's: tests/test_shape_adaptor_maxpool.py.)"""
    require_emulation("resize_blend")
    ext = torch.ops.resizeops_ext
    t = forms_inputs(dtype, cl)
    wdt = torch.float64 if dtype == torch.float64 else torch.float32
    w1, w2 = torch.tensor(0.7, dtype=wdt), torch.tensor(-1.3, dtype=wdt)
    blend_cases = [((2, 3, 7, 9), (2, 3, 16, 15), (11, 12), True, (None, None)),
                   ((1, 2, 5, 4), (1, 2, 40, 33), (15, 12), False, (None, None)),  # x3 up, x0.3 down
                   ((2, 3, 8, 8), (2, 3, 16, 16), (16, 16), False, ([2.0, 2.0], None)),  # ELASTIC
                   ((1, 2, 1, 6), (1, 2, 9, 1), (4, 3), True, (None, None))]  # fmt: skip
    for s1, s2, size, ac, sc in blend_cases:
        x1, x2, g = t(*s1), t(*s2), t(s1[0], s1[1], *size, nan_every=7, inf_every=9)
        tile, loop = tile_and_loop(lambda forms: ext._resize_blend_backward_emulated(
            g, x1, x2, w1, w2, list(size), ac, *sc, True, True, True, True, cl, cl, forms))  # fmt: skip
        for name, a, b in zip(("grad_x1", "grad_x2", "grad_w1", "grad_w2"), tile, loop):
            assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()), (s1, s2, name)


# --- Triton only ---------------------------------------------------------------
# On a GPU, or on the CPU under the Triton interpreter:
# ``TRITON_INTERPRET=1 python -m pytest -m triton tests``; skipped elsewhere. The
# interpreter runs every program in Python, so shapes stay small; what matters is
# the awkward geometry (odd and prime sizes, 1×1, up- and down-sampling at once,
# pass-through, scale + crop, copy axes) and the layouts.

def skip_unless_triton(op):
    """Skip unless the triton backend runs ``op`` here: Triton importable, a GPU or
    TRITON_INTERPRET=1, and the backend's own checks."""
    pytest.importorskip("triton")
    if not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")):
        pytest.skip("Triton needs a CUDA GPU, or TRITON_INTERPRET=1 for CPU tensors")
    reason = _dispatch.get_backend("triton").not_supported_reason(op, TRITON_DEV)
    if reason:
        pytest.skip(f"triton backend cannot run {op} on {TRITON_DEV}: {reason}")


def weight_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


# grad_w = Σ g·R(x) over every output: compared with an absolute tolerance that
# grows with the number of terms (the reference sums in the compute dtype, the
# kernels in per-program partials then float64). Half types: both sides compute in
# float32 from the same rounded inputs.
TRITON_W_TOL = {torch.float64: 1e-13, torch.float32: 1e-6, torch.float16: 2e-6, torch.bfloat16: 2e-6}

# (shape1, shape2, size, align_corners, scales)
TRITON_CASES = [
    pytest.param((2, 3, 5, 7), (2, 3, 9, 13), (7, 10), True, None, id="between-ac"),  # Shape Adaptor geometry
    pytest.param((2, 3, 5, 7), (2, 3, 9, 13), (7, 10), False, None, id="between"),
    pytest.param((2, 3, 4, 4), (2, 3, 8, 8), (8, 8), True, None, id="x2-passes"),
    pytest.param((2, 1, 31, 29), (2, 1, 7, 3), (13, 17), True, None, id="primes-down-up-ac"),  # C = 1
    pytest.param((2, 1, 31, 29), (2, 1, 7, 3), (13, 17), False, None, id="primes-down-up"),
    pytest.param((1, 2, 1, 1), (1, 2, 1, 5), (1, 1), True, None, id="1x1"),  # x1 passes, H = 1
    pytest.param((1, 2, 3, 4), (1, 2, 17, 5), (1, 1), False, None, id="to-1x1"),
    pytest.param((1, 2, 3, 1), (1, 2, 17, 1), (11, 1), False, None, id="W1"),
    pytest.param((2, 4, 5, 7), (2, 4, 9, 13), (9, 13), False, ((2.0, 2.0), None), id="elastic"),  # ×2, crop
    pytest.param((2, 4, 5, 7), (2, 4, 9, 13), (10, 13), False, ((2.0, 2.0), (1.25, 1.0)), id="scales-both"),
    pytest.param((1, 3, 6, 6), (1, 3, 12, 12), (11, 11), True, ((2.0, 2.0), (1.0, 1.0)), id="scales-ac"),
    pytest.param((1, 1, 3, 2), (1, 1, 2, 1), (13, 11), False, None, id="strong-up"),  # long fan-in loops
]


# Cases that half types skip: the same geometry runs with align_corners=True, or in float32.
_FULL_DTYPE_ONLY = {((2, 1, 31, 29), (13, 17), False), ((2, 3, 5, 7), (7, 10), False), ((1, 2, 3, 1), (11, 1), False)}


def _triton_run(backend, x1, x2, w1, w2, size, ac, scales, g=None, wrt=(0, 1, 2, 3)):
    """(out, grads of the inputs in ``wrt``); ``g`` defaults to a seeded random grad_out."""
    inputs = [t.detach().requires_grad_(k in wrt) for k, t in enumerate((x1, x2, w1, w2))]
    out = resizeops.resize_blend(*inputs, size, ac, scales, backend=backend)
    if g is None:
        g = seeded(out.shape, out.dtype, seed=1)
    grads = torch.autograd.grad(out, [inputs[k] for k in wrt], g) if wrt else ()
    return out, grads


def _triton_compare(x1, x2, w1, w2, size, ac, scales, g=None, wrt=(0, 1, 2, 3)):
    dt = x1.dtype
    out, grads = _triton_run("triton", x1, x2, w1, w2, size, ac, scales, g, wrt)
    ref, rgrads = _triton_run("reference", x1, x2, w1, w2, size, ac, scales, g, wrt)
    assert out.shape == ref.shape and out.dtype == ref.dtype and out.stride() == ref.stride()
    assert_close(out, ref, dt, msg="forward")
    names = ("grad_x1", "grad_x2", "grad_w1", "grad_w2")
    for k, a, b in zip(wrt, grads, rgrads):
        assert a.dtype == b.dtype and a.shape == b.shape, names[k]
        if k < 2:
            assert a.stride() == b.stride(), names[k]
            assert_close(a, b, dt, msg=names[k])
        else:
            assert_close(a, b, dt, msg=names[k], atol=TRITON_W_TOL[dt] * max(out.numel(), 1), rtol=1e-5)
    return out, grads


class TestTriton:
    """The Triton resize_blend kernels against the reference backend (and the loop oracle)."""

    pytestmark = pytest.mark.triton

    @pytest.fixture(autouse=True)
    def _triton_runs_here(self):
        skip_unless_triton("resize_blend")

    def test_triton_is_available_for_resize_blend(self):
        (info,) = [b for b in resizeops.backends(TRITON_DEV, op="resize_blend") if b.name == "triton"]
        assert info.available, info.reason
        assert "resize_blend" in info.ops
        # The backward gathers (no atomics): declared deterministic.
        assert _dispatch.get_backend("triton").kernels["resize_blend"].deterministic_backward(TRITON_DEV)

    @pytest.mark.parametrize("s1,s2,size,ac,scales", TRITON_CASES)
    @pytest.mark.parametrize("dtype", TRITON_DTYPES, ids=str)
    def test_matches_reference(self, s1, s2, size, ac, scales, dtype):
        if dtype in (torch.float16, torch.bfloat16) and (s1, size, ac) in _FULL_DTYPE_ONLY:
            pytest.skip("covered in float32/float64; half types run the other cases (interpreter time)")
        x1, x2 = seeded(s1, dtype, 0), seeded(s2, dtype, 2)
        w1 = torch.tensor(0.3, dtype=weight_dtype(dtype), device=TRITON_DEV)
        w2 = torch.tensor(-1.2, dtype=weight_dtype(dtype), device=TRITON_DEV)
        out, _ = _triton_compare(x1, x2, w1, w2, size, ac, scales)
        assert out.shape == s1[:2] + tuple(size)

    @pytest.mark.parametrize("s1,s2,size,ac,scales", [TRITON_CASES[1], TRITON_CASES[3], TRITON_CASES[8]])
    def test_matches_float64_oracle(self, s1, s2, size, ac, scales):
        # Independent of F.interpolate: the loop oracle written from docs/SEMANTICS.md, resize_blend.
        x1, x2 = seeded(s1, torch.float64, 0), seeded(s2, torch.float64, 2)
        w1, w2 = (torch.tensor(v, dtype=torch.float64, device=TRITON_DEV) for v in (0.7, 1.1))
        out = resizeops.resize_blend(x1, x2, w1, w2, size, ac, scales, backend="triton")
        assert_close(out.cpu(), oracle.resize_blend(x1.cpu(), x2.cpu(), 0.7, 1.1, size, ac, scales))

    @pytest.mark.parametrize("ac", [False, True])
    def test_shape_adaptor_official_weights(self, ac):
        # Official Shape Adaptor blend: w1 = 2(1 − σ), w2 = 2σ (residual cell), x2 at full resolution.
        # The gradient reaches alpha_raw through both weights.
        x = seeded((2, 4, 12, 12), torch.float32, 0)
        x_low = F.max_pool2d(x, 2)
        size = (int(12 * 0.7071), int(12 * 0.7071))
        grads = {}
        for b in ("triton", "reference"):
            alpha_raw = torch.tensor(-0.3466, device=TRITON_DEV, requires_grad=True)
            xl = x_low.clone().requires_grad_(True)
            xf = x.clone().requires_grad_(True)
            sigma = torch.sigmoid(alpha_raw)
            out = resizeops.resize_blend(xl, xf, 2 * (1 - sigma), 2 * sigma, size, ac, backend=b)
            g = seeded(out.shape, torch.float32, 1)
            grads[b] = (out,) + torch.autograd.grad(out, (xl, xf, alpha_raw), g)
        for name, a, r in zip(("forward", "grad_x_low", "grad_x", "grad_alpha"), grads["triton"], grads["reference"]):
            assert_close(a, r, msg=name, atol=1e-4 if name == "grad_alpha" else 1e-5)

    @pytest.mark.parametrize("layout", ["channels_last_x1", "channels_last_both", "sliced", "permuted", "sliced_cl"])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
    def test_layouts(self, layout, dtype):
        # Inputs are read through their strides (no copy); the output is channels_last
        # if either input is, and each grad_x is contiguous in its input's format.
        a = seeded((2, 6, 7, 9), dtype, 0)
        b = seeded((2, 6, 12, 11), dtype, 2)
        cl = torch.channels_last
        x1, x2 = {
            "channels_last_x1": lambda: (a.contiguous(memory_format=cl), b),
            "channels_last_both": lambda: (a.contiguous(memory_format=cl), b.contiguous(memory_format=cl)),
            "sliced": lambda: (a[:, ::2, 1:, ::2], b[:, 1::2, :, 1:]),
            "permuted": lambda: (a.permute(0, 1, 3, 2), b.permute(0, 1, 3, 2)),
            "sliced_cl": lambda: (a[:, 1:5, :, 1:], b.contiguous(memory_format=cl)[:, 1:5, 2:, 1:-1]),
        }[layout]()
        w1 = torch.tensor(0.4, device=TRITON_DEV)
        w2 = torch.tensor(0.9, device=TRITON_DEV)
        out, grads = _triton_compare(x1, x2, w1, w2, (8, 5), True, None)
        want = resizeops.reference.output_memory_format(x1, x2)
        assert out.is_contiguous(memory_format=want)
        for xk, gk in zip((x1, x2), grads[:2]):
            assert gk.is_contiguous(memory_format=resizeops.reference.output_memory_format(xk))

    @pytest.mark.parametrize("kind", ["transposed", "expanded"])
    def test_non_contiguous_grad_out(self, kind):
        x1, x2 = seeded((2, 3, 5, 6), torch.float32, 0), seeded((2, 3, 10, 9), torch.float32, 2)
        w1, w2 = torch.tensor(0.5, device=TRITON_DEV), torch.tensor(1.5, device=TRITON_DEV)
        size = (7, 8)
        if kind == "transposed":
            g = seeded((2, 3, 8, 7), torch.float32).transpose(2, 3)
        else:  # stride 0 on N and C: autograd's grad of out.sum()-like losses
            g = seeded((1, 1, 7, 8), torch.float32).expand(2, 3, 7, 8)
        assert not g.is_contiguous()
        got = _triton_run("triton", x1, x2, w1, w2, size, False, None, g)
        want = _triton_run("reference", x1, x2, w1, w2, size, False, None, g.contiguous())
        assert_close(got[0], want[0], msg="forward")
        for name, a, b in zip(("grad_x1", "grad_x2", "grad_w1", "grad_w2"), got[1], want[1]):
            assert_close(a, b, atol=1e-4, rtol=1e-5, msg=name)

    @pytest.mark.parametrize("wrt", [(0,), (1,), (2,), (3,), (0, 3), (1, 2)], ids=str)
    def test_only_the_requested_gradients(self, wrt):
        from resizeops.triton_kernels import blend

        x1, x2 = seeded((1, 2, 5, 7), torch.float64, 0), seeded((1, 2, 9, 4), torch.float64, 2)
        w1, w2 = (torch.tensor(v, dtype=torch.float64, device=TRITON_DEV) for v in (0.25, -0.5))
        _triton_compare(x1, x2, w1, w2, (6, 6), False, None, wrt=wrt)
        # The kernel entry point computes only what the mask asks for.
        mask = [k in wrt for k in range(4)]
        g = seeded((1, 2, 6, 6), torch.float64, 1)
        grads = blend.resize_blend_backward(g, x1, x2, w1, w2, (6, 6), False, None, mask, (False, False, False))
        assert [t is not None for t in grads] == mask

    @pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's numpy: 0·inf
    def test_nan_and_inf_propagate_like_the_reference(self):
        # x1 is resized (a NaN reaches every output whose taps include it, weight 0
        # included; an axis whose size does not change is copied, so no leak along
        # it); x2 passes through (read directly: inf stays inf, not 0·inf = NaN).
        x1 = seeded((1, 3, 5, 6), torch.float32, 0)
        x1[0, 1, 2, 3] = float("nan")
        x1[0, 2, 1, 1] = float("inf")
        x2 = seeded((1, 3, 5, 9), torch.float32, 2)
        x2[0, 0, 4, 8] = float("inf")
        x2[0, 2, 0, 0] = float("nan")
        w1, w2 = torch.tensor(0.5, device=TRITON_DEV), torch.tensor(2.0, device=TRITON_DEV)
        # The reference on the CPU: ATen's CUDA kernel leaks the NaN along the unchanged
        # axis through a weight 0 (see test_copy_axis_and_float32_floor_match_aten).
        g = seeded((1, 3, 5, 9), torch.float32, 1)
        got = _triton_run("triton", x1, x2, w1, w2, (5, 9), False, None, g)
        got = (got[0].cpu(), _on_cpu(*got[1]))
        want = _triton_run("reference", *_on_cpu(x1, x2, w1, w2), (5, 9), False, None, g.cpu())
        out, ref = got[0], want[0]
        assert torch.isnan(out[0, 1]).any() and torch.isinf(out[0, 0]).any()
        assert torch.equal(torch.isnan(out), torch.isnan(ref)) and torch.equal(torch.isinf(out), torch.isinf(ref))
        assert_close(out, ref)
        # grad_x does not read x: finite; grad_w sums g·R(x): NaN like the reference.
        for name, a, b in zip(("grad_x1", "grad_x2", "grad_w1", "grad_w2"), got[1], want[1]):
            assert torch.equal(torch.isnan(a), torch.isnan(b)), name
            assert_close(a, b, atol=1e-4, rtol=1e-5, msg=name)

    def test_copy_axis_and_float32_floor_match_aten(self):
        # Two details of ATen's source index that math.h leaves out (see blend.py):
        # (1) an axis whose full interpolate size equals its input size is copied,
        #     even when the scale is not 1 (7 · 1.1 → 7 outputs);
        # (2) i0 = floorf(src): float64 coordinates are rounded to float32 before the
        #     floor, so src = 1 − 4.5e-9 reads pixel 1 with weight 1 (value 1000 exactly).
        # ATen's CPU kernel's rules, ours on every device: the reference runs on the CPU
        # (ATen's CUDA kernel differs in both: the matrix's test of the same name, above).
        x = torch.tensor([0.0, 1000.0, 0.0, 0.0, 0.0], dtype=torch.float64, device=TRITON_DEV).reshape(1, 1, 1, 5)
        x = x.expand(1, 1, 2, 5).contiguous()
        s = 1 / (1 / 3 - 1e-9)
        other = torch.zeros(1, 1, 2, 15, dtype=torch.float64, device=TRITON_DEV)
        one = torch.tensor(1.0, dtype=torch.float64, device=TRITON_DEV)
        zero = torch.tensor(0.0, dtype=torch.float64, device=TRITON_DEV)
        for scales in (((1.1, s), None), ((1.0, s), None)):
            out = resizeops.resize_blend(x, other, one, zero, (2, 15), False, scales, backend="triton").cpu()
            ref = resizeops.resize_blend(*_on_cpu(x, other, one, zero), (2, 15), False, scales, backend="reference")
            assert_close(out, ref)
            assert out[0, 0, 0, 4].item() == ref[0, 0, 0, 4].item() == 1000.0
        y = seeded((1, 2, 7, 7), torch.float32, 3)
        y[0, 0, 3, 3] = float("nan")
        z = torch.zeros(1, 2, 7, 7, device=TRITON_DEV)
        w = torch.tensor(1.0, device=TRITON_DEV)
        g = seeded((1, 2, 7, 7), torch.float32, 1)
        out, grads = _triton_run("triton", y, z, w, w, (7, 7), False, ((1.1, 1.1), None), g)
        ref, rgrads = _triton_run("reference", *_on_cpu(y, z, w, w), (7, 7), False, ((1.1, 1.1), None), g.cpu())
        assert torch.isnan(out[0, 0]).sum() == 1  # copied on both axes: the NaN stays one pixel
        for a, b in zip((out,) + grads, (ref,) + rgrads):
            assert_close(a.cpu(), b)

    def test_fan_in_bound_covers_the_tables(self):
        # The gather loops over at most Axis.fan_in() outputs per input index; check the
        # bound against the real [lo, hi) ranges over many geometries (host reads: test only).
        import random

        from resizeops.triton_kernels import blend

        rng = random.Random(7)
        for _ in range(150):
            ac = rng.random() < 0.5
            h_in, out = rng.randint(1, 40), rng.randint(1, 60)
            scale = None
            if rng.random() < 0.3 and not ac:
                scale = round(rng.uniform(0.3, 8.0), 3)
                full = math.floor(h_in * scale)
                if full < 1:
                    continue
                out = rng.randint(1, full)
            x = torch.empty(1, 1, h_in, 3, device=TRITON_DEV)
            x2 = torch.empty(1, 1, 2, 2, device=TRITON_DEV)  # never passes through: the tables are computed
            scales = None if scale is None else ((scale, 1.0), None)
            plan = blend._Plan((x.shape[2:], x2.shape[2:]), (out, 3), ac, scales)
            taps, _ = blend._tables(plan, torch.float32, TRITON_DEV)
            rows = blend._ranges(taps, 0, out, h_in).cpu()
            longest = int((rows[1] - rows[0]).max())
            assert longest <= plan.axes[0].fan_in(), (h_in, out, ac, scale, longest)
            # Every output is counted by both of its taps' ranges.
            i0, i1 = taps[0, :out].cpu(), taps[1, :out].cpu()
            for o in range(out):
                for t in {int(i0[o]), int(i1[o])}:
                    assert rows[0, t] <= o < rows[1, t]

    def test_backward_is_deterministic(self):
        torch.use_deterministic_algorithms(True)  # the triton backward is allowed by name
        x1, x2 = seeded((2, 5, 6, 7), torch.float32, 0), seeded((2, 5, 13, 11), torch.float32, 2)
        w1, w2 = torch.tensor(0.3, device=TRITON_DEV), torch.tensor(0.7, device=TRITON_DEV)
        first = _triton_run("triton", x1, x2, w1, w2, (9, 9), False, None)[1]
        second = _triton_run("triton", x1, x2, w1, w2, (9, 9), False, None)[1]
        for a, b in zip(first, second):
            assert torch.equal(a, b)

    def test_empty_batch(self):
        # N = 0 is handled by the op before any kernel runs; the kernel entry points cope too.
        from resizeops.triton_kernels import blend

        x1 = torch.randn(0, 3, 4, 4, device=TRITON_DEV, requires_grad=True)
        x2 = torch.randn(0, 3, 8, 8, device=TRITON_DEV, requires_grad=True)
        w1 = torch.tensor(0.5, device=TRITON_DEV, requires_grad=True)
        out = resizeops.resize_blend(x1, x2, w1, 0.5, (6, 6), backend="triton")
        assert out.shape == (0, 3, 6, 6)
        out.sum().backward()
        assert x1.grad.shape == x1.shape and float(w1.grad) == 0.0
        w = torch.tensor(1.0, device=TRITON_DEV)
        direct = blend.resize_blend_forward(x1.detach(), x2.detach(), w, w, (6, 6), True, None, False)
        assert direct.shape == (0, 3, 6, 6)
        g = torch.empty(0, 3, 6, 6, device=TRITON_DEV)
        grads = blend.resize_blend_backward(
            g, x1.detach(), x2.detach(), w, w, (6, 6), True, None, [True] * 4, [False] * 3
        )
        assert grads[0].shape == x1.shape and float(grads[2]) == 0.0 and float(grads[3]) == 0.0

    def test_int64_indexing_path(self, monkeypatch):
        # The test hook force_int64 takes the 64-bit index path on small tensors.
        use_forms(monkeypatch, "triton", "resize_blend", KernelForms(force_int64=True))
        x1 = seeded((1, 3, 5, 7), torch.float32, 0).contiguous(memory_format=torch.channels_last)
        x2 = seeded((1, 3, 8, 9), torch.float32, 2)
        w1, w2 = torch.tensor(0.3, device=TRITON_DEV), torch.tensor(0.6, device=TRITON_DEV)
        _triton_compare(x1, x2, w1, w2, (8, 6), False, ((2.0, 1.0), None))

    def test_gradcheck_float64(self):
        # Tiny: gradcheck launches forwards per input element.
        inputs = (
            seeded((1, 1, 2, 3), torch.float64, 0).requires_grad_(True),
            seeded((1, 1, 4, 2), torch.float64, 2).requires_grad_(True),
            torch.tensor(0.3, dtype=torch.float64, device=TRITON_DEV, requires_grad=True),
            torch.tensor(0.8, dtype=torch.float64, device=TRITON_DEV, requires_grad=True),
        )
        assert torch.autograd.gradcheck(lambda *a: resizeops.resize_blend(*a, (3, 3), False, backend="triton"), inputs)


# --- CUDA only (GPU) -------------------------------------------------------------
# Skipped without a GPU; `pytest -m cuda` selects them. The CUDA kernels against their
# serial CPU emulation and the C++ CPU kernel, opcheck on CUDA tensors, the 64-bit
# index path, a non-default stream, empty shapes, large channel counts.

def close_sums(a, b):
    # Block partials in float64, summed in another order than the serial emulation.
    assert_close(a, b, atol=1e-4 * (1 + float(b.abs())), rtol=1e-5)


BLEND_CASES = [
    # (shape1, shape2, size, align_corners, scales)
    ((2, 5, 13, 17), (2, 5, 26, 34), (19, 25), True, None),
    ((1, 300, 9, 31), (1, 300, 18, 62), (13, 40), False, None),
    ((2, 3, 8, 8), (2, 3, 16, 16), (16, 16), False, ((2.0, 2.0), None)),  # ELASTIC: x2 passes through
    ((3, 2, 1, 8), (3, 2, 5, 1), (3, 3), True, None),
]


class TestCuda:
    """The CUDA resize_blend kernels on a GPU."""

    pytestmark = CUDA_ONLY

    @pytest.fixture(autouse=True)
    def _needs_cuda_kernels(self):
        require_cuda_kernels()

    @pytest.mark.parametrize("form", ["tile", "loop"])  # the gathers' two forms (KernelForms.gather)
    @pytest.mark.parametrize("cl", [False, True])
    @pytest.mark.parametrize("s1,s2,size,ac,scales", BLEND_CASES)
    def test_blend_cuda_matches_its_emulation_and_the_cpu_kernel(self, s1, s2, size, ac, scales, cl, form):
        forms = KernelForms(gather=form).encode()
        x1, x2 = cpu_randn(s1, cl=cl), cpu_randn(s2, cl=cl, seed=1)
        w1, w2 = torch.tensor(0.7), torch.tensor(-1.2)
        g = cpu_randn((s1[0], s1[1], *size), cl=cl, seed=2)
        sc = scales or (None, None)
        cuda = [t.cuda() for t in (x1, x2, w1, w2)]
        got = EXT.resize_blend_forward(*cuda, list(size), ac, *sc, cl, forms).cpu()
        want_f = EXT._resize_blend_forward_emulated(x1, x2, w1, w2, list(size), ac, *sc, cl, forms)
        assert_close(got, want_f, torch.float32)
        cpu_kernel = EXT.resize_blend_forward(x1, x2, w1, w2, list(size), ac, *sc, cl, DEFAULT_FORMS)
        assert_close(got, cpu_kernel, torch.float32)
        mask = (True, True, True, True)
        grads = EXT.resize_blend_backward(g.cuda(), *cuda, list(size), ac, *sc, *mask, cl, cl, forms)
        want = EXT._resize_blend_backward_emulated(g, x1, x2, w1, w2, list(size), ac, *sc, *mask, cl, cl, forms)
        fmt = torch.channels_last if cl else torch.contiguous_format
        for a, b in zip(grads[:2], want[:2]):
            assert a.is_contiguous(memory_format=fmt)
            assert_close(a.cpu(), b, torch.float32)
        for a, b in zip(grads[2:], want[2:]):
            close_sums(a.cpu(), b)

    @pytest.mark.parametrize("cl", [False, True])
    @pytest.mark.parametrize(
        "mask", [(True, True, True, True), (True, False, False, True), (False, False, True, False)]
    )
    def test_opcheck_blend_cuda(self, cl, mask):
        x1, x2 = cpu_randn((2, 3, 5, 7), cl=cl).cuda(), cpu_randn((2, 3, 9, 13), seed=1).cuda()
        w1, w2 = torch.tensor(0.5, device="cuda"), torch.tensor(1.5, device="cuda", dtype=torch.float64)
        opcheck(EXT.resize_blend_forward.default, (x1, x2, w1, w2, [7, 10], True, None, None, cl, DEFAULT_FORMS))
        opcheck(
            EXT.resize_blend_forward.default, (x1, x2, w1, w2, [9, 13], False, [2.0, 2.0], None, cl, DEFAULT_FORMS)
        )
        g = cpu_randn((2, 3, 7, 10), seed=2).cuda()
        opcheck(
            EXT.resize_blend_backward.default,
            (g, x1, x2, w1, w2, [7, 10], True, None, None, *mask, cl, False, DEFAULT_FORMS),
        )

    def test_int64_index_path(self):
        # The test hook force_int64 takes the 64-bit path on small tensors: the same bits.
        x1, x2 = cpu_randn((2, 7, 9, 11)).cuda(), cpu_randn((2, 7, 17, 23), cl=True, seed=1).cuda()
        w = torch.tensor(0.6, device="cuda")
        g = cpu_randn((2, 7, 13, 14), seed=2).cuda()
        args = ([13, 14], True, None, None)
        want_f = EXT.resize_blend_forward(x1, x2, w, w, *args, True, DEFAULT_FORMS)
        want_b = EXT.resize_blend_backward(g, x1, x2, w, w, *args, True, True, True, True, False, True, DEFAULT_FORMS)
        int64 = KernelForms(force_int64=True).encode()
        assert torch.equal(EXT.resize_blend_forward(x1, x2, w, w, *args, True, int64), want_f)
        got_b = EXT.resize_blend_backward(g, x1, x2, w, w, *args, True, True, True, True, False, True, int64)
        for a, b in zip(got_b, want_b):
            assert torch.equal(a, b)

    def test_empty_batch_and_channels(self):
        for shape in [(0, 3, 8, 8), (2, 0, 8, 8)]:
            x = torch.randn(shape, device="cuda", requires_grad=True)
            w = torch.tensor(0.5, device="cuda", requires_grad=True)
            y = torch.randn(shape[0], shape[1], 4, 4, device="cuda", requires_grad=True)
            out = resizeops.resize_blend(y, x, w, 1.0, (6, 6), backend="cuda")
            assert out.shape == (shape[0], shape[1], 6, 6)

    def test_runs_on_the_current_stream(self):
        x1 = torch.randn(4, 16, 32, 24, device="cuda", requires_grad=True)
        x2 = torch.randn(4, 16, 64, 48, device="cuda", requires_grad=True)
        w = torch.tensor(0.3, device="cuda", requires_grad=True)
        g = torch.randn(4, 16, 48, 36, device="cuda")

        def run():
            out = resizeops.resize_blend(x1, x2, w, 1 - w, (48, 36), backend="cuda")
            return (out,) + torch.autograd.grad(out, (x1, x2, w), g)

        want = run()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            got = run()
        torch.cuda.current_stream().wait_stream(s)
        for a, b in zip(got, want):
            assert torch.equal(a, b)

    def test_default_backend_on_cuda_is_cuda(self):
        dev = torch.device("cuda")
        cuda = _dispatch.get_backend("cuda").kernels["resize_blend"]
        assert _dispatch.select("resize_blend", dev, None) is cuda
        # The gather backward is deterministic: still chosen (conftest restores the mode).
        torch.use_deterministic_algorithms(True)
        assert _dispatch.select("resize_blend", dev, None, for_backward=True) is cuda
