"""The Triton dynopool2d kernels (triton_kernels/dynopool.py) against the reference backend
(docs/SEMANTICS.md, DynOPool and Backends).

Runs on a GPU, or on the CPU under the Triton interpreter:
``TRITON_INTERPRET=1 python -m pytest -m triton tests``. Elsewhere the whole module
is skipped. The interpreter runs every program in Python, so shapes stay small;
the scale range (r from 0.2 to 2.5) and the awkward sizes (odd, prime, 1, C = 40)
are what matter here, not the size.
"""

import os
import random
import warnings

import pytest
import torch
from conftest import assert_close

import oracle
import resizeops
from resizeops.core import _dispatch

pytestmark = pytest.mark.triton

pytest.importorskip("triton")
if not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")):
    pytest.skip("Triton needs a CUDA GPU, or TRITON_INTERPRET=1 for CPU tensors", allow_module_level=True)

DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")
_reason = _dispatch.get_backend("triton").not_supported_reason("dynopool2d", DEV)
if _reason:
    pytest.skip(f"triton backend cannot run dynopool2d on {DEV}: {_reason}", allow_module_level=True)

from resizeops.triton_kernels import dynopool  # noqa: E402  (imports triton.jit kernels: after the skips)

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]

# grad_alpha is a sum over every output (and, for half types, of products of
# rounded inputs), so it is compared relative to its largest entry:
#   float64: summation order only (per-program partials vs grid_sample's sums);
#   float32: ~1e-7 per term, random-walk growth over a few thousand terms;
#   float16 / bfloat16: both sides compute in float32 from the same rounded
#   inputs, but grad_out is rounded to the half type before either side sees it,
#   and a near-tie can pick another query: a looser bound.
ALPHA_TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def _cases():
    """(N, C, H, W, r_h, r_w): odd, prime, H or W = 1, C = 1, C = 40, r from 0.2 to 2.5 per axis."""
    fixed = [
        (2, 3, 13, 17, 0.5, 0.625),  # primes, the classic 2x2 position on H
        (1, 1, 1, 7, 2.5, 0.77),  # H = 1 (every row query clipped), C = 1
        (1, 2, 7, 1, 0.2, 2.5),  # W = 1, min_size bound on H (7·0.2 → 1 → 2)
        (1, 1, 1, 1, 2.5, 2.5),  # 1x1 up-sampled
        (2, 40, 5, 6, 0.45, 0.7),  # larger C: several programs
        (1, 3, 11, 5, 0.2, 0.33),  # strong down-sampling: queries skip pixels
        (1, 2, 4, 6, 2.5, 1.9),  # up-sampling: many queries per pixel (atomics collide)
    ]
    rng = random.Random(20240611)
    for _ in range(5):
        fixed.append(
            (rng.randint(1, 2), rng.choice([1, 2, 3, 5]), rng.randint(1, 11), rng.randint(1, 11),
             round(rng.uniform(0.2, 2.5), 3), round(rng.uniform(0.2, 2.5), 3))
        )  # fmt: skip
    return fixed


CASES = _cases()


def _seeded(shape, dtype, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype).to(DEV)


def _run(backend, x, alpha, g=None, out_size=None):
    """(out, grad_x, grad_alpha) of one call; ``g`` defaults to a seeded random grad_out."""
    x = x.detach().requires_grad_(True)
    alpha = alpha.detach().requires_grad_(True)
    out = resizeops.dynopool2d(x, alpha, out_size, backend=backend)
    if g is None:
        g = _seeded(out.shape, out.dtype, seed=1)
    gx, ga = torch.autograd.grad(out, (x, alpha), g)
    return out, gx, ga


def _compare(x, alpha, g=None, dtype=None):
    dt = dtype or x.dtype
    out, gx, ga = _run("triton", x, alpha, g)
    ref, rgx, rga = _run("reference", x, alpha, g)
    assert out.shape == ref.shape and out.dtype == ref.dtype and out.stride() == ref.stride()
    assert_close(out, ref, dt, msg="forward")
    assert gx.dtype == x.dtype and gx.stride() == rgx.stride()
    assert_close(gx, rgx, dt, msg="grad_x")
    assert ga.dtype == alpha.dtype and ga.shape == (2,)
    tol = ALPHA_TOL[dt]
    assert_close(ga, rga, dt, msg="grad_alpha", atol=tol * (float(rga.abs().max()) + 1.0), rtol=tol)
    return out, gx, ga


