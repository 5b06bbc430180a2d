"""resizeops.shape_adaptor_maxpool on every backend: the Shape Adaptor max-pool op
(docs/SEMANTICS.md, shape_adaptor_maxpool).

``w1·R(maxpool2x2(x)) + w2·R(x)`` must equal the composition of the reference
ops, ``resize_blend(max_pool2d(x, 2), x, ...)``, forward and every gradient,
on every backend. One module for the op, in three parts:

1. The definition: the reference backend against that composition under autograd,
   the official cell weights, bad input. Not parametrised over backends.
2. Every kernel backend against the reference backend: the ``backend`` fixture is
   parametrised over ``cpu`` (the C++ CPU kernel), ``cuda_emulated`` (the CUDA
   kernels' per-element code run serially on the CPU, conftest.use_cuda_emulation),
   ``triton`` (marked ``triton``) and ``cuda`` (marked ``cuda``); each is skipped
   where it cannot run, and `-m triton` / `-m cuda` select them.
3. What only one backend needs, each in its own section: the CUDA gathers' tile and
   loop forms in the CPU emulation; ``TestTriton`` (marked ``triton``: on a GPU, or on
   the CPU under ``TRITON_INTERPRET=1 python -m pytest -m triton tests``; skipped
   elsewhere): what is particular to the Triton kernels
   (resizeops/triton_kernels/shape_adaptor.py): the pooled branch read in place (odd
   sizes, either branch passing through, long gather loops), the argmax recomputed in
   the backward (ties, NaN), the grad_w sums skipping unread pixels, the kernel entry
   points, the 64-bit index path; ``TestCuda`` (marked ``cuda``, skipped without a
   GPU): the CUDA kernels (csrc/cuda/shape_adaptor_maxpool.cu) against their
   emulation, opcheck on CUDA tensors, the 64-bit index path, a non-default stream,
   empty shapes, the default backend.

The backends' list and the one-backend sections' helpers come from
tests/test_resize_blend.py.
"""

import random

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
from test_resize_blend import (
    BACKENDS,
    close_sums,
    forms_inputs,
    interpreted,
    skip_unless_triton,
    tile_and_loop,
    weight_dtype,
)
from torch.library import opcheck

import resizeops
from resizeops.core import _dispatch
from resizeops.core.kernel_forms import KernelForms

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


# ============================================================================
# 1. The definition: the reference backend vs the composition
# ============================================================================


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


# ============================================================================
# 2. Every kernel backend against the reference backend
# ============================================================================


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
    c = 6 if interpreted(backend) else 20
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
    for c in (3,) if interpreted(backend) else (16, 35):
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
    c = 3 if interpreted(backend) else 40
    args = (torch.randn(3, c, 29, 31, device=dev), torch.tensor(0.3, device=dev), torch.tensor(0.9, device=dev))
    fn = lambda *a: resizeops.shape_adaptor_maxpool(*a, (21, 23), backend=backend)  # noqa: E731
    for a, b in zip(_run(fn, *args), _run(fn, *args)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("seed", range(2))
def test_backend_gradcheck_float64(backend, seed):
    if interpreted(backend):
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


# ============================================================================
# 3. What only one backend needs
# ============================================================================

# --- The CUDA kernels' CPU emulation only: the gathers' tile and loop forms ---------


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cuda_gather_tile_and_loop_forms_bit_identical(dtype, cl):
    """The CUDA shape_adaptor_maxpool gathers' two forms (blend_elements.h) in the serial
    emulation: the 4x4 tiles issue every load of a pixel at once and select afterwards,
    the loop loads what it uses; same sum, same order, so bit-identical results: down-
    and up-sampling, strong down-sampling, inf in grad_out. (resize_blend's:
    tests/test_resize_blend.py.)"""
    require_emulation(OP)
    ext = torch.ops.resizeops_ext
    t = forms_inputs(dtype, cl)
    wdt = torch.float64 if dtype == torch.float64 else torch.float32
    w1, w2 = torch.tensor(0.7, dtype=wdt), torch.tensor(-1.3, dtype=wdt)
    for shape, size in [((2, 3, 16, 14), (12, 11)), ((1, 2, 9, 7), (14, 20)), ((1, 2, 12, 12), (6, 6))]:
        x, g = t(*shape), t(shape[0], shape[1], *size, inf_every=5)
        tile, loop = tile_and_loop(lambda forms: ext._shape_adaptor_maxpool_backward_emulated(
            g, x, w1, w2, list(size), True, True, True, True, cl, forms))  # fmt: skip
        for name, a, b in zip(("grad_x", "grad_w1", "grad_w2"), tile, loop):
            assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()), (shape, name)


