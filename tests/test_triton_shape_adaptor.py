"""The Triton shape_adaptor_maxpool kernels (triton_kernels/shape_adaptor.py) against the reference
(docs/SEMANTICS.md, shape_adaptor_maxpool).

Runs on a GPU, or on the CPU under the Triton interpreter:
``TRITON_INTERPRET=1 python -m pytest -m triton tests``. Elsewhere the whole module
is skipped. The cross-backend tests of tests/test_shape_adaptor_maxpool.py run
these kernels too; this file covers what is particular to them: the pooled
branch read in place (odd sizes, either branch passing through, long gather
loops), the argmax recomputed in the backward (ties, NaN), the grad_w sums
skipping unread pixels, the kernel entry points, and the 64-bit index path.
Shapes stay small: the interpreter runs every program in Python.
"""

import os

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, use_forms

import resizeops
from resizeops.core import _dispatch
from resizeops.core.kernel_forms import KernelForms

pytestmark = pytest.mark.triton

pytest.importorskip("triton")
if not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")):
    pytest.skip("Triton needs a CUDA GPU, or TRITON_INTERPRET=1 for CPU tensors", allow_module_level=True)

OP = "shape_adaptor_maxpool"
DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")
_reason = _dispatch.get_backend("triton").not_supported_reason(OP, DEV)
if _reason:
    pytest.skip(f"triton backend cannot run {OP} on {DEV}: {_reason}", allow_module_level=True)

from resizeops.triton_kernels import shape_adaptor  # noqa: E402  (imports triton.jit kernels: after the skips)

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]

# grad_w: the kernels sum <Rᵀ(g), ·> per program then in float64, the reference
# Σ g·R(·) in the compute dtype: an absolute tolerance growing with the number of
# terms. Half types: both sides compute in float32 from the same rounded inputs.
W_TOL = {torch.float64: 1e-13, torch.float32: 1e-6, torch.float16: 2e-6, torch.bfloat16: 2e-6}

# (shape, size, align_corners)
CASES = [
    pytest.param((2, 3, 9, 11), (7, 8), True, id="odd-between-ac"),  # last row / column outside the pool
    pytest.param((2, 3, 9, 11), (7, 8), False, id="odd-between"),
    pytest.param((1, 2, 7, 10), (3, 5), False, id="pooled-passes"),  # pooled 3×5 = size
    pytest.param((1, 2, 6, 5), (6, 5), True, id="x-passes"),
    pytest.param((1, 1, 2, 3), (9, 7), False, id="pooled-1x1-strong-up"),  # long gather loops, C = 1
    pytest.param((1, 2, 2, 2), (1, 1), True, id="1x1"),  # both branches down to one pixel
    pytest.param((2, 2, 16, 13), (3, 2), False, id="strong-down"),  # most pixels unread
]


def _seeded(shape, dtype, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype).to(DEV)


def _w_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _weights(dtype, v1=0.7, v2=-1.3):
    return (torch.tensor(v, dtype=_w_dtype(dtype), device=DEV) for v in (v1, v2))


def _run(backend, x, w1, w2, size, ac, g=None, wrt=(0, 1, 2)):
    """(out, grads of the inputs in ``wrt``); ``g`` defaults to a seeded random grad_out."""
    inputs = [t.detach().requires_grad_(k in wrt) for k, t in enumerate((x, w1, w2))]
    out = resizeops.shape_adaptor_maxpool(*inputs, size, ac, backend=backend)
    if g is None:
        g = _seeded(out.shape, out.dtype, seed=1)
    grads = torch.autograd.grad(out, [inputs[k] for k in wrt], g) if wrt else ()
    return out, grads


def _compare(x, w1, w2, size, ac, g=None, wrt=(0, 1, 2)):
    dt = x.dtype
    out, grads = _run("triton", x, w1, w2, size, ac, g, wrt)
    ref, rgrads = _run("reference", x, w1, w2, size, ac, g, wrt)
    assert out.shape == ref.shape and out.dtype == ref.dtype and out.stride() == ref.stride()
    assert_close(out, ref, dt, msg="forward")
    names = ("grad_x", "grad_w1", "grad_w2")
    for k, a, b in zip(wrt, grads, rgrads):
        assert a.dtype == b.dtype and a.shape == b.shape, names[k]
        if k == 0:
            assert a.stride() == b.stride(), names[k]
            assert_close(a, b, dt, msg=names[k])
        else:
            assert_close(a, b, dt, msg=names[k], atol=W_TOL[dt] * max(x.numel(), 1), rtol=1e-5)
    return out, grads


