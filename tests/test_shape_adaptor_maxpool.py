"""resizeops.shape_adaptor_maxpool: the Shape Adaptor max-pool op
(docs/SEMANTICS.md, shape_adaptor_maxpool).

``w1·R(maxpool2x2(x)) + w2·R(x)`` must equal the composition of the reference
ops, ``resize_blend(max_pool2d(x, 2), x, ...)``, forward and every gradient,
on every backend. The first part checks the reference backend against that
composition under autograd; the second compares every kernel backend with the
reference backend (skipped where a backend cannot run, marked for `-m triton`
/ `-m cuda`).
"""

import random

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, require_backend, use_cuda_emulation
from conftest import device_for_backend as _device_for

import resizeops
from resizeops.core import _dispatch

OP = "shape_adaptor_maxpool"


def _composition(x, w1, w2, size, ac=True):
    """What the op must equal: the two reference ops, under autograd."""
    return resizeops.resize_blend(F.max_pool2d(x, 2), x, w1, w2, size, ac, backend="reference")


def _run(fn, x, w1, w2, g=None):
    leaves = [t.detach().requires_grad_(True) for t in (x, w1, w2)]
    out = fn(*leaves)
    if g is None:
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(out)
    return (out,) + torch.autograd.grad(out, leaves, g)


# (shape, size, align_corners): odd and prime sizes (the pool floors), up- and
# down-sampling, H or W = 2 (pooled side 1), 1×1 outputs, output = input size
# (the full-resolution branch passes through), output = pooled size.
CASES = [
    ((2, 3, 16, 16), (12, 12), True),  # CIFAR VGG cell, s = 0.75
    ((1, 4, 9, 11), (7, 8), True),  # odd: the last row / column is never pooled
    ((2, 2, 13, 17), (13, 17), True),  # full-resolution branch passes through
    ((2, 2, 14, 10), (7, 5), True),  # pooled branch passes through
    ((1, 3, 7, 5), (11, 9), True),  # up-sampling both
    ((1, 2, 2, 2), (1, 1), True),  # pooled 1×1, output 1×1
    ((1, 2, 2, 9), (3, 4), False),  # H = 2
    ((2, 5, 23, 19), (17, 14), False),
    ((1, 1, 3, 3), (1, 5), True),
]
_rng = random.Random(31)
for _ in range(3):
    CASES.append(
        ((_rng.randint(1, 3), _rng.randint(1, 9), _rng.randint(2, 15), _rng.randint(2, 15)),
         (_rng.randint(1, 16), _rng.randint(1, 16)), _rng.random() < 0.5)  # fmt: skip
    )

W_TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def _check(got, want, dt):
    for name, a, b in zip(("forward", "grad_x"), got[:2], want[:2]):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert a.stride() == b.stride(), f"{name}: strides {a.stride()} vs {b.stride()}"
        assert_close(a, b, dt, msg=name)
    for name, a, b in zip(("grad_w1", "grad_w2"), got[2:], want[2:]):
        assert a.dtype == b.dtype and a.shape == b.shape == ()
        assert_close(a, b, msg=name, atol=W_TOL[dt] * (1.0 + float(b.abs())), rtol=W_TOL[dt])


# --- the reference backend vs the composition ---------------------------------


@pytest.mark.parametrize("shape,size,ac", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_reference_equals_composition(shape, size, ac, dtype):
    x = torch.randn(shape).to(dtype)
    w1, w2 = torch.tensor(0.6), torch.tensor(1.4)
    g = torch.randn(shape[0], shape[1], *size).to(dtype)
    got = _run(lambda *a: resizeops.shape_adaptor_maxpool(*a, size, ac, backend="reference"), x, w1, w2, g)
    # The op computes half types in float32 and rounds once; autograd of the
    # composition would round each branch's gradient to bfloat16 before the sum.
    # So the composition runs in float32 on the same values, rounded at the end.
    cdt = torch.float32 if dtype == torch.bfloat16 else dtype
    want = _run(lambda *a: _composition(*a, size, ac), x.to(cdt), w1, w2, g.to(cdt))
    want = (want[0].to(dtype), want[1].to(dtype)) + want[2:]
    _check(got, want, dtype)


def test_python_weights_and_channels_last():
    x = torch.randn(2, 6, 12, 10).contiguous(memory_format=torch.channels_last)
    out = resizeops.shape_adaptor_maxpool(x, 0.25, 1.75, (9, 8))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close(out, _composition(x, 0.25, 1.75, (9, 8)))


def test_official_cell_weights():
    # The official VGG cell: w1 = k(1 − σ), w2 = kσ with σ = sigmoid(α), k = 1 (plain) or 2 (residual).
    alpha = torch.tensor(-0.3466, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 4, 32, 32, dtype=torch.float64)
    for k in (1.0, 2.0):
        sig = torch.sigmoid(alpha)
        out = resizeops.shape_adaptor_maxpool(x, k * (1 - sig), k * sig, (23, 23))
        (ga,) = torch.autograd.grad(out.square().sum(), alpha)
        sig2 = torch.sigmoid(alpha)
        want = F.interpolate(F.max_pool2d(x, 2), (23, 23), mode="bilinear", align_corners=True) * k * (1 - sig2)
        want = want + F.interpolate(x, (23, 23), mode="bilinear", align_corners=True) * k * sig2
        (gw,) = torch.autograd.grad(want.square().sum(), alpha)
        assert_close(out, want)
        assert_close(ga, gw, rtol=1e-10, atol=1e-10)


def test_gradcheck_reference():
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    w1 = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    w2 = torch.tensor(-1.3, dtype=torch.float64, requires_grad=True)
    fn = lambda *a: resizeops.shape_adaptor_maxpool(*a, (7, 8), backend="reference")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w1, w2))