# --- Triton only ---------------------------------------------------------------
# On a GPU, or on the CPU under the Triton interpreter:
# ``TRITON_INTERPRET=1 python -m pytest -m triton tests``; skipped elsewhere. The
# cross-backend tests above run these kernels too; these cover what is particular to
# them. Shapes stay small: the interpreter runs every program in Python.

# grad_w: the kernels sum <Rᵀ(g), ·> per program then in float64, the reference
# Σ g·R(·) in the compute dtype: an absolute tolerance growing with the number of
# terms. Half types: both sides compute in float32 from the same rounded inputs.
TRITON_W_TOL = {torch.float64: 1e-13, torch.float32: 1e-6, torch.float16: 2e-6, torch.bfloat16: 2e-6}

# (shape, size, align_corners)
TRITON_CASES = [
    pytest.param((2, 3, 9, 11), (7, 8), True, id="odd-between-ac"),  # last row / column outside the pool
    pytest.param((2, 3, 9, 11), (7, 8), False, id="odd-between"),
    pytest.param((1, 2, 7, 10), (3, 5), False, id="pooled-passes"),  # pooled 3×5 = size
    pytest.param((1, 2, 6, 5), (6, 5), True, id="x-passes"),
    pytest.param((1, 1, 2, 3), (9, 7), False, id="pooled-1x1-strong-up"),  # long gather loops, C = 1
    pytest.param((1, 2, 2, 2), (1, 1), True, id="1x1"),  # both branches down to one pixel
    pytest.param((2, 2, 16, 13), (3, 2), False, id="strong-down"),  # most pixels unread
]


def _weights(dtype, v1=0.7, v2=-1.3):
    return (torch.tensor(v, dtype=weight_dtype(dtype), device=TRITON_DEV) for v in (v1, v2))


def _triton_run(backend, x, w1, w2, size, ac, g=None, wrt=(0, 1, 2)):
    """(out, grads of the inputs in ``wrt``); ``g`` defaults to a seeded random grad_out."""
    inputs = [t.detach().requires_grad_(k in wrt) for k, t in enumerate((x, w1, w2))]
    out = resizeops.shape_adaptor_maxpool(*inputs, size, ac, backend=backend)
    if g is None:
        g = seeded(out.shape, out.dtype, seed=1)
    grads = torch.autograd.grad(out, [inputs[k] for k in wrt], g) if wrt else ()
    return out, grads


def _triton_compare(x, w1, w2, size, ac, g=None, wrt=(0, 1, 2)):
    dt = x.dtype
    out, grads = _triton_run("triton", x, w1, w2, size, ac, g, wrt)
    ref, rgrads = _triton_run("reference", x, w1, w2, size, ac, g, wrt)
    assert out.shape == ref.shape and out.dtype == ref.dtype and out.stride() == ref.stride()
    assert_close(out, ref, dt, msg="forward")
    names = ("grad_x", "grad_w1", "grad_w2")
    for k, a, b in zip(wrt, grads, rgrads):
        assert a.dtype == b.dtype and a.shape == b.shape, names[k]
        if k == 0:
            assert a.stride() == b.stride(), names[k]
            assert_close(a, b, dt, msg=names[k])
        else:
            assert_close(a, b, dt, msg=names[k], atol=TRITON_W_TOL[dt] * max(x.numel(), 1), rtol=1e-5)
    return out, grads