def test_triton_is_available_for_dynopool2d():
    (info,) = [b for b in resizeops.backends(DEV, op="dynopool2d") if b.name == "triton"]
    assert info.available, info.reason
    assert "dynopool2d" in info.ops


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n,c,h,w,rh,rw", CASES)
def test_matches_reference(n, c, h, w, rh, rw, dtype):
    # conftest.TOL per dtype for forward and grad_x: half types are computed in
    # float32 by both sides from the same rounded inputs and rounded once.
    x = _seeded((n, c, h, w), dtype)
    alpha_dtype = torch.float64 if dtype == torch.float64 else torch.float32  # float32 alpha beside half x
    alpha = torch.tensor([1 / rh, 1 / rw], dtype=alpha_dtype, device=DEV)
    out, _, _ = _compare(x, alpha)
    assert tuple(out.shape[-2:]) == oracle.dynopool_out_size(h, w, alpha.tolist())


@pytest.mark.parametrize("n,c,h,w,rh,rw", CASES[:4])
def test_matches_float64_oracle(n, c, h, w, rh, rw):
    # Independent of grid_sample: the loop oracle written from docs/SEMANTICS.md, DynOPool.
    x = _seeded((n, c, h, w), torch.float64)
    alpha = torch.tensor([1 / rh, 1 / rw], dtype=torch.float64, device=DEV)
    out, gx, _ = _run("triton", x, alpha)
    g = _seeded(out.shape, torch.float64, seed=1)
    expected, expected_gx = oracle.dynopool2d(x.cpu(), out.shape[-2:], grad_out=g.cpu())
    assert_close(out.cpu(), expected)
    assert_close(gx.cpu(), expected_gx)


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "sliced", "permuted", "sliced_channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_layouts(layout, dtype):
    # x is read through its strides (no copy); the output and grad_x are
    # contiguous in x's memory format, the same strides as the reference's.
    base = _seeded((2, 12, 9, 14), dtype)
    x = {
        "nchw": lambda: base,
        "channels_last": lambda: base.contiguous(memory_format=torch.channels_last),
        "sliced": lambda: base[:, ::2, 1:, ::3],
        "permuted": lambda: base.permute(0, 1, 3, 2),
        "sliced_channels_last": lambda: base.contiguous(memory_format=torch.channels_last)[:, 1:11, :, 2:],
    }[layout]()
    alpha = torch.tensor([1.9, 1.45], device=DEV)
    out, gx, _ = _compare(x, alpha, dtype=dtype)
    fmt = torch.channels_last if "channels_last" in layout else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt) and gx.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("kind", ["transposed", "sliced", "expanded"])
def test_non_contiguous_grad_out(kind):
    x = _seeded((2, 3, 12, 10), torch.float32)
    alpha = torch.tensor([2.0, 1.6], device=DEV)
    n, c, ho, wo = resizeops.dynopool2d(x, alpha, backend="reference").shape
    if kind == "transposed":
        g = _seeded((n, c, wo, ho), torch.float32).transpose(2, 3)
    elif kind == "sliced":
        g = _seeded((n, 2 * c, ho, 2 * wo), torch.float32)[:, ::2, :, 1::2]
    else:  # stride 0 on N and C: autograd's grad of out.sum()-like losses
        g = _seeded((1, 1, ho, wo), torch.float32).expand(n, c, ho, wo)
    assert not g.is_contiguous()
    got = _run("triton", x, alpha, g)
    want = _run("reference", x, alpha, g.contiguous())
    for name, a, b in zip(("forward", "grad_x", "grad_alpha"), got, want):
        assert_close(a, b, atol=1e-4, rtol=1e-4, msg=name)


def test_nan_propagates():
    x = _seeded((1, 3, 8, 9), torch.float32)
    x[0, 1, 3, 4] = float("nan")
    alpha = torch.tensor([1.6, 1.3], device=DEV)
    out, gx, ga = _run("triton", x, alpha)
    ref, rgx, rga = _run("reference", x, alpha)
    assert torch.isnan(out[0, 1]).any() and not torch.isnan(out[0, 0]).any()
    assert torch.equal(torch.isnan(out), torch.isnan(ref))
    assert_close(out, ref)
    # The NaN query wins the max, so the gradient goes to its taps: finite values.
    assert_close(gx, rgx)
    assert torch.isnan(ga).any() and torch.equal(torch.isnan(ga), torch.isnan(rga))


