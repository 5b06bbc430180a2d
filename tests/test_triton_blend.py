"""The Triton resize_blend kernels (triton_kernels/blend.py) against the reference backend
(docs/SEMANTICS.md, resize_blend and Backends).

Runs on a GPU, or on the CPU under the Triton interpreter:
``TRITON_INTERPRET=1 python -m pytest -m triton tests``. Elsewhere the whole module
is skipped. The interpreter runs every program in Python, so shapes stay small;
what matters is the awkward geometry (odd and prime sizes, 1×1, up- and
down-sampling at once, pass-through, scale + crop, copy axes) and the layouts.
"""

import math
import os

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, use_forms

import oracle
import resizeops
from resizeops.core import _dispatch
from resizeops.core.kernel_forms import KernelForms

pytestmark = pytest.mark.triton

pytest.importorskip("triton")
if not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")):
    pytest.skip("Triton needs a CUDA GPU, or TRITON_INTERPRET=1 for CPU tensors", allow_module_level=True)

DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")
_reason = _dispatch.get_backend("triton").not_supported_reason("resize_blend", DEV)
if _reason:
    pytest.skip(f"triton backend cannot run resize_blend on {DEV}: {_reason}", allow_module_level=True)

from resizeops.triton_kernels import blend  # noqa: E402  (imports triton.jit kernels: after the skips)

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]

# grad_w = Σ g·R(x) over every output: compared with an absolute tolerance that
# grows with the number of terms (the reference sums in the compute dtype, the
# kernels in per-program partials then float64). Half types: both sides compute in
# float32 from the same rounded inputs.
W_TOL = {torch.float64: 1e-13, torch.float32: 1e-6, torch.float16: 2e-6, torch.bfloat16: 2e-6}

