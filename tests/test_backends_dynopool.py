"""Every kernel backend of dynopool2d against the reference backend (docs/SEMANTICS.md, DynOPool).

Parametrised over the backends; each is skipped where it cannot run (the CPU
kernel needs the compiled extension, Triton a GPU or TRITON_INTERPRET=1, CUDA a
GPU), and marked so that `-m triton` / `-m cuda` select them.
"""

import dataclasses
import os
import random

import pytest
import torch
from conftest import assert_close, require_backend, use_cuda_emulation, use_forms
from conftest import device_for_backend as _device_for

import resizeops
from resizeops.core import _dispatch
from resizeops.core.kernel_forms import KernelForms

# The CUDA kernels' per-element code run serially on the CPU (conftest.use_cuda_emulation),
# with these kernel forms: the GPU indexing and arithmetic, checked without a GPU.
# Small tile caps (the test hooks) make these small images span many tiles, partial
# ones at the borders included.
_SMALL_TILES = dict(fused_tile=(2, 4), forward_tile=(2, 4))
EMULATED = {
    # The defaults: grad_x scattered for float32/float64, gathered in 16-bit types.
    "cuda_emulated": KernelForms(),
    # The fixed-order gather (the deterministic mode's grad_x), in 3x3 tiles and as a loop.
    "cuda_emulated_tile": KernelForms(gather="tile", grad_x="gather"),
    "cuda_emulated_loop": KernelForms(gather="loop", grad_x="gather"),
    # Experimental forms (kernel_forms.py): the lanes form (4 channels per thread, 2 in
    # float64) with the gather and with the scatter; the fused backward (in channels_last,
    # blocks of 8, 4 or 1 channels as C allows), also with phase A's lanes form; the
    # forward's row form (NCHW); the separable forward (NCHW); both separable forms.
    "cuda_emulated_lanes": KernelForms(gather="tile", grad_x="gather", lanes=4),
    "cuda_emulated_lanes_scatter": KernelForms(grad_x="scatter", lanes=4),
    "cuda_emulated_fused": KernelForms(grad_x="fused", **_SMALL_TILES),
    "cuda_emulated_fused_lanes": KernelForms(grad_x="fused", lanes=4, **_SMALL_TILES),
    "cuda_emulated_rows": KernelForms(forward="rows"),
    "cuda_emulated_separable": KernelForms(forward="separable", **_SMALL_TILES),
    "cuda_emulated_fused_separable": KernelForms(
        forward="separable", grad_x="fused", fused_winners="separable", **_SMALL_TILES
    ),
}
_EXPERIMENTAL = [name for name, f in EMULATED.items() if f.lanes != 1 or f.grad_x == "fused" or f.forward != "cell"]

BACKENDS = [
    pytest.param("cpu", id="cpu"),
    *(pytest.param(name, id=name, marks=[pytest.mark.experimental] if name in _EXPERIMENTAL else [])
      for name in EMULATED),
    pytest.param("triton", id="triton", marks=pytest.mark.triton),
    pytest.param("cuda", id="cuda", marks=pytest.mark.cuda),
]  # fmt: skip


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    name = request.param
    if name in EMULATED:
        return use_cuda_emulation(monkeypatch, "dynopool2d", EMULATED[name])
    return require_backend(name, "dynopool2d")


def _cases():
    """(N, C, H, W, r_h, r_w): odd, prime, H or W = 1, C = 1, larger C, r from 0.2 to 2.5."""
    fixed = [
        (2, 3, 8, 8, 0.5, 0.5),
        (2, 3, 13, 17, 0.5, 0.625),
        (1, 1, 1, 7, 0.77, 1.4),
        (1, 2, 7, 1, 2.5, 0.6),
        (3, 1, 11, 5, 0.2, 0.33),
        (2, 40, 9, 12, 0.45, 0.7),
        (1, 5, 2, 3, 1.0, 1.0),
    ]
    rng = random.Random(7)
    for _ in range(5):
        fixed.append(
            (rng.randint(1, 3), rng.randint(1, 37), rng.randint(1, 29), rng.randint(1, 29),
             round(rng.uniform(0.2, 2.5), 3), round(rng.uniform(0.2, 2.5), 3))
        )
    return fixed


CASES = _cases()


def _grads(x, alpha, backend, g=None):
    x = x.detach().requires_grad_(True)
    alpha = alpha.detach().requires_grad_(True)
    out = resizeops.dynopool2d(x, alpha, backend=backend)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out) if g is None else g
    gx, ga = torch.autograd.grad(out, (x, alpha), g)
    return out, gx, ga


def _compare(backend, x, alpha, dtype_for_tol=None):
    out, gx, ga = _grads(x, alpha, backend)
    ref, rgx, rga = _grads(x, alpha, "reference", g=None)
    dt = dtype_for_tol or x.dtype
    assert out.shape == ref.shape and out.dtype == ref.dtype and out.stride() == ref.stride()
    assert_close(out, ref, dt, msg="forward")
    assert_close(gx, rgx, dt, msg="grad_x")
    assert gx.stride() == rgx.stride()
    # grad_alpha is a sum over every output: compare relative to its magnitude.
    scale = float(rga.abs().max()) + 1.0
    tol = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dt]
    assert_close(ga, rga, dt, msg="grad_alpha", atol=tol * scale, rtol=tol)