@pytest.mark.parametrize("value,alpha_w", [(0.0, 1.3), (1.0, 2.0)])
def test_ties_go_to_the_first_query(value, alpha_w):
    # A constant plane where all four queries of a cell tie exactly, whatever the
    # rounding (FMA contraction included): value 0, or value 1 with every query on a
    # pixel centre (H = 2·Ho, W = 2·Wo: integer source coordinates). The whole
    # gradient must follow query (0,0), as max_pool2d does. Checked against the
    # loop oracle and the reference.
    x = torch.full((1, 2, 8, 10), value, dtype=torch.float64, device=DEV)
    alpha = torch.tensor([2.0, alpha_w], dtype=torch.float64, device=DEV)
    out, gx, _ = _run("triton", x, alpha)
    g = _seeded(out.shape, torch.float64, seed=1)
    expected, expected_gx = oracle.dynopool2d(x.cpu(), out.shape[-2:], grad_out=g.cpu())
    assert_close(out.cpu(), expected)
    assert_close(gx.cpu(), expected_gx)
    _, rgx, _ = _run("reference", x, alpha)
    assert_close(gx, rgx)


def test_only_the_needed_gradients():
    x = _seeded((2, 3, 9, 9), torch.float32)
    alpha = torch.tensor([1.5, 2.5], device=DEV)
    a = alpha.clone().requires_grad_(True)
    (ga,) = torch.autograd.grad(resizeops.dynopool2d(x, a, backend="triton").sum(), a)
    (rga,) = torch.autograd.grad(resizeops.dynopool2d(x, a, backend="reference").sum(), a)
    assert_close(ga, rga, atol=1e-4 * (float(rga.abs().max()) + 1), rtol=1e-4)
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(resizeops.dynopool2d(xg, alpha, backend="triton").sum(), xg)
    (rgx,) = torch.autograd.grad(resizeops.dynopool2d(xg, alpha, backend="reference").sum(), xg)
    assert_close(gx, rgx)
    # The kernel entry points skip what is not asked for.
    g = torch.ones(2, 3, 6, 4, device=DEV)
    gx_only = dynopool.dynopool2d_backward(g, x, (6, 4), False, need_x=True, need_size=False)
    size_only = dynopool.dynopool2d_backward(g, x, (6, 4), False, need_x=False, need_size=True)
    assert gx_only[1] is None and size_only[0] is None
    assert size_only[1].dtype == torch.float64 and size_only[1].shape == (2,)


def test_size_gradient_is_deterministic():
    # grad_x uses atomics, but the size gradients come from per-program partials
    # summed in a fixed order: bit-identical run to run, on the GPU too.
    x = _seeded((2, 40, 7, 6), torch.float32)
    alpha = torch.tensor([0.8, 1.3], device=DEV)
    first = _run("triton", x, alpha)[2]
    second = _run("triton", x, alpha)[2]
    assert torch.equal(first, second)


def test_empty_batch():
    # N = 0 is handled by the op before any kernel runs.
    x = torch.randn(0, 3, 8, 8, device=DEV, requires_grad=True)
    alpha = torch.tensor([2.0, 1.6], device=DEV, requires_grad=True)
    out = resizeops.dynopool2d(x, alpha, backend="triton")
    assert out.shape == (0, 3, 4, 5)
    out.sum().backward()
    assert x.grad.shape == x.shape and torch.equal(alpha.grad, torch.zeros(2, device=DEV))


def test_deterministic_mode_refuses_the_triton_backward():
    # grad_x is scattered with atomics: the backend declares its backward
    # non-deterministic, so asking for it by name under deterministic algorithms
    # raises (the forward is fine), warns under warn_only, and automatic selection
    # routes around it.
    assert not _dispatch.get_backend("triton").kernels["dynopool2d"].deterministic_backward(DEV)
    x = _seeded((1, 2, 6, 7), torch.float32).requires_grad_(True)
    alpha = torch.tensor([1.5, 1.5], device=DEV)
    torch.use_deterministic_algorithms(True)
    out = resizeops.dynopool2d(x, alpha, backend="triton")
    with pytest.raises(RuntimeError, match="backend 'triton' .* not deterministic"):
        out.sum().backward()
    torch.use_deterministic_algorithms(True, warn_only=True)
    with pytest.warns(UserWarning, match="not deterministic"):
        resizeops.dynopool2d(x, alpha, backend="triton").sum().backward()
    if DEV.type == "cpu":
        torch.use_deterministic_algorithms(True)
        chosen = _dispatch.select("dynopool2d", DEV, None, for_backward=True)
        assert chosen is not _dispatch.get_backend("triton").kernels["dynopool2d"]


def test_gradcheck_x_float64():
    # Tiny: gradcheck launches one forward per input element.
    x = _seeded((1, 2, 3, 4), torch.float64).requires_grad_(True)
    alpha = torch.tensor([0.7, 1.6], dtype=torch.float64, device=DEV)
    assert torch.autograd.gradcheck(lambda t: resizeops.dynopool2d(t, alpha, backend="triton"), (x,))