def test_opcheck_public_ops():
    from torch.library import opcheck

    x = torch.randn(2, 3, 9, 8).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    w1 = torch.tensor(0.5, requires_grad=True)
    w2 = torch.tensor(1.5)
    opcheck(torch.ops.resizeops.shape_adaptor_maxpool.default, (x, w1, w2, [5, 6], True, "reference"))
    g = torch.randn(2, 3, 5, 6)
    opcheck(
        torch.ops.resizeops._shape_adaptor_maxpool_backward.default,
        (g, x.detach(), w1.detach(), w2, [5, 6], True, "reference", [True, True, False]),
    )


def test_compile_fullgraph():
    x = torch.randn(2, 3, 10, 10, requires_grad=True)
    w = torch.tensor(0.3, requires_grad=True)
    fn = torch.compile(lambda x, w: resizeops.shape_adaptor_maxpool(x, 1 - w, w, (8, 8)), fullgraph=True)
    out = fn(x, w)
    assert_close(out, _composition(x, 1 - w, w, (8, 8)))
    out.sum().backward()
    assert x.grad is not None and w.grad is not None


@pytest.mark.parametrize(
    "args,exc,match",
    [
        ((torch.randn(1, 2, 1, 8), 0.5, 0.5, (3, 3)), ValueError, "`x` must have H ≥ 2 and W ≥ 2"),
        ((torch.randn(1, 2, 8, 1), 0.5, 0.5, (3, 3)), ValueError, "`x` must have H ≥ 2"),
        ((torch.randn(2, 8, 8), 0.5, 0.5, (3, 3)), ValueError, "`x` must be 4-D"),
        ((torch.randn(1, 2, 8, 8).int(), 0.5, 0.5, (3, 3)), TypeError, "`x` must be float16"),
        ((torch.randn(1, 2, 8, 8), torch.ones(2), 0.5, (3, 3)), ValueError, "`w1` must be a 0-d"),
        ((torch.randn(1, 2, 8, 8), 0.5, "a", (3, 3)), TypeError, "`w2` must be a float"),
        ((torch.randn(1, 2, 8, 8), 0.5, 0.5, (0, 3)), ValueError, "`size`"),
        ((torch.randn(1, 2, 8, 8), 0.5, 0.5, (3, 3), 1), TypeError, "`align_corners` must be a bool"),
    ],
)
def test_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        resizeops.shape_adaptor_maxpool(*args)


# --- every kernel backend vs the reference backend ------------------------------

BACKENDS = [
    pytest.param("cpu", id="cpu"),
    # The CUDA kernels' per-element code run serially on the CPU
    # (conftest.use_cuda_emulation): the GPU indexing and arithmetic without a GPU.
    pytest.param("cuda_emulated", id="cuda_emulated"),
    pytest.param("triton", id="triton", marks=pytest.mark.triton),
    pytest.param("cuda", id="cuda", marks=pytest.mark.cuda),
]


def _interpreted(backend):
    return backend == "triton" and _device_for(backend).type == "cpu"


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    if request.param == "cuda_emulated":
        return use_cuda_emulation(monkeypatch, OP)
    return require_backend(request.param, OP)