class TestTriton:
    """The Triton shape_adaptor_maxpool kernels against the reference backend."""

    pytestmark = pytest.mark.triton

    @pytest.fixture(autouse=True)
    def _triton_runs_here(self):
        skip_unless_triton(OP)

    def test_triton_is_available_for_shape_adaptor_maxpool(self):
        (info,) = [b for b in resizeops.backends(TRITON_DEV, op=OP) if b.name == "triton"]
        assert info.available, info.reason
        assert OP in info.ops
        # The backward gathers (no atomics): declared deterministic.
        assert _dispatch.get_backend("triton").kernels[OP].deterministic_backward(TRITON_DEV)

    @pytest.mark.parametrize("shape,size,ac", TRITON_CASES)
    @pytest.mark.parametrize("dtype", TRITON_DTYPES, ids=str)
    def test_matches_reference(self, shape, size, ac, dtype):
        x = seeded(shape, dtype)
        out, _ = _triton_compare(x, *_weights(dtype), size, ac)
        assert out.shape == shape[:2] + tuple(size)

    @pytest.mark.parametrize("shape,size,ac", [TRITON_CASES[0], TRITON_CASES[4]])
    def test_forward_equals_blend_on_the_pooled_map(self, shape, size, ac):
        # The fused forward reads each pooled tap as the max of its window in place;
        # the arithmetic after that is resize_blend's, so it is bit-identical to the
        # blend kernel on the materialised pooled map.
        x = seeded(shape, torch.float32)
        w1, w2 = _weights(torch.float32)
        out = resizeops.shape_adaptor_maxpool(x, w1, w2, size, ac, backend="triton")
        want = resizeops.resize_blend(F.max_pool2d(x, 2), x, w1, w2, size, ac, backend="triton")
        assert torch.equal(out, want)

    @pytest.mark.parametrize("layout", ["channels_last", "sliced", "permuted", "sliced_cl"])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
    def test_layouts(self, layout, dtype):
        # x is read through its strides (no copy); the output and grad_x are
        # contiguous in x's memory format.
        a = seeded((2, 6, 9, 11), dtype)
        cl = torch.channels_last
        x = {
            "channels_last": lambda: a.contiguous(memory_format=cl),
            "sliced": lambda: a[:, ::2, 1:, ::2],
            "permuted": lambda: a.permute(0, 1, 3, 2),
            "sliced_cl": lambda: a.contiguous(memory_format=cl)[:, 1:5, 2:, 1:],
        }[layout]()
        out, grads = _triton_compare(x, *_weights(dtype, 0.4, 0.9), (6, 5), True)
        want = resizeops.reference.output_memory_format(x)
        assert out.is_contiguous(memory_format=want) and grads[0].is_contiguous(memory_format=want)

    @pytest.mark.parametrize("kind", ["transposed", "expanded"])
    def test_non_contiguous_grad_out(self, kind):
        x = seeded((2, 3, 9, 8), torch.float32)
        w1, w2 = _weights(torch.float32, 0.5, 1.5)
        size = (6, 7)
        if kind == "transposed":
            g = seeded((2, 3, 7, 6), torch.float32).transpose(2, 3)
        else:  # stride 0 on N and C: autograd's grad of out.sum()-like losses
            g = seeded((1, 1, 6, 7), torch.float32).expand(2, 3, 6, 7)
        assert not g.is_contiguous()
        got = _triton_run("triton", x, w1, w2, size, False, g)
        want = _triton_run("reference", x, w1, w2, size, False, g.contiguous())
        for name, a, b in zip(("grad_x", "grad_w1", "grad_w2"), got[1], want[1]):
            assert_close(a, b, atol=1e-4, rtol=1e-5, msg=name)

    def test_ties_go_to_the_first_maximum(self):
        # Integer data: most windows have tied maxima. The pooled branch's gradient
        # goes to the first in (0,0),(0,1),(1,0),(1,1) order, the argmax that the
        # backward recomputes from x, as max_pool2d's backward.
        x = torch.randint(0, 2, (2, 2, 7, 9), generator=torch.Generator().manual_seed(3)).double().to(TRITON_DEV)
        w1, w2 = _weights(torch.float64, 0.8, 0.0)  # w2 = 0: grad_x is the pooled branch's alone
        _triton_compare(x, w1, w2, (5, 6), True)
        ones = torch.ones(1, 1, 4, 4, dtype=torch.float64, device=TRITON_DEV)
        _, (gx, _, _) = _triton_run("triton", ones, w1, w2, (2, 2), True)
        assert torch.equal(gx[0, 0, ::2, ::2] != 0, torch.ones(2, 2, dtype=torch.bool, device=TRITON_DEV))
        assert int((gx != 0).sum()) == 4

    @pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's numpy: 0·inf
    def test_nan_wins_its_window(self):
        # A NaN wins its window, in value and in gradient (the last NaN when several
        # are NaN, as max_pool2d's index); grad_x does not read the NaN itself.
        x = seeded((1, 2, 6, 6), torch.float32)
        x[0, 0, 2, 3] = float("nan")
        x[0, 1, 0, 0] = float("nan")
        x[0, 1, 1, 1] = float("nan")  # same window as (0, 0): the gradient goes here
        x[0, 1, 4, 5] = float("inf")
        w1, w2 = _weights(torch.float32, 0.5, 0.0)
        got = _triton_run("triton", x, w1, w2, (4, 4), True, wrt=(0,))
        want = _triton_run("reference", x, w1, w2, (4, 4), True, wrt=(0,))
        assert torch.isnan(got[0]).any()
        assert torch.equal(torch.isnan(got[0]), torch.isnan(want[0]))
        assert_close(got[0], want[0])
        gx = got[1][0]
        assert torch.isfinite(gx).all()
        assert gx[0, 1, 1, 1] != 0 and gx[0, 1, 0, 0] == 0
        assert_close(gx, want[1][0])

    @pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's numpy: 0·inf
    def test_grad_w_skips_unread_pixels(self):
        # Down-sampling by more than 2 leaves pixels no output reads: an inf there
        # (the argmax of a pooled pixel R₁ does not read either) reaches neither the
        # output nor the weight gradients, in the kernels as in the reference.
        # W 16 → 3 (align_corners=False): R₂ reads x columns 2, 3, 7, 8, 12, 13; R₁
        # reads pooled columns 0, 1, 3, 4, 6, 7, so pooled column 2 (x columns 4, 5)
        # is read by neither.
        x = seeded((1, 2, 4, 16), torch.float32)
        x[0, 1, 1, 5] = float("inf")
        w1, w2 = _weights(torch.float32, 0.6, 0.4)
        out, grads = _triton_compare(x, w1, w2, (2, 3), False)
        assert torch.isfinite(out).all() and all(torch.isfinite(t).all() for t in grads)

    @pytest.mark.parametrize("wrt", [(0,), (1,), (2,), (1, 2), (0, 2)], ids=str)
    def test_only_the_requested_gradients(self, wrt):
        from resizeops.triton_kernels import shape_adaptor

        x = seeded((1, 2, 7, 9), torch.float64)
        w1, w2 = _weights(torch.float64, 0.25, -0.5)
        _triton_compare(x, w1, w2, (5, 6), False, wrt=wrt)
        # The kernel entry point computes only what the mask asks for.
        mask = [k in wrt for k in range(3)]
        g = seeded((1, 2, 5, 6), torch.float64, 1)
        grads = shape_adaptor.shape_adaptor_maxpool_backward(g, x, w1, w2, (5, 6), False, mask, False)
        assert [t is not None for t in grads] == mask

    def test_backward_is_deterministic(self):
        torch.use_deterministic_algorithms(True)  # the triton backward is allowed by name
        x = seeded((2, 3, 13, 11), torch.float32)
        w1, w2 = _weights(torch.float32, 0.3, 0.7)
        first = _triton_run("triton", x, w1, w2, (9, 8), False)[1]
        second = _triton_run("triton", x, w1, w2, (9, 8), False)[1]
        for a, b in zip(first, second):
            assert torch.equal(a, b)

    def test_empty_batch(self):
        # N = 0 is handled by the op before any kernel runs; the kernel entry points cope too.
        from resizeops.triton_kernels import shape_adaptor

        x = torch.randn(0, 3, 9, 8, device=TRITON_DEV)
        w = torch.tensor(1.0, device=TRITON_DEV)
        out = shape_adaptor.shape_adaptor_maxpool_forward(x, w, w, (6, 5), True, False)
        assert out.shape == (0, 3, 6, 5)
        g = torch.empty(0, 3, 6, 5, device=TRITON_DEV)
        gx, gw1, gw2 = shape_adaptor.shape_adaptor_maxpool_backward(g, x, w, w, (6, 5), True, [True] * 3, False)
        assert gx.shape == x.shape and float(gw1) == 0.0 and float(gw2) == 0.0

    def test_int64_indexing_path(self, monkeypatch):
        # The test hook force_int64 takes the 64-bit index path on small tensors.
        use_forms(monkeypatch, "triton", OP, KernelForms(force_int64=True))
        x = seeded((1, 3, 9, 7), torch.float32).contiguous(memory_format=torch.channels_last)
        _triton_compare(x, *_weights(torch.float32, 0.3, 0.6), (6, 8), False)

    def test_gradcheck_float64(self):
        # Tiny: gradcheck launches forwards per input element. Random data: no ties
        # within the finite-difference step.
        inputs = (
            seeded((1, 1, 5, 4), torch.float64).requires_grad_(True),
            torch.tensor(0.3, dtype=torch.float64, device=TRITON_DEV, requires_grad=True),
            torch.tensor(0.8, dtype=torch.float64, device=TRITON_DEV, requires_grad=True),
        )
        fn = lambda *a: resizeops.shape_adaptor_maxpool(*a, (3, 2), False, backend="triton")  # noqa: E731
        assert torch.autograd.gradcheck(fn, inputs)