# (shape1, shape2, size, align_corners, scales)
CASES = [
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


def _seeded(shape, dtype, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype).to(DEV)


def _w_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _run(backend, x1, x2, w1, w2, size, ac, scales, g=None, wrt=(0, 1, 2, 3)):
    """(out, grads of the inputs in ``wrt``); ``g`` defaults to a seeded random grad_out."""
    inputs = [t.detach().requires_grad_(k in wrt) for k, t in enumerate((x1, x2, w1, w2))]
    out = resizeops.resize_blend(*inputs, size, ac, scales, backend=backend)
    if g is None:
        g = _seeded(out.shape, out.dtype, seed=1)
    grads = torch.autograd.grad(out, [inputs[k] for k in wrt], g) if wrt else ()
    return out, grads


def _on_cpu(*tensors):
    return tuple(t.detach().cpu() for t in tensors)


def _compare(x1, x2, w1, w2, size, ac, scales, g=None, wrt=(0, 1, 2, 3)):
    dt = x1.dtype
    out, grads = _run("triton", x1, x2, w1, w2, size, ac, scales, g, wrt)
    ref, rgrads = _run("reference", x1, x2, w1, w2, size, ac, scales, g, wrt)
    assert out.shape == ref.shape and out.dtype == ref.dtype and out.stride() == ref.stride()
    assert_close(out, ref, dt, msg="forward")
    names = ("grad_x1", "grad_x2", "grad_w1", "grad_w2")
    for k, a, b in zip(wrt, grads, rgrads):
        assert a.dtype == b.dtype and a.shape == b.shape, names[k]
        if k < 2:
            assert a.stride() == b.stride(), names[k]
            assert_close(a, b, dt, msg=names[k])
        else:
            assert_close(a, b, dt, msg=names[k], atol=W_TOL[dt] * max(out.numel(), 1), rtol=1e-5)
    return out, grads


def test_triton_is_available_for_resize_blend():
    (info,) = [b for b in resizeops.backends(DEV, op="resize_blend") if b.name == "triton"]
    assert info.available, info.reason
    assert "resize_blend" in info.ops
    # The backward gathers (no atomics): declared deterministic.
    assert _dispatch.get_backend("triton").kernels["resize_blend"].deterministic_backward(DEV)


@pytest.mark.parametrize("s1,s2,size,ac,scales", CASES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_reference(s1, s2, size, ac, scales, dtype):
    if dtype in (torch.float16, torch.bfloat16) and (s1, size, ac) in _FULL_DTYPE_ONLY:
        pytest.skip("covered in float32/float64; half types run the other cases (interpreter time)")
    x1, x2 = _seeded(s1, dtype, 0), _seeded(s2, dtype, 2)
    w1 = torch.tensor(0.3, dtype=_w_dtype(dtype), device=DEV)
    w2 = torch.tensor(-1.2, dtype=_w_dtype(dtype), device=DEV)
    out, _ = _compare(x1, x2, w1, w2, size, ac, scales)
    assert out.shape == s1[:2] + tuple(size)


@pytest.mark.parametrize("s1,s2,size,ac,scales", [CASES[1], CASES[3], CASES[8]])
def test_matches_float64_oracle(s1, s2, size, ac, scales):
    # Independent of F.interpolate: the loop oracle written from docs/SEMANTICS.md, resize_blend.
    x1, x2 = _seeded(s1, torch.float64, 0), _seeded(s2, torch.float64, 2)
    w1, w2 = (torch.tensor(v, dtype=torch.float64, device=DEV) for v in (0.7, 1.1))
    out = resizeops.resize_blend(x1, x2, w1, w2, size, ac, scales, backend="triton")
    assert_close(out.cpu(), oracle.resize_blend(x1.cpu(), x2.cpu(), 0.7, 1.1, size, ac, scales))


@pytest.mark.parametrize("ac", [False, True])
def test_shape_adaptor_official_weights(ac):
    # Official Shape Adaptor blend: w1 = 2(1 − σ), w2 = 2σ (residual cell), x2 at full resolution.
    # The gradient reaches alpha_raw through both weights.
    x = _seeded((2, 4, 12, 12), torch.float32, 0)
    x_low = F.max_pool2d(x, 2)
    size = (int(12 * 0.7071), int(12 * 0.7071))
    grads = {}
    for b in ("triton", "reference"):
        alpha_raw = torch.tensor(-0.3466, device=DEV, requires_grad=True)
        xl = x_low.clone().requires_grad_(True)
        xf = x.clone().requires_grad_(True)
        sigma = torch.sigmoid(alpha_raw)
        out = resizeops.resize_blend(xl, xf, 2 * (1 - sigma), 2 * sigma, size, ac, backend=b)
        g = _seeded(out.shape, torch.float32, 1)
        grads[b] = (out,) + torch.autograd.grad(out, (xl, xf, alpha_raw), g)
    for name, a, r in zip(("forward", "grad_x_low", "grad_x", "grad_alpha"), grads["triton"], grads["reference"]):
        assert_close(a, r, msg=name, atol=1e-4 if name == "grad_alpha" else 1e-5)


@pytest.mark.parametrize("layout", ["channels_last_x1", "channels_last_both", "sliced", "permuted", "sliced_cl"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_layouts(layout, dtype):
    # Inputs are read through their strides (no copy); the output is channels_last
    # if either input is, and each grad_x is contiguous in its input's format.
    a = _seeded((2, 6, 7, 9), dtype, 0)
    b = _seeded((2, 6, 12, 11), dtype, 2)
    cl = torch.channels_last
    x1, x2 = {
        "channels_last_x1": lambda: (a.contiguous(memory_format=cl), b),
        "channels_last_both": lambda: (a.contiguous(memory_format=cl), b.contiguous(memory_format=cl)),
        "sliced": lambda: (a[:, ::2, 1:, ::2], b[:, 1::2, :, 1:]),
        "permuted": lambda: (a.permute(0, 1, 3, 2), b.permute(0, 1, 3, 2)),
        "sliced_cl": lambda: (a[:, 1:5, :, 1:], b.contiguous(memory_format=cl)[:, 1:5, 2:, 1:-1]),
    }[layout]()
    w1 = torch.tensor(0.4, device=DEV)
    w2 = torch.tensor(0.9, device=DEV)
    out, grads = _compare(x1, x2, w1, w2, (8, 5), True, None)
    want = resizeops.reference.output_memory_format(x1, x2)
    assert out.is_contiguous(memory_format=want)
    for xk, gk in zip((x1, x2), grads[:2]):
        assert gk.is_contiguous(memory_format=resizeops.reference.output_memory_format(xk))


@pytest.mark.parametrize("kind", ["transposed", "expanded"])
def test_non_contiguous_grad_out(kind):
    x1, x2 = _seeded((2, 3, 5, 6), torch.float32, 0), _seeded((2, 3, 10, 9), torch.float32, 2)
    w1, w2 = torch.tensor(0.5, device=DEV), torch.tensor(1.5, device=DEV)
    size = (7, 8)
    if kind == "transposed":
        g = _seeded((2, 3, 8, 7), torch.float32).transpose(2, 3)
    else:  # stride 0 on N and C: autograd's grad of out.sum()-like losses
        g = _seeded((1, 1, 7, 8), torch.float32).expand(2, 3, 7, 8)
    assert not g.is_contiguous()
    got = _run("triton", x1, x2, w1, w2, size, False, None, g)
    want = _run("reference", x1, x2, w1, w2, size, False, None, g.contiguous())
    assert_close(got[0], want[0], msg="forward")
    for name, a, b in zip(("grad_x1", "grad_x2", "grad_w1", "grad_w2"), got[1], want[1]):
        assert_close(a, b, atol=1e-4, rtol=1e-5, msg=name)


@pytest.mark.parametrize("wrt", [(0,), (1,), (2,), (3,), (0, 3), (1, 2)], ids=str)
def test_only_the_requested_gradients(wrt):
    x1, x2 = _seeded((1, 2, 5, 7), torch.float64, 0), _seeded((1, 2, 9, 4), torch.float64, 2)
    w1, w2 = (torch.tensor(v, dtype=torch.float64, device=DEV) for v in (0.25, -0.5))
    _compare(x1, x2, w1, w2, (6, 6), False, None, wrt=wrt)
    # The kernel entry point computes only what the mask asks for.
    mask = [k in wrt for k in range(4)]
    g = _seeded((1, 2, 6, 6), torch.float64, 1)
    grads = blend.resize_blend_backward(g, x1, x2, w1, w2, (6, 6), False, None, mask, (False, False, False))
    assert [t is not None for t in grads] == mask


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's numpy: 0·inf
def test_nan_and_inf_propagate_like_the_reference():
    # x1 is resized (a NaN reaches every output whose taps include it, weight 0
    # included; an axis whose size does not change is copied, so no leak along
    # it); x2 passes through (read directly: inf stays inf, not 0·inf = NaN).
    x1 = _seeded((1, 3, 5, 6), torch.float32, 0)
    x1[0, 1, 2, 3] = float("nan")
    x1[0, 2, 1, 1] = float("inf")
    x2 = _seeded((1, 3, 5, 9), torch.float32, 2)
    x2[0, 0, 4, 8] = float("inf")
    x2[0, 2, 0, 0] = float("nan")
    w1, w2 = torch.tensor(0.5, device=DEV), torch.tensor(2.0, device=DEV)
    # The reference on the CPU: ATen's CUDA kernel leaks the NaN along the unchanged
    # axis through a weight 0 (see test_copy_axis_and_float32_floor_match_aten).
    g = _seeded((1, 3, 5, 9), torch.float32, 1)
    got = _run("triton", x1, x2, w1, w2, (5, 9), False, None, g)
    got = (got[0].cpu(), _on_cpu(*got[1]))
    want = _run("reference", *_on_cpu(x1, x2, w1, w2), (5, 9), False, None, g.cpu())
    out, ref = got[0], want[0]
    assert torch.isnan(out[0, 1]).any() and torch.isinf(out[0, 0]).any()
    assert torch.equal(torch.isnan(out), torch.isnan(ref)) and torch.equal(torch.isinf(out), torch.isinf(ref))
    assert_close(out, ref)
    # grad_x does not read x: finite; grad_w sums g·R(x): NaN like the reference.
    for name, a, b in zip(("grad_x1", "grad_x2", "grad_w1", "grad_w2"), got[1], want[1]):
        assert torch.equal(torch.isnan(a), torch.isnan(b)), name
        assert_close(a, b, atol=1e-4, rtol=1e-5, msg=name)


def test_copy_axis_and_float32_floor_match_aten():
    # Two details of ATen's source index that math.h leaves out (see blend.py):
    # (1) an axis whose full interpolate size equals its input size is copied,
    #     even when the scale is not 1 (7 · 1.1 → 7 outputs);
    # (2) i0 = floorf(src): float64 coordinates are rounded to float32 before the
    #     floor, so src = 1 − 4.5e-9 reads pixel 1 with weight 1 (value 1000 exactly).
    # ATen's CPU kernel's rules, ours on every device: the reference runs on the CPU
    # (ATen's CUDA kernel differs in both, tests/test_backends_blend.py).
    x = torch.tensor([0.0, 1000.0, 0.0, 0.0, 0.0], dtype=torch.float64, device=DEV).reshape(1, 1, 1, 5)
    x = x.expand(1, 1, 2, 5).contiguous()
    s = 1 / (1 / 3 - 1e-9)
    other = torch.zeros(1, 1, 2, 15, dtype=torch.float64, device=DEV)
    one = torch.tensor(1.0, dtype=torch.float64, device=DEV)
    zero = torch.tensor(0.0, dtype=torch.float64, device=DEV)
    for scales in (((1.1, s), None), ((1.0, s), None)):
        out = resizeops.resize_blend(x, other, one, zero, (2, 15), False, scales, backend="triton").cpu()
        ref = resizeops.resize_blend(*_on_cpu(x, other, one, zero), (2, 15), False, scales, backend="reference")
        assert_close(out, ref)
        assert out[0, 0, 0, 4].item() == ref[0, 0, 0, 4].item() == 1000.0
    y = _seeded((1, 2, 7, 7), torch.float32, 3)
    y[0, 0, 3, 3] = float("nan")
    z = torch.zeros(1, 2, 7, 7, device=DEV)
    w = torch.tensor(1.0, device=DEV)
    g = _seeded((1, 2, 7, 7), torch.float32, 1)
    out, grads = _run("triton", y, z, w, w, (7, 7), False, ((1.1, 1.1), None), g)
    ref, rgrads = _run("reference", *_on_cpu(y, z, w, w), (7, 7), False, ((1.1, 1.1), None), g.cpu())
    assert torch.isnan(out[0, 0]).sum() == 1  # copied on both axes: the NaN stays one pixel
    for a, b in zip((out,) + grads, (ref,) + rgrads):
        assert_close(a.cpu(), b)


def test_fan_in_bound_covers_the_tables():
    # The gather loops over at most Axis.fan_in() outputs per input index; check the
    # bound against the real [lo, hi) ranges over many geometries (host reads: test only).
    import random

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
        x = torch.empty(1, 1, h_in, 3, device=DEV)
        x2 = torch.empty(1, 1, 2, 2, device=DEV)  # never passes through: the tables are computed
        plan = blend._Plan((x.shape[2:], x2.shape[2:]), (out, 3), ac, None if scale is None else ((scale, 1.0), None))
        taps, _ = blend._tables(plan, torch.float32, DEV)
        rows = blend._ranges(taps, 0, out, h_in).cpu()
        longest = int((rows[1] - rows[0]).max())
        assert longest <= plan.axes[0].fan_in(), (h_in, out, ac, scale, longest)
        # Every output is counted by both of its taps' ranges.
        i0, i1 = taps[0, :out].cpu(), taps[1, :out].cpu()
        for o in range(out):
            for t in {int(i0[o]), int(i1[o])}:
                assert rows[0, t] <= o < rows[1, t]


def test_backward_is_deterministic():
    torch.use_deterministic_algorithms(True)  # the triton backward is allowed by name
    x1, x2 = _seeded((2, 5, 6, 7), torch.float32, 0), _seeded((2, 5, 13, 11), torch.float32, 2)
    w1, w2 = torch.tensor(0.3, device=DEV), torch.tensor(0.7, device=DEV)
    first = _run("triton", x1, x2, w1, w2, (9, 9), False, None)[1]
    second = _run("triton", x1, x2, w1, w2, (9, 9), False, None)[1]
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_empty_batch():
    # N = 0 is handled by the op before any kernel runs; the kernel entry points cope too.
    x1 = torch.randn(0, 3, 4, 4, device=DEV, requires_grad=True)
    x2 = torch.randn(0, 3, 8, 8, device=DEV, requires_grad=True)
    w1 = torch.tensor(0.5, device=DEV, requires_grad=True)
    out = resizeops.resize_blend(x1, x2, w1, 0.5, (6, 6), backend="triton")
    assert out.shape == (0, 3, 6, 6)
    out.sum().backward()
    assert x1.grad.shape == x1.shape and float(w1.grad) == 0.0
    w = torch.tensor(1.0, device=DEV)
    direct = blend.resize_blend_forward(x1.detach(), x2.detach(), w, w, (6, 6), True, None, False)
    assert direct.shape == (0, 3, 6, 6)
    g = torch.empty(0, 3, 6, 6, device=DEV)
    grads = blend.resize_blend_backward(g, x1.detach(), x2.detach(), w, w, (6, 6), True, None, [True] * 4, [False] * 3)
    assert grads[0].shape == x1.shape and float(grads[2]) == 0.0 and float(grads[3]) == 0.0


def test_int64_indexing_path(monkeypatch):
    # The test hook force_int64 takes the 64-bit index path on small tensors.
    use_forms(monkeypatch, "triton", "resize_blend", KernelForms(force_int64=True))
    x1 = _seeded((1, 3, 5, 7), torch.float32, 0).contiguous(memory_format=torch.channels_last)
    x2 = _seeded((1, 3, 8, 9), torch.float32, 2)
    w1, w2 = torch.tensor(0.3, device=DEV), torch.tensor(0.6, device=DEV)
    _compare(x1, x2, w1, w2, (8, 6), False, ((2.0, 1.0), None))


def test_gradcheck_float64():
    # Tiny: gradcheck launches forwards per input element.
    inputs = (
        _seeded((1, 1, 2, 3), torch.float64, 0).requires_grad_(True),
        _seeded((1, 1, 4, 2), torch.float64, 2).requires_grad_(True),
        torch.tensor(0.3, dtype=torch.float64, device=DEV, requires_grad=True),
        torch.tensor(0.8, dtype=torch.float64, device=DEV, requires_grad=True),
    )
    assert torch.autograd.gradcheck(lambda *a: resizeops.resize_blend(*a, (3, 3), False, backend="triton"), inputs)