def test_torch_compile_fullgraph_with_cached_size():
    # The public op is a torch.library custom op with a fake kernel: with the size
    # cached (out_size) there is no host read of alpha and no graph break.
    torch._dynamo.reset()
    x = _seeded((2, 3, 11, 9), torch.float32)
    alpha = torch.tensor([1.7, 0.9], device=DEV)
    size = resizeops.dynopool2d_output_size((11, 9), alpha.tolist())

    def f(x, alpha):
        return resizeops.dynopool2d(x, alpha, out_size=size, backend="triton") * 2.0

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xs, as_ = x.clone().requires_grad_(True), alpha.clone().requires_grad_(True)
        out = compiled(xs, as_)
        out.sum().backward()
    xe, ae = x.clone().requires_grad_(True), alpha.clone().requires_grad_(True)
    ref = resizeops.dynopool2d(xe, ae, out_size=size, backend="reference") * 2.0
    ref.sum().backward()
    assert_close(out, ref)
    assert_close(xs.grad, xe.grad)
    assert_close(as_.grad, ae.grad, atol=1e-4 * (float(ae.grad.abs().max()) + 1), rtol=1e-4)


@pytest.mark.experimental
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_rows_forward_matches_the_flat_forward(dtype):
    """The NCHW forward's 2-D tile kernel (the experimental ``rows=True``, variant
    "triton-rows") does the flat kernel's arithmetic per element, so the outputs are
    bit-identical: tiles cut by the edges (Ho, Wo not multiples of the tile), narrow and
    wide outputs (both tile widths), H or W = 1, sliced and permuted inputs, NaN and
    inf, several planes; and through the dispatcher, backend="triton-rows"."""
    cases = [((2, 3, 13, 17), (7, 10)), ((1, 2, 1, 40), (3, 21)), ((2, 5, 9, 1), (5, 2)),
             ((1, 1, 33, 70), (40, 35)), ((3, 4, 6, 6), (12, 13))]  # fmt: skip
    for k, (shape, out) in enumerate(cases):
        x = _seeded(shape, dtype, seed=k)
        x.view(-1)[::13] = float("nan")
        x.view(-1)[5::17] = float("inf")
        views = [x, x.transpose(2, 3).contiguous().transpose(2, 3), x[:, :, ::1, 1:] if shape[3] > 1 else x]
        for v in views:
            flat = dynopool.dynopool2d_forward(v, out, False)
            rows = dynopool.dynopool2d_forward(v, out, False, rows=True)
            assert rows.stride() == flat.stride()
            assert torch.equal(rows.isnan(), flat.isnan()), (shape, out)
            assert torch.equal(rows.nan_to_num(), flat.nan_to_num()), (shape, out)
    # channels_last outputs keep the flat kernel.
    xc = _seeded((1, 3, 8, 8), dtype).contiguous(memory_format=torch.channels_last)
    assert dynopool.dynopool2d_forward(xc, (4, 5), True, rows=True).is_contiguous(memory_format=torch.channels_last)
    # The variant: the rows forward through the op, the triton backward.
    x = _seeded((2, 3, 13, 17), dtype).requires_grad_(True)
    alpha = torch.tensor([1.7, 1.4], device=DEV)
    got = resizeops.dynopool2d(x, alpha, backend="triton-rows")
    want = resizeops.dynopool2d(x, alpha, backend="triton")
    assert torch.equal(got, want)
    (gx,) = torch.autograd.grad(got.sum(), x)
    (want_gx,) = torch.autograd.grad(want.sum(), x)
    assert_close(gx, want_gx, dtype)


@pytest.mark.experimental
@pytest.mark.parametrize("rows", [False, True], ids=["flat", "rows"])
def test_forward_with_8_warps_matches_4(rows):
    """The experimental ``warps=8`` (variant "triton-w8") launches the forwards with 8
    warps per program: the same per-element arithmetic, so the same bits (on a GPU the
    elements map to other threads; the interpreter runs the program as a whole either
    way). Both layouts (rows: NCHW only)."""
    for k, (shape, out) in enumerate([((2, 3, 13, 17), (7, 10)), ((1, 2, 1, 40), (3, 21))]):
        for cl in (False, True) if not rows else (False,):
            x = _seeded(shape, torch.float32, seed=k)
            x = x.contiguous(memory_format=torch.channels_last) if cl else x
            four = dynopool.dynopool2d_forward(x, out, cl, rows=rows)
            eight = dynopool.dynopool2d_forward(x, out, cl, rows=rows, warps=8)
            assert eight.stride() == four.stride() and torch.equal(eight, four), (shape, out, cl)