@pytest.mark.parametrize("n,c,h,w,rh,rw", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_reference(backend, n, c, h, w, rh, rw, dtype):
    dev = _device_for(backend)
    x = torch.randn(n, c, h, w, dtype=dtype).to(dev)
    alpha = torch.tensor([1 / rh, 1 / rw], dtype=dtype, device=dev)
    _compare(backend, x, alpha)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,c,h,w,rh,rw", CASES[:7])
def test_half_types(backend, n, c, h, w, rh, rw, dtype):
    # Both sides compute in float32 from the same half inputs and round once;
    # see conftest.TOL. alpha stays float32, as under mixed precision.
    dev = _device_for(backend)
    x = torch.randn(n, c, h, w).to(dtype).to(dev)
    alpha = torch.tensor([1 / rh, 1 / rw], device=dev)
    _compare(backend, x, alpha, dtype_for_tol=dtype)


@pytest.mark.parametrize("layout", ["channels_last", "sliced", "permuted", "sliced_channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_layouts(backend, layout, dtype):
    dev = _device_for(backend)
    base = torch.randn(2, 36, 15, 22).to(dtype).to(dev)
    if layout == "channels_last":
        x = base.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = base[:, ::2, 1:, ::2]
    elif layout == "permuted":
        x = base.permute(0, 1, 3, 2)
    else:
        x = base.contiguous(memory_format=torch.channels_last)[:, 1:35, :, 3:]
    alpha = torch.tensor([1.9, 1.45], device=dev)
    _compare(backend, x, alpha, dtype_for_tol=dtype)


@pytest.mark.parametrize("out_size", [(1, 1), (1, 5), (4, 1)])
def test_degenerate_outputs_have_the_canonical_strides(backend, out_size):
    """An (N, C, 1, 1) output (or one side 1) of a channels_last x has the strides of
    torch.empty(..., memory_format=torch.channels_last) on every backend and the reference
    (whose .contiguous() kept (3, 1, 1, 1): such a tensor is contiguous in both formats)."""
    dev = _device_for(backend)
    x = torch.randn(2, 3, 8, 10, device=dev).contiguous(memory_format=torch.channels_last)
    alpha = torch.tensor([8 / out_size[0], 10 / out_size[1]], device=dev)
    want = torch.empty(2, 3, *out_size, memory_format=torch.channels_last).stride()
    for name in (backend, "reference"):
        assert resizeops.dynopool2d(x, alpha, out_size, min_size=1, backend=name).stride() == want, name
    _compare(backend, x, alpha)


def test_non_contiguous_grad_out(backend):
    dev = _device_for(backend)
    x = torch.randn(2, 3, 12, 10, device=dev)
    alpha = torch.tensor([2.0, 1.6], device=dev)
    out = resizeops.dynopool2d(x, alpha, backend="reference")
    g = torch.randn(out.shape[0], out.shape[1], out.shape[3], out.shape[2], device=dev).transpose(2, 3)
    got = _grads(x, alpha, backend, g=g)
    want = _grads(x, alpha, "reference", g=g.contiguous())
    for a, b in zip(got, want):
        assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_nan_and_ties(backend):
    dev = _device_for(backend)
    x = torch.randn(1, 2, 8, 9, dtype=torch.float64, device=dev) if backend != "cuda" else torch.randn(1, 2, 8, 9, device=dev)
    x[0, 0] = 1.0  # a constant plane: every query ties, the gradient follows query (0,0)
    x[0, 1, 3, 4] = float("nan")
    alpha = torch.tensor([1.3, 2.2], dtype=x.dtype, device=dev)
    out, gx, _ = _grads(x, alpha, backend)
    ref, rgx, _ = _grads(x, alpha, "reference")
    assert torch.isnan(out[0, 1]).any()
    assert_close(out, ref)
    assert_close(gx[0, 0], rgx[0, 0])


def _tied_inputs(dtype, dev):
    """Inputs whose queries tie exactly: rows or columns that repeat. (name, x, alpha)."""
    gen = torch.Generator().manual_seed(17)
    rows = torch.randn(2, 3, 1, 13, generator=gen, dtype=dtype)
    cols = torch.randn(2, 3, 11, 1, generator=gen, dtype=dtype)
    small = torch.randn(1, 4, 5, 7, generator=gen, dtype=dtype)
    cases = [
        ("expanded_along_H", rows.expand(2, 3, 9, 13), (1.3, 1.7)),  # stride 0 along H
        ("expanded_along_H_contiguous", rows.expand(2, 3, 10, 13).contiguous(), (2.2, 0.8)),
        ("expanded_along_W", cols.expand(2, 3, 11, 15), (1.6, 1.4)),
        ("expanded_along_W_channels_last", cols.expand(2, 3, 11, 14).contiguous(memory_format=torch.channels_last),
         (0.9, 2.3)),
        ("nearest_upsampled", small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3), (1.45, 1.3)),
        ("nearest_upsampled_x3", small.repeat_interleave(3, dim=2).repeat_interleave(3, dim=3), (2.5, 1.9)),
        ("constant", torch.full((1, 2, 7, 9), 0.3, dtype=dtype), (1.3, 2.2)),
    ]
    # Random ones: widths with every remainder mod 4 (the C++ kernel's SSE columns),
    # channel counts over its 16-channel blocks, both layouts, up- and down-sampling.
    rng = random.Random(29)
    for i in range(6):
        c, h, w, f = rng.randint(1, 20), rng.randint(1, 6), rng.randint(1, 8), rng.choice([2, 3])
        x = torch.randn(1, c, h, w, generator=gen, dtype=dtype).repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)
        if i % 2:
            x = x.contiguous(memory_format=torch.channels_last)
        cases.append((f"random_nearest_x{f}_{i}", x, (round(rng.uniform(0.6, 3.0), 2), round(rng.uniform(0.6, 3.0), 2))))
    for name, x, ratio in cases:
        yield name, x.to(dev), torch.tensor(ratio, dtype=torch.float64 if dtype == torch.float64 else torch.float32,
                                            device=dev)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_tied_queries_route_like_the_reference(backend, dtype):
    """Repeated rows or columns (an input expanded along H or W, nearest-upsampled maps,
    a constant plane) make a cell's queries tie exactly: each interpolation step is
    w0·a + w1·b and exactly a where a == b, in every backend (math.h lerp_tie), so the
    tied queries are bit-identical and the first of them wins everywhere. The gradient
    then goes to the same pixels: grad_x as the reference's (its row and column sums
    followed rounding noise before, differently per backend)."""
    dev = _device_for(backend)
    for name, x, alpha in _tied_inputs(dtype, dev):
        out, gx, ga = _grads(x, alpha, backend, g=None)
        ref, rgx, rga = _grads(x, alpha, "reference")
        assert out.stride() == ref.stride(), name
        assert_close(out, ref, dtype, msg=f"{name}: forward")
        assert_close(gx, rgx, dtype, msg=f"{name}: grad_x")
        for dim in (2, 3):  # the sums per input row and column: where the gradient went
            assert_close(gx.double().sum(dim=(0, 1, dim)), rgx.double().sum(dim=(0, 1, dim)), dtype,
                         msg=f"{name}: grad_x summed over dim {dim}")
        scale = float(rga.abs().max()) + 1.0
        tol = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
        assert_close(ga, rga, dtype, msg=f"{name}: grad_alpha", atol=tol * scale, rtol=tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_tied_queries_are_bit_identical(dtype):
    """The tie rule in the reference's queries themselves: on an input expanded along H a
    cell's two query rows (2i, 2i+1) are bit-identical, expanded along W its two query
    columns; grid_sample's product weights made them differ by an ulp, so the winner
    (and the gradient) followed rounding noise. max_pool2d then takes the first."""
    from resizeops.reference import _queries, _query_axis

    gen = torch.Generator().manual_seed(5)
    for along, shape in ((2, (2, 3, 9, 13)), (3, (2, 3, 11, 15)), (2, (1, 2, 6, 7))):
        base = list(shape)
        base[along] = 1
        x = torch.randn(base, generator=gen, dtype=dtype).expand(shape)
        for ho, wo in ((4, 5), (7, 9), (3, 11), (12, 4)):
            rows = _query_axis(torch.tensor(float(ho), dtype=dtype), ho, shape[2])
            cols = _query_axis(torch.tensor(float(wo), dtype=dtype), wo, shape[3])
            q, _ = _queries(x, rows, cols)
            first, second = (q[:, :, 0::2], q[:, :, 1::2]) if along == 2 else (q[..., 0::2], q[..., 1::2])
            assert torch.equal(first, second), (along, shape, ho, wo)
            _, idx = torch.nn.functional.max_pool2d(q, 2, return_indices=True)
            k = (idx // q.shape[-1]) % 2 if along == 2 else idx % 2  # the winner's query row / column in its cell
            assert (k == 0).all(), (along, shape, ho, wo)


@pytest.mark.parametrize("hw", [(8, 8), (6, 10), (14, 4), (4, 12)])
def test_kink_at_alpha_2_takes_the_derivative_from_above(backend, hw):
    """α = 2 on even sizes puts every query on a pixel (u_j = j exactly: the coordinate
    is one correctly rounded division), a kink of the bilinear surrogate. Every backend
    takes the derivative towards larger u (i0 = floor(u) = j, d/du = x[j+1] − x[j], and
    the clip's derivative 1 at u = 0), so dL/dα is the one-sided derivative from above,
    lim ε→0+ (L(α + ε) − L(α))/ε of the surrogate: checked against a one-sided finite
    difference of the reference in a real-valued Ĥ = Ho − ε (u grows with α)."""
    dev = _device_for(backend)
    gen = torch.Generator().manual_seed(sum(hw))
    x = torch.randn(2, 3, *hw, generator=gen, dtype=torch.float64)
    alpha = torch.tensor([2.0, 2.0], dtype=torch.float64)
    ho, wo = hw[0] // 2, hw[1] // 2
    g = torch.randn(2, 3, ho, wo, generator=gen, dtype=torch.float64)
    out, _, ga = _grads(x.to(dev), alpha.to(dev), backend, g=g.to(dev))
    assert out.shape[-2:] == (ho, wo)
    _, _, rga = _grads(x, alpha, "reference", g=g)
    assert_close(ga.cpu(), rga, msg="grad_alpha against the reference", atol=1e-9, rtol=1e-9)

    def loss(h_hat, w_hat):
        ref = resizeops.reference.dynopool2d_at(x, torch.tensor(h_hat, dtype=torch.float64),
                                                torch.tensor(w_hat, dtype=torch.float64), (ho, wo))
        return float((ref * g).sum())

    eps = 1e-7
    base = loss(ho, wo)
    from_above = torch.tensor([(base - loss(ho - eps, wo)) / eps, (base - loss(ho, wo - eps)) / eps], dtype=torch.float64)
    from_above *= torch.tensor([-hw[0] / 4.0, -hw[1] / 4.0], dtype=torch.float64)  # dĤ/dα = −H/α²
    assert_close(rga, from_above, msg="grad_alpha against the one-sided difference", atol=1e-4, rtol=1e-5)


def _assert_same_nonfinite(got, want, msg):
    assert torch.equal(got.isnan(), want.isnan()), f"{msg}: NaN at other places than the reference"
    assert torch.equal(got.isposinf(), want.isposinf()) and torch.equal(got.isneginf(), want.isneginf()), msg
    fin = want.isfinite()
    assert_close(got[fin], want[fin], msg=msg)


@pytest.mark.parametrize("shape,ratio", [((1, 2, 13, 17), (13 / 7, 1.7)), ((2, 3, 8, 8), (0.55, 2.7)),
                                         ((1, 2, 6, 6), (2.0, 2.0)), ((1, 3, 5, 9), (0.625, 0.8)),
                                         ((1, 2, 1, 7), (0.5, 1.4))])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # float32 NCHW: the C++ kernel's SSE rows
def test_infinite_values_like_the_reference(backend, shape, ratio, dtype):
    """±inf in x and in grad_out: the same inf / NaN as grid_sample, element by element.
    At the last pixel both bilinear taps are that pixel with weight 0 for the second;
    grid_sample skips the second (out of bounds), so an infinite last row or column must
    come out infinite, not 0·inf = NaN."""
    dev = _device_for(backend)
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    x[:, 0, -1, :] = float("inf")  # the last row
    x[:, -1, :, -1] = float("-inf")  # the last column
    x[0, 0, 0, 0] = float("inf")  # a corner and an interior pixel
    x[0, -1, shape[2] // 2, shape[3] // 2] = float("-inf")
    x = x.to(dev)
    alpha = torch.tensor(ratio, dtype=dtype, device=dev)
    out = resizeops.dynopool2d(x, alpha, backend=backend)
    ref = resizeops.dynopool2d(x, alpha, backend="reference")
    _assert_same_nonfinite(out, ref, "forward")
    # Finite x, infinite grad_out at the last output row and column and inside.
    xf = torch.randn(shape, generator=gen, dtype=dtype).to(dev)
    g = torch.randn(ref.shape, generator=gen, dtype=dtype)
    g[..., -1, :] = float("inf")
    g[..., :, -1] = float("-inf")
    g[..., 0, 0] = float("inf")
    g = g.to(dev)
    _, gx, _ = _grads(xf, alpha, backend, g=g)
    _, rgx, _ = _grads(xf, alpha, "reference", g=g)
    _assert_same_nonfinite(gx, rgx, "grad_x")


def test_only_the_needed_gradients(backend):
    dev = _device_for(backend)
    x = torch.randn(2, 3, 9, 9, device=dev)
    alpha = torch.tensor([1.5, 2.5], device=dev, requires_grad=True)
    (ga,) = torch.autograd.grad(resizeops.dynopool2d(x, alpha, backend=backend).sum(), alpha)
    (rga,) = torch.autograd.grad(resizeops.dynopool2d(x, alpha, backend="reference").sum(), alpha)
    assert_close(ga, rga, atol=1e-3, rtol=1e-4)
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(resizeops.dynopool2d(xg, alpha.detach(), backend=backend).sum(), xg)
    (rgx,) = torch.autograd.grad(resizeops.dynopool2d(xg, alpha.detach(), backend="reference").sum(), xg)
    assert_close(gx, rgx)


def test_deterministic_mode_bit_identical(backend):
    if not _dispatch.get_backend(backend).kernels["dynopool2d"].deterministic_backward(_device_for(backend)):
        pytest.skip(f"{backend}'s backward is not deterministic: the dispatcher routes around it")
    torch.use_deterministic_algorithms(True)
    dev = _device_for(backend)
    x = torch.randn(3, 40, 31, 29, device=dev)
    alpha = torch.tensor([1.7, 0.8], device=dev)
    first = _grads(x, alpha, backend)
    second = _grads(x, alpha, backend)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("seed", range(3))
def test_gradcheck_float64(backend, seed):
    # The CUDA kernels support float64 too (every dtype on every device: docs/SEMANTICS.md, Conventions),
    # so they are gradchecked as well.
    rng = random.Random(seed)
    dev = _device_for(backend)
    x = torch.randn(2, 3, rng.randint(1, 9), rng.randint(1, 9), dtype=torch.float64, device=dev, requires_grad=True)
    alpha = torch.tensor([rng.uniform(0.4, 3.0), rng.uniform(0.4, 3.0)], dtype=torch.float64, device=dev)
    assert torch.autograd.gradcheck(lambda t: resizeops.dynopool2d(t, alpha, backend=backend), (x,))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
def test_int64_indexing_path(backend, layout, request, monkeypatch):
    # Kernels that pick 32-bit indexing for small tensors (CUDA and its CPU emulation,
    # Triton) take their 64-bit path under the test hook KernelForms.force_int64; the
    # C++ CPU kernel has one index path.
    name = request.node.callspec.params["backend"]
    if name in EMULATED:
        use_cuda_emulation(monkeypatch, "dynopool2d", dataclasses.replace(EMULATED[name], force_int64=True))
    elif name in ("triton", "cuda"):
        use_forms(monkeypatch, name, "dynopool2d", KernelForms(force_int64=True))
    dev = _device_for(backend)
    base = torch.randn(2, 6, 13, 18, device=dev)
    x = {"contiguous": base, "channels_last": base.contiguous(memory_format=torch.channels_last),
         "sliced": base[:, 1::2, :, 2:]}[layout]
    _compare(backend, x, torch.tensor([1.6, 0.8], device=dev))


_ext = torch.ops.resizeops_ext


def _forward_emulated(x, out, cl, forms=KernelForms()):
    """The CUDA forward's emulation with ``forms``."""
    return _ext._dynopool2d_forward_emulated(x, *out, cl, forms.encode())


def _forward_form(x, out, cl, forms=KernelForms()):
    """The form (and plan) the CUDA forward takes with ``forms``: [0 cell | 1 rows | 2 separable, plan...]."""
    return _ext._dynopool2d_forward_form(x, *out, cl, forms.encode())


def _backward_emulated(g, x, out, cl, need_x, need_size, forms=KernelForms()):
    """The CUDA backward's emulation with ``forms``: (grad_x, grad_size)."""
    return _ext._dynopool2d_backward_emulated(g, x, *out, cl, need_x, need_size, forms.encode())


def _backward_form(g, x, out, cl, forms, need_x=True):
    """The grad_x form (and fused plan) the CUDA backward takes with ``forms``:
    [0 gather | 1 scatter | 2 fused, th, tw, cell_rows, cell_cols, cb, lanes, vcols]."""
    return _ext._dynopool2d_backward_form(g, x, *out, cl, need_x, forms.encode())


_GRAD_X = {
    "tile": KernelForms(grad_x="gather", gather="tile"),
    "loop": KernelForms(grad_x="gather", gather="loop"),
    "scatter": KernelForms(grad_x="scatter"),
}


def _emulated_grad_x(g, x, out, cl, form):
    """grad_x of the CUDA backward's emulation with ``form``: "tile" or "loop" (gathers), or "scatter"."""
    return _backward_emulated(g, x, out, cl, True, False, _GRAD_X[form])[0]


def _emulation_inputs(dtype, cl, seed):
    """(x, grad_out, shape, out) cases for the emulation's grad_x forms: pixels that fit
    a gather tile (r <= 0.75), that need the loop (up-sampling), that no query reads
    (r < 0.5); ties in x; NaN and inf in grad_out (-inf at the last cell)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [((2, 3, 13, 17), (7, 10)), ((1, 4, 9, 31), (4, 20)), ((2, 2, 8, 8), (15, 3)),
              ((1, 3, 29, 11), (5, 2)), ((1, 2, 1, 8), (3, 3)), ((2, 5, 10, 12), (5, 6))]
    for shape, out in shapes:
        x = torch.randn(shape, generator=gen).to(dtype)
        x[..., ::3, ::2] = 0.5  # ties
        g = torch.randn(shape[0], shape[1], *out, generator=gen).to(dtype)
        g.view(-1)[::7] = float("nan")
        g.view(-1)[3::11] = float("inf")
        g[..., -1, -1] = float("-inf")
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
            g = g.contiguous(memory_format=torch.channels_last)
        yield x, g, shape, out


def _needs_emulation():
    if not hasattr(torch.ops.resizeops_ext, "_dynopool2d_backward_emulated"):
        if os.environ.get("RESIZEOPS_REQUIRE_EXT") == "1":
            pytest.fail("the CUDA-kernel emulation must run here (RESIZEOPS_REQUIRE_EXT=1)")
        pytest.skip("the compiled extension is not loaded")


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cuda_scatter_and_gather_agree(dtype, cl):
    """grad_x scattered from the output cells (atomics on the GPU, serial here) against
    the gather: the same terms summed in another order, so equal to rounding, with the
    same NaN / inf pattern (NaN and inf in grad_out, ties, up- and down-sampling, pixels
    no query reads, the last row and column). bfloat16 always gathers: bit-identical."""
    _needs_emulation()
    for x, g, shape, out in _emulation_inputs(dtype, cl, seed=11):
        scatter = _emulated_grad_x(g, x, out, cl, "scatter")
        gather = _emulated_grad_x(g, x, out, cl, "loop")
        assert scatter.stride() == gather.stride()
        if dtype == torch.bfloat16:
            assert torch.equal(scatter.nan_to_num(), gather.nan_to_num()), (shape, out)
        assert torch.equal(scatter.isnan(), gather.isnan()), (shape, out)
        assert torch.equal(scatter.isposinf(), gather.isposinf()), (shape, out)
        assert_close(scatter.nan_to_num(0.0, 0.0, 0.0), gather.nan_to_num(0.0, 0.0, 0.0), dtype, msg=str((shape, out)))
        assert (gather != 0).sum() > 0


def test_cuda_scatter_gives_way_to_deterministic_mode():
    # Under torch.use_deterministic_algorithms(True) the backward gathers whatever
    # grad_x form was asked for: bit-identical to the gather (conftest restores the mode).
    _needs_emulation()
    x = torch.randn(2, 3, 13, 17, dtype=torch.float64)
    g = torch.randn(2, 3, 7, 10, dtype=torch.float64)
    gather = _emulated_grad_x(g, x, (7, 10), False, "tile")
    scatter = _emulated_grad_x(g, x, (7, 10), False, "scatter")
    assert not torch.equal(scatter, gather)  # another summation order: some bits differ
    torch.use_deterministic_algorithms(True)
    assert torch.equal(_backward_emulated(g, x, (7, 10), False, True, False, KernelForms(grad_x="scatter", gather="tile"))[0],
                       gather)  # fmt: skip
    # The defaults too (float64 scatters outside deterministic mode).
    assert _backward_form(g, x, (7, 10), False, KernelForms()) == [0]


def _fused_inputs(dtype, seed, cl=False):
    """The emulation inputs, plus images that span several of the fused form's default
    tiles (16 x 64 pixels; 16 x 32 in channels_last with 8 channels per block),
    down- and up-sampled (x2.4: the plan halves its tile rows). In channels_last,
    channel counts for every channel block (dynopool_fused_channels_log2: 8, 4 or 1
    channels; float64 4 or 1) and a sliced x (channel stride 2)."""
    yield from _emulation_inputs(dtype, cl, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    shapes = [((1, 2, 40, 150), (23, 97)), ((1, 1, 37, 130), (90, 312)), ((2, 1, 33, 70), (7, 9))]
    if cl:
        shapes = [((1, 8, 40, 150), (23, 97)), ((1, 16, 37, 65), (90, 156)), ((2, 12, 33, 70), (7, 9)),
                  ((1, 24, 29, 37), (15, 23)), ((2, 3, 20, 30), (10, 19))]  # fmt: skip
    for shape, out in shapes:
        x = torch.randn(shape, generator=gen).to(dtype)
        g = torch.randn(shape[0], shape[1], *out, generator=gen).to(dtype)
        g.view(-1)[::13] = float("nan")
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
            g = g.contiguous(memory_format=torch.channels_last)
        yield x, g, shape, out
    if cl:  # 8 channels at stride 2 of a channels_last x, grad_out in NCHW
        x = torch.randn(1, 16, 21, 45, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)[:, ::2]
        g = torch.randn(1, 8, 11, 28, generator=gen).to(dtype)
        yield x, g, tuple(x.shape), (11, 28)


def _fused_channels(x, cl):
    """The channels per block the fused plan must take (dynopool_fused_channels_log2)."""
    c = x.shape[1]
    if cl and x.element_size() <= 4 and c % 8 == 0:
        return 8
    return 4 if cl and c % 4 == 0 else 1


def _fused(tile=None, **kw):
    """The fused backward's forms with tiles capped at ``tile`` (rows, cols; None: the default 16 x 64)."""
    return KernelForms(grad_x="fused", fused_tile=tile, **kw)


_TILES = (None, (1, 1), (2, 4), (4, 2), (8, 16))


@pytest.mark.experimental
@pytest.mark.parametrize("cl", [False, True], ids=["NCHW", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cuda_fused_backward_bit_identical_to_the_gather(dtype, cl):
    """The fused backward (grad_x="fused": winners into a tile's shared window, then the
    gather from it) in the serial emulation: grad_x bit-identical to the two-pass gather
    (same terms, the loop form's order) for every tiling, from one pixel per tile to the
    default, partial tiles at the borders included; the size gradient (each cell counted
    by the one tile that owns it) equal to rounding. In channels_last, blocks of 8, 4 or
    1 channels (the form hook says which) and a channels_last grad_x. The emulation
    raises if a tile's cell window exceeds the plan's bound. In channels_last also phase
    A's lanes form (lanes=4), wherever x and grad_out allow its vector loads: the same
    grad_x bits."""
    _needs_emulation()
    fmt = torch.channels_last if cl else torch.contiguous_format
    lanes_taken = 0
    for x, g, shape, out in _fused_inputs(dtype, seed=21, cl=cl):
        gather = _emulated_grad_x(g, x, out, cl, "loop")
        _, gs_gather = _backward_emulated(g, x, out, cl, False, True, KernelForms(grad_x="gather"))
        for tile in _TILES:
            forms = _fused(tile)
            form = _backward_form(g, x, out, cl, forms)
            assert form[0] == _FUSED and form[-3] == _fused_channels(x, cl), (shape, out, tile, form)
            gx, gs = _backward_emulated(g, x, out, cl, True, True, forms)
            assert gx.is_contiguous(memory_format=fmt) and gx.dtype == x.dtype
            assert torch.equal(gx.isnan(), gather.isnan()), (shape, out, tile)
            assert torch.equal(gx.nan_to_num(), gather.nan_to_num()), (shape, out, tile)
            assert torch.equal(gs.isnan(), gs_gather.isnan()), (shape, out, tile)
            tol = 1e-9 if dtype == torch.float64 else 1e-5
            if not gs.isnan().any():
                assert_close(gs, gs_gather, atol=tol * (1 + float(gs_gather.abs().max())), rtol=tol)
            # grad_x alone (no size gradient) is the same grad_x.
            gx_only, _ = _backward_emulated(g, x, out, cl, True, False, forms)
            assert torch.equal(gx_only.nan_to_num(), gx.nan_to_num())
            if not cl:
                continue
            with_lanes = _fused(tile, lanes=4)
            lanes = _backward_form(g, x, out, cl, with_lanes)[-2]
            want = 2 if dtype == torch.float64 else 4
            vec = x.is_contiguous(memory_format=fmt) and g.is_contiguous(memory_format=fmt)
            assert lanes == (want if vec and _fused_channels(x, cl) >= want else 1), (shape, lanes)
            lanes_taken += lanes > 1
            for need_size in (True, False):
                gx_lanes, gs_lanes = _backward_emulated(g, x, out, cl, True, need_size, with_lanes)
                assert torch.equal(gx_lanes.isnan(), gx.isnan()), (shape, out, tile)
                assert torch.equal(gx_lanes.nan_to_num(), gx.nan_to_num()), (shape, out, tile)
                if need_size:  # the size terms summed in another order (channels within a cell first)
                    assert torch.equal(gs_lanes.isnan(), gs.isnan())
                    if not gs.isnan().any():
                        assert_close(gs_lanes, gs, atol=tol * (1 + float(gs.abs().max())), rtol=tol)
    assert lanes_taken >= (15 if cl else 0), lanes_taken


@pytest.mark.experimental
@pytest.mark.parametrize("winners,cl", [("cell", False), ("separable", False), ("cell", True)],
                         ids=["cell", "separable", "cell_channels_last"])
def test_cuda_fused_tiles_stay_within_the_plan(winners, cl):
    """The fused form's plan bounds each tile's cell window from the query spacing
    (dynopool_fused_window_bound) and, with separable winners, the window's input
    columns (dynopool_tile_cols_bound); the emulation raises where a window exceeds
    its bound. Random sizes and ratios (0.1 to 3, and arbitrary output sizes), random
    tile caps; in channels_last random channel counts (blocks of 8, 4 or 1 channels);
    then rows of 10^5 columns (float32 coordinates many ulps off)."""
    _needs_emulation()
    rng = random.Random(5)
    fmt = torch.channels_last if cl else torch.contiguous_format
    taken = 0
    for _ in range(60):
        h, w = rng.randint(1, 90), rng.randint(1, 90)
        if rng.random() < 0.5:
            out = (max(1, round(h * rng.uniform(0.1, 3.0))), max(1, round(w * rng.uniform(0.1, 3.0))))
        else:
            out = (rng.randint(1, 60), rng.randint(1, 60))
        c = rng.choice([8, 16, 4, 12, 3]) if cl else 1
        forms = _fused((2 ** rng.randint(0, 4), 2 ** rng.randint(0, 6)), fused_winners=winners)
        x = torch.randn(1, c, h, w, dtype=torch.float64).contiguous(memory_format=fmt)
        g = torch.randn(1, c, *out, dtype=torch.float64).contiguous(memory_format=fmt)
        form = _backward_form(g, x, out, cl, forms)
        taken += form[0] == _FUSED and (form[-1] > 0 or form[-3] > 1)
        gx, _ = _backward_emulated(g, x, out, cl, True, True, forms)
        ref = _emulated_grad_x(g, x, out, cl, "loop")
        assert torch.equal(gx, ref) and gx.stride() == ref.stride(), (h, w, out, form)
    assert taken >= (0 if winners == "cell" and not cl else 30), taken
    c = 8 if cl else 1
    forms = _fused(fused_winners=winners)
    for w, wo in [(100003, 62500), (99991, 30000)]:
        x = torch.randn(1, c, 2, w).contiguous(memory_format=fmt)
        g = torch.randn(1, c, 1, wo).contiguous(memory_format=fmt)
        form = _backward_form(g, x, (1, wo), cl, forms)
        assert form[0] == _FUSED and (form[-1] > 0) == (winners == "separable") and form[-3] == c, form
        gx, _ = _backward_emulated(g, x, (1, wo), cl, True, True, forms)
        assert torch.equal(gx, _emulated_grad_x(g, x, (1, wo), cl, "loop")), (w, wo)


_FUSED = 2  # resizeops_ext::_dynopool2d_backward_form's code of the fused form


@pytest.mark.experimental
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_cuda_fused_separable_winners_bit_identical_to_the_cell_form(dtype):
    """The fused backward's separable winners (fused_winners="separable": phase A from
    the vertical interpolations and differences of the tile's query rows in shared
    memory, then each cell's 4 queries, winner and derivatives from there) in the
    serial emulation: the cell form's operations on the same values, each thread's
    cells in the same order, so grad_x and the size gradient are bit-identical to the
    winners by cells, for every tiling from 1 x 1 to the default 16 x 64. Inputs with
    ties, NaN and inf in x (a sliced and a channels_last-strided x) and in grad_out.
    The separable winners must be taken (the backward's form hook says so), except for
    r_w = 0.13 (33 x 70 -> 7 x 9: more than 4 columns per cell) and the default tiles'
    up-sampling 37 x 130 -> 90 x 312 (V and D beyond the shared memory), which fall back."""
    _needs_emulation()
    gen = torch.Generator().manual_seed(31)
    cases = []
    for x, g, shape, out in _fused_inputs(dtype, seed=23):
        cases.append((x, g, shape, out))
    for shape, out in [((2, 3, 13, 17), (7, 8)), ((1, 2, 40, 70), (23, 44)), ((1, 1, 30, 130), (9, 33)),
                       ((1, 2, 6, 5), (17, 15)), ((1, 1, 19, 96), (5, 24))]:  # fmt: skip
        g = torch.randn(shape[0], shape[1], *out, generator=gen).to(dtype)
        g.view(-1)[::11] = float("nan")
        for x in _sliced_inputs_with_specials(shape, dtype, gen):
            cases.append((x, g, shape, out))
    for x, g, shape, out in cases:
        for tile in _TILES:
            got = {}
            for winners in ("cell", "separable"):
                forms = _fused(tile, fused_winners=winners)
                form = _backward_form(g, x, out, False, forms)
                fallback = shape[2:] == (33, 70) or (shape[2:] == (37, 130) and tile is None)
                taken = winners == "separable" and not fallback
                assert form[0] == _FUSED and (form[-1] > 0) == taken, (shape, out, tile, form)
                got[winners] = [*_backward_emulated(g, x, out, False, True, True, forms),
                                _backward_emulated(g, x, out, False, True, False, forms)[0]]
            for a, b in zip(got["separable"], got["cell"]):
                assert a.dtype == b.dtype and a.stride() == b.stride()
                assert torch.equal(a.isnan(), b.isnan()), (shape, out, tile)
                assert torch.equal(a.nan_to_num(), b.nan_to_num()), (shape, out, tile)


@pytest.mark.experimental
def test_cuda_fused_separable_plan_and_fallbacks():
    """Separable winners are taken only when asked for and fall back to winners by
    cells, with the cell form's results, where they do not pay or cannot run: more than
    4 input columns per cell column (r < 0.25), the 64-bit index path, V and D beyond
    the shared memory (up-sampling), a channels_last grad_x. The ImageNet-VGG plan keeps
    the default 16 x 64 tile, with a column window that fits."""
    _needs_emulation()
    x = torch.randn(1, 2, 224, 224)
    g = torch.randn(1, 2, 112, 140)
    assert _backward_form(g, x, (112, 140), False, _fused())[-1] == 0  # not asked for: cells
    separable = _fused(fused_winners="separable")
    form, th, tw, cell_rows, cell_cols, cb, lanes, vcols = _backward_form(g, x, (112, 140), False, separable)
    assert (form, th, tw, cb, lanes) == (_FUSED, 16, 64, 1, 1)
    # cell_cols cells of 2 queries 0.8 apart span (2 cell_cols - 1) * 0.8 columns, + 3 for the taps, 1 for rounding.
    assert 1.6 * cell_cols + 1 <= vcols <= 1.6 * cell_cols + 4, (cell_cols, vcols)
    g50 = torch.randn(1, 2, 112, 50)
    up = torch.randn(1, 1, 37, 130, dtype=torch.float64)
    xcl = torch.randn(1, 8, 40, 70).contiguous(memory_format=torch.channels_last)
    cases = [
        (x, g50, (112, 50), {}, False),  # r_w = 0.22: cells
        (x, g, (112, 140), {"force_int64": True}, False),
        (up, torch.randn(1, 1, 90, 312, dtype=torch.float64), (90, 312), {}, False),  # x2.4: V and D beyond 40 KiB
        (xcl, torch.randn(1, 8, 23, 44), (23, 44), {}, True),  # channels_last: blocks of 8 channels, cells
    ]
    for t, gt, out, hooks, cl in cases:
        form = _backward_form(gt, t, out, cl, _fused(fused_winners="separable", **hooks))
        assert form[0] == _FUSED and form[-1] == 0 and form[-3] == (8 if cl else 1), (out, hooks, form)
        got = _backward_emulated(gt, t, out, cl, True, True, _fused(fused_winners="separable", **hooks))
        want = _backward_emulated(gt, t, out, cl, True, True, _fused(**hooks))
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), (out, hooks)
    # Not the fused form: the winners' form does not matter.
    assert _backward_form(g, x, (112, 140), False, KernelForms(grad_x="gather", fused_winners="separable")) == [0]


@pytest.mark.experimental
def test_cuda_fused_backward_falls_back_where_it_cannot_run():
    """Where the fused form cannot run (a cell window beyond the shared memory:
    up-sampling 1 x 1 to 100 x 100, in NCHW and in channels_last with blocks of 4 and
    of 8 channels), grad_x="fused" gives the default form's result (the scatter, for
    float64 and float32)."""
    _needs_emulation()
    gen = torch.Generator().manual_seed(2)
    cases = [(torch.randn(1, 8, 1, 1, generator=gen, dtype=dt).contiguous(memory_format=torch.channels_last),
              (100, 100), True) for dt in (torch.float64, torch.float32)]  # fmt: skip
    cases.append((torch.randn(1, 2, 1, 1, generator=gen, dtype=torch.float64), (100, 100), False))
    for x, out, cl in cases:
        assert _backward_form(torch.zeros(1, x.shape[1], *out, dtype=x.dtype), x, out, cl, _fused()) == [1]
        g = torch.randn(x.shape[0], x.shape[1], *out, generator=gen, dtype=x.dtype)
        if cl:
            g = g.contiguous(memory_format=torch.channels_last)
        want = _backward_emulated(g, x, out, cl, True, True, KernelForms(grad_x="scatter"))
        got = _backward_emulated(g, x, out, cl, True, True, _fused())
        assert got[0].stride() == want[0].stride()
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cuda_gather_tile_and_loop_forms_bit_identical(dtype, cl):
    """The CUDA gather's two forms (dynopool_elements.h), in the serial emulation: the 3x3
    tiles issue every load of a pixel at once and select afterwards, the loop loads
    only what it uses; same sum, same order, so bit-identical results. Covers pixels
    that fit a tile (r <= 0.75), pixels that need the loop (up-sampling), pixels no
    query reads (r < 0.5), and NaN / inf in grad_out at queries that did not win."""
    _needs_emulation()
    for x, g, shape, out in _emulation_inputs(dtype, cl, seed=5):
        tile = _emulated_grad_x(g, x, out, cl, "tile")
        loop = _emulated_grad_x(g, x, out, cl, "loop")
        assert torch.equal(tile.isnan(), loop.isnan()), (shape, out)
        assert torch.equal(tile.nan_to_num(), loop.nan_to_num()), (shape, out)
        # And both against the C++ CPU kernel, which has no NaN-free oracle of its own here.
        cpu, _ = _ext.dynopool2d_backward(g, x, *out, cl, True, False, [])
        assert torch.equal(tile.isnan(), cpu.isnan()), (shape, out)


def _lanes_inputs(dtype, cl, seed):
    """The emulation inputs, plus channel counts that leave a partial group of lanes
    (C % 4 != 0), one whose channels_last data starts one element past alignment (no
    vector loads) and a channels_last x with a channels_last but sliced grad_out."""
    yield from _emulation_inputs(dtype, cl, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    fmt = torch.channels_last if cl else torch.contiguous_format
    for shape, out in [((2, 7, 11, 9), (6, 5)), ((1, 8, 12, 12), (6, 8)), ((3, 12, 5, 7), (3, 4))]:
        x = torch.randn(shape, generator=gen).to(dtype).contiguous(memory_format=fmt)
        g = torch.randn(shape[0], shape[1], *out, generator=gen).to(dtype).contiguous(memory_format=fmt)
        yield x, g, shape, out
    # Misaligned: the channels of every pixel contiguous, but the data one element off.
    big = torch.randn(2, 9, 10, 13, generator=gen).to(dtype).contiguous(memory_format=fmt)
    x = big[:, 1:, :, :]
    g = torch.randn(2, 9, 5, 7, generator=gen).to(dtype).contiguous(memory_format=fmt)[:, 1:]
    yield x, g, tuple(x.shape), (5, 7)


@pytest.mark.experimental
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cuda_lanes_form_matches_one_lane(dtype, cl):
    """The lanes form of the CUDA forward and backward pass 1 (lanes=4:
    4 channels per thread, 2 in float64; vector loads where the channels are contiguous
    and aligned) in the serial emulation, against one lane: the same per-channel
    arithmetic, so the forward, the argmax and with it the gathered grad_x are bit-identical,
    and so is the scattered grad_x (each plane's cells add in the same order); only the
    size gradient is summed in another order. The emulation raises if a vector access is
    misaligned or strided."""
    _needs_emulation()
    grad_x_forms = ["loop", "scatter"] if dtype != torch.bfloat16 else ["loop"]
    for x, g, shape, out in _lanes_inputs(dtype, cl, seed=3):
        got = {}
        for lanes in (1, 4):
            fwd = _forward_emulated(x, out, cl, KernelForms(lanes=lanes))
            grads = [_backward_emulated(g, x, out, cl, True, False,
                                     dataclasses.replace(_GRAD_X[form], lanes=lanes))[0] for form in grad_x_forms]
            _, gs = _backward_emulated(g, x, out, cl, False, True, KernelForms(grad_x="gather", lanes=lanes))
            got[lanes] = (fwd, grads, gs)
        (f1, g1, s1), (f4, g4, s4) = got[1], got[4]
        assert f4.stride() == f1.stride()
        assert torch.equal(f4.isnan(), f1.isnan()) and torch.equal(f4.nan_to_num(), f1.nan_to_num()), (shape, out)
        for a, b in zip(g4, g1):
            assert a.stride() == b.stride()
            assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()), (shape, out)
        assert torch.equal(s4.isnan(), s1.isnan())
        if not s1.isnan().any():  # the inputs without NaN / inf in grad_out
            assert_close(s4, s1, atol=1e-9 * (1 + float(s1.abs().max())), rtol=1e-9)


def _sliced_inputs_with_specials(shape, dtype, gen):
    """Two views of one random x of `shape` with ties, NaN and inf: sliced along W
    (NCHW strides, offset data) and the same values in channels_last strides."""
    base = torch.randn(shape[0], shape[1], shape[2], shape[3] + 2, generator=gen).to(dtype)
    base[..., ::3, ::2] = 0.5  # ties
    base.view(-1)[::17] = float("nan")
    base.view(-1)[5::19] = float("inf")
    return base[..., 1:-1], base[..., 1:-1].contiguous(memory_format=torch.channels_last)


@pytest.mark.experimental
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_cuda_forward_rows_bit_identical_to_the_cell_form(dtype):
    """The forward's row form (forward="rows": 4 adjacent cells of an
    output row per thread, sharing their row table entries) in the serial emulation:
    the same per-cell arithmetic as the cell form, so bit-identical outputs. Output
    widths with and without a partial group of 4 (the vector store where Wo % 4 == 0
    and the type has at most 4 bytes), H or W = 1, up- and down-sampling, a sliced and
    a channels_last-strided x read into an NCHW output, ties, NaN and inf. The
    emulation raises if a vector store is misaligned."""
    _needs_emulation()
    gen = torch.Generator().manual_seed(8)
    cases = [((2, 3, 13, 17), (7, 8)), ((1, 4, 9, 31), (4, 20)), ((2, 2, 8, 8), (15, 3)), ((1, 3, 1, 8), (3, 5)),
             ((1, 2, 11, 1), (5, 4)), ((2, 5, 20, 24), (12, 13))]  # fmt: skip
    for shape, out in cases:
        for x in _sliced_inputs_with_specials(shape, dtype, gen):
            cell = _forward_emulated(x, out, False)
            assert _forward_form(x, out, False, KernelForms(forward="rows")) == [1]
            rows = _forward_emulated(x, out, False, KernelForms(forward="rows"))
            assert rows.is_contiguous() and rows.dtype == dtype
            assert torch.equal(rows.isnan(), cell.isnan()), (shape, out)
            assert torch.equal(rows.nan_to_num(), cell.nan_to_num()), (shape, out)


_SEPARABLE = 2  # resizeops_ext::_dynopool2d_forward_form's code of the separable form


@pytest.mark.experimental
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_cuda_forward_separable_bit_identical_to_the_cell_form(dtype):
    """The separable forward (forward="separable": per tile of output cells, the
    vertical interpolations of its query rows at its column window into shared
    memory, then each cell's 4 queries from there) in the serial emulation: the same
    operations on the same values as the cell form, so bit-identical outputs.
    Default tiles (16 x 32 cells) and tiles down to 1 x 1 (the test hook): outputs
    spanning several tiles and strips with partial ones at the borders, H or W = 1, up- and
    down-sampling from r = 0.25 to 3, a sliced and a channels_last-strided x read into
    an NCHW output, ties, NaN and inf. The emulation poisons the shared memory first
    and raises where a tile's column window exceeds the plan."""
    _needs_emulation()
    gen = torch.Generator().manual_seed(12)
    cases = [((2, 3, 13, 17), (7, 8)), ((1, 2, 9, 31), (4, 20)), ((2, 2, 8, 8), (15, 3)), ((1, 3, 1, 8), (3, 5)),
             ((1, 2, 11, 1), (5, 4)), ((1, 2, 40, 70), (23, 44)), ((1, 1, 30, 130), (9, 33)), ((1, 2, 6, 5), (17, 15)),
             ((1, 1, 19, 96), (5, 24))]  # fmt: skip
    for shape, out in cases:
        for x in _sliced_inputs_with_specials(shape, dtype, gen):
            cell = _forward_emulated(x, out, False)
            for tile in (None, (1, 1), (2, 4), (4, 8), (16, 2), (8, 32)):
                forms = KernelForms(forward="separable", forward_tile=tile)
                assert _forward_form(x, out, False, forms)[0] == _SEPARABLE, (shape, out, tile)
                tiles = _forward_emulated(x, out, False, forms)
                assert tiles.is_contiguous() and tiles.dtype == dtype
                assert torch.equal(tiles.isnan(), cell.isnan()), (shape, out, tile)
                assert torch.equal(tiles.nan_to_num(), cell.nan_to_num()), (shape, out, tile)


@pytest.mark.experimental
def test_cuda_forward_separable_tiles_stay_within_the_plan():
    """The separable forward's plan bounds each tile's column window from the query
    spacing (dynopool_tile_cols_bound); the emulation raises where a window exceeds
    it. Random sizes, ratios from 0.25 to 3 and arbitrary output sizes, random tile
    caps; where the plan is taken, the result is the cell form's."""
    _needs_emulation()
    rng = random.Random(7)
    taken = 0
    for _ in range(80):
        h, w = rng.randint(1, 60), rng.randint(1, 200)
        if rng.random() < 0.6:
            out = (max(1, round(h * rng.uniform(0.25, 3.0))), max(1, round(w * rng.uniform(0.25, 3.0))))
        else:
            out = (rng.randint(1, 40), rng.randint(1, 120))
        x = torch.randn(1, 1, h, w, dtype=torch.float64)
        cell = _forward_emulated(x, out, False)
        forms = KernelForms(forward="separable", forward_tile=(2 ** rng.randint(0, 4), 2 ** rng.randint(0, 5)))
        form = _forward_form(x, out, False, forms)
        taken += form[0] == _SEPARABLE
        assert torch.equal(_forward_emulated(x, out, False, forms), cell), (h, w, out, form)
    assert taken >= 50, taken  # most of them take it: the bound is not loose enough to refuse them
    # Wide rows, where the float32 query coordinates are off by many ulps of W: the
    # bound still holds (the emulation would raise), default tiles and 1 x 4.
    for w, wo in [(300001, 187500), (262144, 163841), (99991, 30000)]:
        x = torch.randn(1, 1, 3, w)
        cell = _forward_emulated(x, (2, wo), False)
        for tile in (None, (1, 4)):
            forms = KernelForms(forward="separable", forward_tile=tile)
            assert _forward_form(x, (2, wo), False, forms)[0] == _SEPARABLE, (w, wo, tile)
            assert torch.equal(_forward_emulated(x, (2, wo), False, forms), cell), (w, wo, tile)


@pytest.mark.experimental
def test_cuda_forward_separable_plan_and_fallbacks():
    """Where the separable forward does not pay or cannot run it falls back to the cell
    form: channels_last outputs, the lanes form, the 64-bit index path, more than 4
    input columns per output column (r < 0.25: the shared column window would hold
    columns no query reads) and more than 65535 strips of tile columns (the grid's y
    extent; tile rows are a loop). The papers' ratios at ImageNet sizes take it, with the default
    16 x 32 tiles and a column window that fits."""
    _needs_emulation()
    separable = KernelForms(forward="separable")
    x = torch.randn(1, 2, 224, 224)
    form, th, tw, vcols, tiles_h, tiles_w = _forward_form(x, (112, 140), False, separable)
    assert (form, th, tw, tiles_h, tiles_w) == (_SEPARABLE, 16, 32, 7, 5)
    assert 53 <= vcols <= 60  # 64 queries 0.8 apart span 50.4 columns, + 3 for the taps, 1 for rounding
    assert _forward_form(x, (112, 56), False, separable)[0] == _SEPARABLE  # r = 0.25
    assert _forward_form(x, (112, 140), False, KernelForms()) == [0]  # not asked for: the cell form
    cases = [
        (x, (112, 50), False, {}),  # r_w = 0.22
        (x.contiguous(memory_format=torch.channels_last), (112, 140), True, {}),
        (x, (112, 140), False, {"lanes": 4}),
        (x, (112, 140), False, {"force_int64": True}),
    ]
    for t, out, cl, other in cases:
        forms = dataclasses.replace(separable, **other)
        assert _forward_form(t, out, cl, forms) == [0], (out, cl, other)
        got = _forward_emulated(t, out, cl, forms)
        assert torch.equal(got, _forward_emulated(t, out, cl, KernelForms(**other))), (out, cl, other)
    one_cell_tiles = KernelForms(forward="separable", forward_tile=(1, 1))
    wide = torch.empty(1, 1, 2, 70000)
    assert _forward_form(wide, (1, 65535), False, one_cell_tiles)[0] == _SEPARABLE
    assert _forward_form(wide, (1, 65536), False, one_cell_tiles) == [0]
    assert _forward_form(wide.transpose(2, 3).contiguous(), (65536, 1), False, one_cell_tiles)[0] == _SEPARABLE