def _compare(backend, x, w1, w2, size, ac, dt=None):
    dt = dt or x.dtype
    got = _run(lambda *a: resizeops.shape_adaptor_maxpool(*a, size, ac, backend=backend), x, w1, w2)
    want = _run(lambda *a: resizeops.shape_adaptor_maxpool(*a, size, ac, backend="reference"), x, w1, w2)
    _check(got, want, dt)


@pytest.mark.parametrize("shape,size,ac", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_backend_matches_reference(backend, shape, size, ac, dtype):
    dev = _device_for(backend)
    x = torch.randn(shape, dtype=dtype, device=dev)
    w1, w2 = torch.tensor(0.7, dtype=dtype, device=dev), torch.tensor(-1.3, dtype=dtype, device=dev)
    _compare(backend, x, w1, w2, size, ac)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,size,ac", CASES[:6])
def test_backend_half_types(backend, shape, size, ac, dtype):
    dev = _device_for(backend)
    x = torch.randn(shape).to(dtype).to(dev)
    w1, w2 = torch.tensor(0.6, device=dev), torch.tensor(1.4, device=dev)
    _compare(backend, x, w1, w2, size, ac, dt=dtype)


@pytest.mark.parametrize("layout", ["channels_last", "sliced", "sliced_channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backend_layouts(backend, layout, dtype):
    dev = _device_for(backend)
    c = 6 if _interpreted(backend) else 20
    x = torch.randn(2, 2 * c, 19, 25).to(dtype).to(dev)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = x[:, ::2, 1:, :-2]
    else:
        x = x.contiguous(memory_format=torch.channels_last)[:, 1::2, 2:, 1:]
    w1, w2 = torch.tensor(0.25, device=dev), torch.tensor(0.75, device=dev)
    _compare(backend, x, w1, w2, (13, 14), True, dt=dtype)


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (4, 1)])
def test_backend_degenerate_outputs_have_the_canonical_strides(backend, size):
    """(N, C, 1, 1) and one-sided outputs of a channels_last x: torch.empty's channels_last
    strides on every backend and the reference."""
    dev = _device_for(backend)
    x = torch.randn(2, 3, 6, 7, device=dev).contiguous(memory_format=torch.channels_last)
    w1, w2 = torch.tensor(0.5, device=dev), torch.tensor(1.5, device=dev)
    want = torch.empty(2, 3, *size, memory_format=torch.channels_last).stride()
    for name in (backend, "reference"):
        assert resizeops.shape_adaptor_maxpool(x, w1, w2, size, backend=name).stride() == want, name
    _compare(backend, x, w1, w2, size, True)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_backend_full_channel_blocks(backend, dtype, channels_last):
    # C = 16 and 35: whole blocks of the CPU kernel's 16 channels (its unrolled
    # vector path) and a remainder. Strong down-sampling (the backward holds
    # several rows of each branch until a window's rows are all complete), odd H,
    # each branch passing through, up-sampling.
    dev = _device_for(backend)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for c in (3,) if _interpreted(backend) else (16, 35):
        for shape, size, ac in [
            ((1, c, 40, 9), (2, 3), False),
            ((1, c, 41, 12), (3, 2), True),
            ((2, c, 14, 10), (7, 5), True),
            ((1, c, 13, 17), (13, 17), True),
            ((1, c, 7, 5), (11, 9), False),
        ]:
            x = torch.randn(shape, dtype=dtype, device=dev).contiguous(memory_format=fmt)
            w1, w2 = torch.tensor(0.7, dtype=dtype, device=dev), torch.tensor(-1.3, dtype=dtype, device=dev)
            _compare(backend, x, w1, w2, size, ac)


def test_backend_ties_and_nan(backend):
    # Ties in a 2×2 window: the pooled branch's gradient goes to the first maximum
    # in (0,0),(0,1),(1,0),(1,1) order, as max_pool2d's; a NaN wins its window.
    dev = _device_for(backend)
    x = torch.randint(0, 3, (2, 3, 10, 9)).double().to(dev)
    w1, w2 = torch.tensor(0.8, dtype=torch.float64, device=dev), torch.tensor(0.2, dtype=torch.float64, device=dev)
    _compare(backend, x, w1, w2, (6, 7), True)
    x = torch.randn(1, 2, 8, 8, device=dev)
    x[0, 0, 2, 3] = float("nan")
    x[0, 1, 5, 4] = float("inf")
    w = torch.tensor(0.5, device=dev)
    got = resizeops.shape_adaptor_maxpool(x, w, w, (6, 6), backend=backend)
    want = resizeops.shape_adaptor_maxpool(x, w, w, (6, 6), backend="reference")
    assert torch.equal(torch.isnan(got), torch.isnan(want)) and torch.isnan(got).any()
    assert_close(got, want)


@pytest.mark.parametrize("mask", [(True, False, False), (False, True, False), (False, False, True)])
def test_backend_only_the_needed_gradients(backend, mask):
    dev = _device_for(backend)
    x, w1, w2 = torch.randn(2, 3, 9, 13, device=dev), torch.tensor(0.4, device=dev), torch.tensor(0.9, device=dev)

    def grads(b):
        leaves = [t.detach().requires_grad_(m) for t, m in zip((x, w1, w2), mask)]
        out = resizeops.shape_adaptor_maxpool(*leaves, (7, 10), backend=b)
        return torch.autograd.grad(out.sum(), [t for t in leaves if t.requires_grad])

    for a, b in zip(grads(backend), grads("reference")):
        assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_backend_empty_batch(backend):
    dev = _device_for(backend)
    x = torch.randn(0, 3, 9, 13, device=dev, requires_grad=True)
    w1 = torch.tensor(0.5, device=dev, requires_grad=True)
    out = resizeops.shape_adaptor_maxpool(x, w1, 1.0, (7, 10), backend=backend)
    assert out.shape == (0, 3, 7, 10)
    gx, gw = torch.autograd.grad(out.sum(), (x, w1))
    assert gx.shape == x.shape and float(gw) == 0.0


def test_backend_deterministic_bit_identical(backend):
    if not _dispatch.get_backend(backend).kernels[OP].deterministic_backward(_device_for(backend)):
        pytest.skip(f"{backend}'s backward is not deterministic: the dispatcher routes around it")
    torch.use_deterministic_algorithms(True)
    dev = _device_for(backend)
    c = 3 if _interpreted(backend) else 40
    args = (torch.randn(3, c, 29, 31, device=dev), torch.tensor(0.3, device=dev), torch.tensor(0.9, device=dev))
    fn = lambda *a: resizeops.shape_adaptor_maxpool(*a, (21, 23), backend=backend)  # noqa: E731
    for a, b in zip(_run(fn, *args), _run(fn, *args)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("seed", range(2))
def test_backend_gradcheck_float64(backend, seed):
    if _interpreted(backend):
        pytest.skip("minutes under the Triton interpreter; the small case below runs there")
    rng = random.Random(seed)
    dev = _device_for(backend)
    shape = (2, 3, rng.randint(2, 9), rng.randint(2, 9))
    size = (rng.randint(1, 8), rng.randint(1, 8))
    inputs = (
        torch.randn(shape, dtype=torch.float64, device=dev, requires_grad=True),
        torch.tensor(0.3, dtype=torch.float64, device=dev, requires_grad=True),
        torch.tensor(-0.8, dtype=torch.float64, device=dev, requires_grad=True),
    )
    ac = seed % 2 == 0
    assert torch.autograd.gradcheck(lambda *a: resizeops.shape_adaptor_maxpool(*a, size, ac, backend=backend), inputs)


def test_backend_gradcheck_small(backend):
    dev = _device_for(backend)
    inputs = (
        torch.randn(1, 2, 5, 4, dtype=torch.float64, device=dev, requires_grad=True),
        torch.tensor(0.3, dtype=torch.float64, device=dev, requires_grad=True),
        torch.tensor(-0.8, dtype=torch.float64, device=dev, requires_grad=True),
    )
    assert torch.autograd.gradcheck(lambda *a: resizeops.shape_adaptor_maxpool(*a, (3, 3), backend=backend), inputs)


@pytest.mark.parametrize("cl", [False, True])
def test_opcheck_extension_ops(backend, cl):
    if backend != "cpu":
        pytest.skip("the extension ops are checked on the CPU here")
    from torch.library import opcheck

    fmt = torch.channels_last if cl else torch.contiguous_format
    x = torch.randn(2, 3, 9, 12).contiguous(memory_format=fmt)  # odd H: a row outside every window
    w1, w2 = torch.tensor(0.5), torch.tensor(1.5)
    ext = torch.ops.resizeops_ext
    opcheck(ext.shape_adaptor_maxpool_forward.default, (x, w1, w2, [7, 10], True, cl, []))
    opcheck(ext.shape_adaptor_maxpool_forward.default, (x, w1, w2, [4, 6], False, cl, []))  # pooled branch passes
    g = torch.randn(2, 3, 7, 10)
    for mask in [(True, True, True), (False, True, False), (True, False, True), (False, False, True)]:
        opcheck(ext.shape_adaptor_maxpool_backward.default, (g, x, w1, w2, [7, 10], True, *mask, cl, []))