def test_triton_is_available_for_shape_adaptor_maxpool():
    (info,) = [b for b in resizeops.backends(DEV, op=OP) if b.name == "triton"]
    assert info.available, info.reason
    assert OP in info.ops
    # The backward gathers (no atomics): declared deterministic.
    assert _dispatch.get_backend("triton").kernels[OP].deterministic_backward(DEV)


@pytest.mark.parametrize("shape,size,ac", CASES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_reference(shape, size, ac, dtype):
    x = _seeded(shape, dtype)
    out, _ = _compare(x, *_weights(dtype), size, ac)
    assert out.shape == shape[:2] + tuple(size)


@pytest.mark.parametrize("shape,size,ac", [CASES[0], CASES[4]])
def test_forward_equals_blend_on_the_pooled_map(shape, size, ac):
    # The fused forward reads each pooled tap as the max of its window in place;
    # the arithmetic after that is resize_blend's, so it is bit-identical to the
    # blend kernel on the materialised pooled map.
    x = _seeded(shape, torch.float32)
    w1, w2 = _weights(torch.float32)
    out = resizeops.shape_adaptor_maxpool(x, w1, w2, size, ac, backend="triton")
    want = resizeops.resize_blend(F.max_pool2d(x, 2), x, w1, w2, size, ac, backend="triton")
    assert torch.equal(out, want)


@pytest.mark.parametrize("layout", ["channels_last", "sliced", "permuted", "sliced_cl"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_layouts(layout, dtype):
    # x is read through its strides (no copy); the output and grad_x are
    # contiguous in x's memory format.
    a = _seeded((2, 6, 9, 11), dtype)
    cl = torch.channels_last
    x = {
        "channels_last": lambda: a.contiguous(memory_format=cl),
        "sliced": lambda: a[:, ::2, 1:, ::2],
        "permuted": lambda: a.permute(0, 1, 3, 2),
        "sliced_cl": lambda: a.contiguous(memory_format=cl)[:, 1:5, 2:, 1:],
    }[layout]()
    out, grads = _compare(x, *_weights(dtype, 0.4, 0.9), (6, 5), True)
    want = resizeops.reference.output_memory_format(x)
    assert out.is_contiguous(memory_format=want) and grads[0].is_contiguous(memory_format=want)


@pytest.mark.parametrize("kind", ["transposed", "expanded"])
def test_non_contiguous_grad_out(kind):
    x = _seeded((2, 3, 9, 8), torch.float32)
    w1, w2 = _weights(torch.float32, 0.5, 1.5)
    size = (6, 7)
    if kind == "transposed":
        g = _seeded((2, 3, 7, 6), torch.float32).transpose(2, 3)
    else:  # stride 0 on N and C: autograd's grad of out.sum()-like losses
        g = _seeded((1, 1, 6, 7), torch.float32).expand(2, 3, 6, 7)
    assert not g.is_contiguous()
    got = _run("triton", x, w1, w2, size, False, g)
    want = _run("reference", x, w1, w2, size, False, g.contiguous())
    for name, a, b in zip(("grad_x", "grad_w1", "grad_w2"), got[1], want[1]):
        assert_close(a, b, atol=1e-4, rtol=1e-5, msg=name)


def test_ties_go_to_the_first_maximum():
    # Integer data: most windows have tied maxima. The pooled branch's gradient
    # goes to the first in (0,0),(0,1),(1,0),(1,1) order, the argmax that the
    # backward recomputes from x, as max_pool2d's backward.
    x = torch.randint(0, 2, (2, 2, 7, 9), generator=torch.Generator().manual_seed(3)).double().to(DEV)
    w1, w2 = _weights(torch.float64, 0.8, 0.0)  # w2 = 0: grad_x is the pooled branch's alone
    _compare(x, w1, w2, (5, 6), True)
    ones = torch.ones(1, 1, 4, 4, dtype=torch.float64, device=DEV)
    _, (gx, _, _) = _run("triton", ones, w1, w2, (2, 2), True)
    assert torch.equal(gx[0, 0, ::2, ::2] != 0, torch.ones(2, 2, dtype=torch.bool, device=DEV))
    assert int((gx != 0).sum()) == 4


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's numpy: 0·inf
def test_nan_wins_its_window():
    # A NaN wins its window, in value and in gradient (the last NaN when several
    # are NaN, as max_pool2d's index); grad_x does not read the NaN itself.
    x = _seeded((1, 2, 6, 6), torch.float32)
    x[0, 0, 2, 3] = float("nan")
    x[0, 1, 0, 0] = float("nan")
    x[0, 1, 1, 1] = float("nan")  # same window as (0, 0): the gradient goes here
    x[0, 1, 4, 5] = float("inf")
    w1, w2 = _weights(torch.float32, 0.5, 0.0)
    got = _run("triton", x, w1, w2, (4, 4), True, wrt=(0,))
    want = _run("reference", x, w1, w2, (4, 4), True, wrt=(0,))
    assert torch.isnan(got[0]).any()
    assert torch.equal(torch.isnan(got[0]), torch.isnan(want[0]))
    assert_close(got[0], want[0])
    gx = got[1][0]
    assert torch.isfinite(gx).all()
    assert gx[0, 1, 1, 1] != 0 and gx[0, 1, 0, 0] == 0
    assert_close(gx, want[1][0])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's numpy: 0·inf
def test_grad_w_skips_unread_pixels():
    # Down-sampling by more than 2 leaves pixels no output reads: an inf there
    # (the argmax of a pooled pixel R₁ does not read either) reaches neither the
    # output nor the weight gradients, in the kernels as in the reference.
    # W 16 → 3 (align_corners=False): R₂ reads x columns 2, 3, 7, 8, 12, 13; R₁
    # reads pooled columns 0, 1, 3, 4, 6, 7, so pooled column 2 (x columns 4, 5)
    # is read by neither.
    x = _seeded((1, 2, 4, 16), torch.float32)
    x[0, 1, 1, 5] = float("inf")
    w1, w2 = _weights(torch.float32, 0.6, 0.4)
    out, grads = _compare(x, w1, w2, (2, 3), False)
    assert torch.isfinite(out).all() and all(torch.isfinite(t).all() for t in grads)


@pytest.mark.parametrize("wrt", [(0,), (1,), (2,), (1, 2), (0, 2)], ids=str)
def test_only_the_requested_gradients(wrt):
    x = _seeded((1, 2, 7, 9), torch.float64)
    w1, w2 = _weights(torch.float64, 0.25, -0.5)
    _compare(x, w1, w2, (5, 6), False, wrt=wrt)
    # The kernel entry point computes only what the mask asks for.
    mask = [k in wrt for k in range(3)]
    g = _seeded((1, 2, 5, 6), torch.float64, 1)
    grads = shape_adaptor.shape_adaptor_maxpool_backward(g, x, w1, w2, (5, 6), False, mask, False)
    assert [t is not None for t in grads] == mask


def test_backward_is_deterministic():
    torch.use_deterministic_algorithms(True)  # the triton backward is allowed by name
    x = _seeded((2, 3, 13, 11), torch.float32)
    w1, w2 = _weights(torch.float32, 0.3, 0.7)
    first = _run("triton", x, w1, w2, (9, 8), False)[1]
    second = _run("triton", x, w1, w2, (9, 8), False)[1]
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_empty_batch():
    # N = 0 is handled by the op before any kernel runs; the kernel entry points cope too.
    x = torch.randn(0, 3, 9, 8, device=DEV)
    w = torch.tensor(1.0, device=DEV)
    out = shape_adaptor.shape_adaptor_maxpool_forward(x, w, w, (6, 5), True, False)
    assert out.shape == (0, 3, 6, 5)
    g = torch.empty(0, 3, 6, 5, device=DEV)
    gx, gw1, gw2 = shape_adaptor.shape_adaptor_maxpool_backward(g, x, w, w, (6, 5), True, [True] * 3, False)
    assert gx.shape == x.shape and float(gw1) == 0.0 and float(gw2) == 0.0


def test_int64_indexing_path(monkeypatch):
    # The test hook force_int64 takes the 64-bit index path on small tensors.
    use_forms(monkeypatch, "triton", OP, KernelForms(force_int64=True))
    x = _seeded((1, 3, 9, 7), torch.float32).contiguous(memory_format=torch.channels_last)
    _compare(x, *_weights(torch.float32, 0.3, 0.6), (6, 8), False)


def test_gradcheck_float64():
    # Tiny: gradcheck launches forwards per input element. Random data: no ties
    # within the finite-difference step.
    inputs = (
        _seeded((1, 1, 5, 4), torch.float64).requires_grad_(True),
        torch.tensor(0.3, dtype=torch.float64, device=DEV, requires_grad=True),
        torch.tensor(0.8, dtype=torch.float64, device=DEV, requires_grad=True),
    )
    fn = lambda *a: resizeops.shape_adaptor_maxpool(*a, (3, 2), False, backend="triton")  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)