# --- CUDA only (GPU) -------------------------------------------------------------
# Skipped without a GPU; `pytest -m cuda` selects them. The CUDA kernels against their
# serial CPU emulation, opcheck on CUDA tensors, the 64-bit index path, a non-default
# stream, empty shapes, large channel counts.


class TestCuda:
    """The CUDA shape_adaptor_maxpool kernels on a GPU."""

    pytestmark = CUDA_ONLY

    @pytest.fixture(autouse=True)
    def _needs_cuda_kernels(self):
        require_cuda_kernels()

    @pytest.mark.parametrize("form", ["tile", "loop"])
    @pytest.mark.parametrize("cl", [False, True])
    @pytest.mark.parametrize(
        "shape,size", [((2, 5, 13, 17), (9, 12)), ((1, 300, 9, 31), (6, 15)), ((2, 3, 2, 9), (1, 4))]
    )
    def test_shape_adaptor_cuda_matches_its_emulation(self, shape, size, cl, form):
        forms = KernelForms(gather=form).encode()
        x = cpu_randn(shape, cl=cl)
        w1, w2 = torch.tensor(0.7), torch.tensor(1.3)
        g = cpu_randn((shape[0], shape[1], *size), cl=cl, seed=2)
        got = EXT.shape_adaptor_maxpool_forward(x.cuda(), w1.cuda(), w2.cuda(), list(size), True, cl, forms).cpu()
        want_f = EXT._shape_adaptor_maxpool_forward_emulated(x, w1, w2, list(size), True, cl, forms)
        assert_close(got, want_f, torch.float32)
        grads = EXT.shape_adaptor_maxpool_backward(g.cuda(), x.cuda(), w1.cuda(), w2.cuda(), list(size), True,
                                                   True, True, True, cl, forms)  # fmt: skip
        want = EXT._shape_adaptor_maxpool_backward_emulated(g, x, w1, w2, list(size), True, True, True, True, cl, forms)
        assert_close(grads[0].cpu(), want[0], torch.float32)
        for a, b in zip(grads[1:], want[1:]):
            close_sums(a.cpu(), b)

    @pytest.mark.parametrize("cl", [False, True])
    @pytest.mark.parametrize("mask", [(True, True, True), (True, False, False), (False, True, False)])
    def test_opcheck_shape_adaptor_cuda(self, cl, mask):
        x = cpu_randn((2, 3, 9, 8), cl=cl).cuda()
        w1, w2 = torch.tensor(0.5, device="cuda"), torch.tensor(1.5, device="cuda")
        opcheck(EXT.shape_adaptor_maxpool_forward.default, (x, w1, w2, [5, 6], True, cl, DEFAULT_FORMS))
        g = cpu_randn((2, 3, 5, 6), seed=2).cuda()
        opcheck(EXT.shape_adaptor_maxpool_backward.default, (g, x, w1, w2, [5, 6], True, *mask, cl, DEFAULT_FORMS))

    def test_int64_index_path(self):
        # The test hook force_int64 takes the 64-bit path on small tensors: the same bits.
        x = cpu_randn((2, 7, 17, 23), cl=True, seed=1).cuda()
        w = torch.tensor(0.6, device="cuda")
        g = cpu_randn((2, 7, 13, 14), seed=2).cuda()
        want = EXT.shape_adaptor_maxpool_backward(g, x, w, w, [13, 14], True, True, True, True, True, DEFAULT_FORMS)
        int64 = KernelForms(force_int64=True).encode()
        got = EXT.shape_adaptor_maxpool_backward(g, x, w, w, [13, 14], True, True, True, True, True, int64)
        for a, b in zip(got, want):
            assert torch.equal(a, b)

    def test_empty_batch_and_channels(self):
        for shape in [(0, 3, 8, 8), (2, 0, 8, 8)]:
            x = torch.randn(shape, device="cuda", requires_grad=True)
            w = torch.tensor(0.5, device="cuda", requires_grad=True)
            out = resizeops.shape_adaptor_maxpool(x, w, 1.0, (6, 6), backend="cuda")
            gx, gw = torch.autograd.grad(out.sum(), (x, w))
            assert out.shape == (shape[0], shape[1], 6, 6) and gx.shape == x.shape and float(gw) == 0.0

    def test_runs_on_the_current_stream(self):
        x = torch.randn(4, 16, 64, 48, device="cuda", requires_grad=True)
        w = torch.tensor(0.3, device="cuda", requires_grad=True)
        g = torch.randn(4, 16, 48, 36, device="cuda")

        def run():
            out = resizeops.shape_adaptor_maxpool(x, w, 1 - w, (48, 36), backend="cuda")
            return (out,) + torch.autograd.grad(out, (x, w), g)

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
        cuda = _dispatch.get_backend("cuda").kernels[OP]
        assert _dispatch.select(OP, dev, None) is cuda
        # The gather backward is deterministic: still chosen (conftest restores the mode).
        torch.use_deterministic_algorithms(True)
        assert _dispatch.select(OP, dev, None, for_backward=True) is cuda
