"""resizeops.dynopool2d (docs/SEMANTICS.md, DynOPool) on every backend.

One module for the op, in four parts:

1. The definition: the reference backend against the float64 loop oracle
   (tests/oracle.py), F.interpolate + max_pool2d, autograd of the reference and finite
   differences in the real-valued size. Not parametrised over backends.
2. Every kernel backend against the reference backend, forward, grad_x and grad_alpha:
   the ``backend`` fixture is parametrised over ``cpu`` (the C++ CPU kernel), the CUDA
   kernels' serial CPU emulation with their default forms (``cuda_emulated``, and the
   deterministic mode's gather in tiles and as a loop, ``cuda_emulated_tile`` and
   ``cuda_emulated_loop``; conftest.use_cuda_emulation), ``triton`` (marked ``triton``)
   and ``cuda`` (marked ``cuda``); each is skipped where it cannot run (the CPU kernel
   and the emulation need the compiled extension, Triton a GPU or TRITON_INTERPRET=1,
   CUDA a GPU), and `-m triton` / `-m cuda` select them.
   tests/test_dynopool2d_kernel_forms.py runs the same tests over the experimental
   kernel forms of the emulation.
3. ``TestTriton`` (marked ``triton``: on a GPU, or on the CPU under
   ``TRITON_INTERPRET=1 python -m pytest -m triton tests``; skipped elsewhere): the
   Triton kernels (triton_kernels/dynopool.py) in awkward sizes and every dtype, against
   the reference and the loop oracle; their entry points, determinism, torch.compile.
4. ``TestCuda`` (marked ``cuda``, skipped without a GPU): the CUDA kernels
   (csrc/cuda/dynopool2d.cu) against the C++ CPU kernel and their serial emulation,
   opcheck on CUDA tensors, a non-default stream, empty and degenerate shapes, large
   channel counts, the default backend.

The kernel forms (resizeops/core/kernel_forms.py), their emulation and their GPU and
Triton kernels are tested in tests/test_dynopool2d_kernel_forms.py, which collects
this module's cross-backend matrix again and imports ``use_backend`` from here; the
helpers both use are in tests/conftest.py.
"""

import dataclasses
import math
import random
import warnings

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
    """(N, C, H, W, alpha_h, alpha_w): odd, prime, H=1, W=1, empty, up- and down-sampling, anisotropic."""
    fixed = [
        (2, 3, 8, 8, 2.0, 2.0),  # the classic 2x2 pooling position (r = 1/2)
        (2, 3, 13, 17, 2.0, 1.6),  # r = (0.5, 0.625), primes
        (1, 2, 1, 7, 1.3, 0.7),  # H = 1
        (1, 2, 7, 1, 0.45, 1.9),  # W = 1, up-sampling on H
        (1, 1, 1, 1, 0.4, 0.4),  # 1x1 up-sampled to 2x2 (min_size) / 3x3
        (3, 5, 31, 29, 2.9, 0.55),  # strong anisotropy
        (2, 4, 6, 10, 5.0, 7.0),  # min_size bound active on both axes
    ]
    rng = random.Random(1234)
    for _ in range(6):
        fixed.append(
            (
                rng.randint(1, 3),
                rng.randint(1, 4),
                rng.randint(1, 23),
                rng.randint(1, 23),
                round(rng.uniform(0.4, 5.0), 3),
                round(rng.uniform(0.4, 5.0), 3),
            )
        )
    return fixed


CASES = _cases()


@pytest.mark.parametrize("n,c,h,w,ah,aw", CASES)
def test_forward_and_grad_x_match_float64_oracle(n, c, h, w, ah, aw):
    x = torch.randn(n, c, h, w, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([ah, aw], dtype=torch.float64)
    out = resizeops.dynopool2d(x, alpha, backend="reference")
    ho, wo = oracle.dynopool_out_size(h, w, (ah, aw))
    assert out.shape == (n, c, ho, wo)
    g = torch.randn_like(out)
    expected, expected_gx = oracle.dynopool2d(x, (ho, wo), grad_out=g)
    assert_close(out, expected)
    (gx,) = torch.autograd.grad(out, x, g)
    assert_close(gx, expected_gx)


@pytest.mark.parametrize("n,c,h,w,ah,aw", CASES[:7])
def test_float32_forward(n, c, h, w, ah, aw):
    x = torch.randn(n, c, h, w)
    out = resizeops.dynopool2d(x, torch.tensor([ah, aw]))
    assert out.dtype == torch.float32
    assert_close(out, oracle.dynopool2d(x, out.shape[-2:]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,c,h,w,ah,aw", CASES[:7])
def test_half_forward_parity(dtype, n, c, h, w, ah, aw):
    # The oracle runs on the half input's exact values; see conftest.TOL for the tolerances.
    x = torch.randn(n, c, h, w).to(dtype)
    out = resizeops.dynopool2d(x, torch.tensor([ah, aw]))
    assert out.dtype == dtype
    assert_close(out, oracle.dynopool2d(x, out.shape[-2:]), dtype)


def test_output_size_rounds_half_up_and_respects_min_size():
    # rnd(v) = floor(v + 0.5): 5/2 = 2.5 -> 3 (banker's rounding would give 2).
    assert resizeops.dynopool2d_output_size((5, 7), (2.0, 2.0)) == (3, 4)
    assert resizeops.dynopool2d_output_size((3, 3), (2.0, 2.0)) == (2, 2)
    assert resizeops.dynopool2d_output_size((6, 6), (10.0, 2.0), min_size=2) == (2, 3)
    assert resizeops.dynopool2d_output_size((6, 6), (10.0, 2.0), min_size=1) == (1, 3)
    x = torch.randn(1, 1, 5, 7)
    assert resizeops.dynopool2d(x, torch.tensor([2.0, 2.0])).shape[-2:] == (3, 4)
    assert resizeops.dynopool2d(x, torch.tensor([9.0, 9.0]), min_size=1).shape[-2:] == (1, 1)


def test_out_size_given_equals_computed():
    x = torch.randn(2, 3, 11, 13)
    alpha = torch.tensor([1.7, 2.3])
    a = resizeops.dynopool2d(x, alpha)
    b = resizeops.dynopool2d(x, alpha, out_size=tuple(a.shape[-2:]))
    assert torch.equal(a, b)


def test_no_grad_forward_equals_interpolate_then_maxpool():
    # docs/SEMANTICS.md, DynOPool: without gradient, max_pool2d(interpolate(x, (2Ho, 2Wo), bilinear), 2).
    x = torch.randn(2, 3, 23, 19, dtype=torch.float64)
    for alpha in ([2.0, 1.6], [0.7, 3.1], [1.0, 1.0]):
        out = resizeops.dynopool2d(x, torch.tensor(alpha, dtype=torch.float64))
        ho, wo = out.shape[-2:]
        expected = F.max_pool2d(F.interpolate(x, (2 * ho, 2 * wo), mode="bilinear", align_corners=False), 2)
        assert_close(out, expected)


@pytest.mark.parametrize("seed", range(4))
def test_gradcheck_x(seed):
    # alpha's gradient is a straight-through surrogate (the forward is piecewise
    # constant in alpha), so gradcheck applies to x only (docs/SEMANTICS.md, DynOPool).
    torch.manual_seed(seed)
    rng = random.Random(seed)
    h, w = rng.randint(1, 9), rng.randint(1, 9)
    x = torch.randn(2, 2, h, w, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0)], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: resizeops.dynopool2d(t, alpha), (x,))


@pytest.mark.parametrize("n,c,h,w,ah,aw", CASES)
def test_alpha_grad_matches_autograd_of_reference(n, c, h, w, ah, aw):
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    alpha = torch.tensor([ah, aw], dtype=torch.float64, requires_grad=True)
    out = resizeops.dynopool2d(x, alpha)
    g = torch.randn_like(out)
    (ga,) = torch.autograd.grad(out, alpha, g)
    out_ref = resizeops.reference.dynopool2d(x, alpha, out.shape[-2:])  # plain autograd
    (ga_ref,) = torch.autograd.grad(out_ref, alpha, g)
    assert_close(ga, ga_ref)


@pytest.mark.parametrize(
    "n,c,h,w,ah,aw",
    [(2, 3, 13, 17, 1.93, 1.61), (1, 4, 20, 9, 0.73, 2.71), (2, 2, 6, 10, 5.0, 7.0), (1, 3, 9, 1, 1.37, 0.6)],
)
def test_alpha_grad_matches_finite_difference_in_real_size(n, c, h, w, ah, aw):
    # Query positions computed from a real-valued Ĥ = Ho + t; d<g, out>/dt by central
    # differences, times dĤ/dα_h = -H/α_h² (docs/SEMANTICS.md, DynOPool). The last two
    # cases have the min_size bound active on one or both axes: the gradient still flows.
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    alpha = torch.tensor([ah, aw], dtype=torch.float64, requires_grad=True)
    out = resizeops.dynopool2d(x, alpha)
    ho, wo = out.shape[-2:]
    g = torch.randn_like(out)
    (ga,) = torch.autograd.grad(out, alpha, g)
    eps = 1e-6

    def loss(dh, dw):
        return float((oracle.dynopool2d(x, (ho, wo), h_hat=ho + dh, w_hat=wo + dw) * g).sum())

    d_dh = (loss(eps, 0) - loss(-eps, 0)) / (2 * eps)
    d_dw = (loss(0, eps) - loss(0, -eps)) / (2 * eps)
    expected = torch.tensor([d_dh * (-h / ah**2), d_dw * (-w / aw**2)], dtype=torch.float64)
    assert_close(ga, expected, atol=1e-5, rtol=1e-5)  # central differences: O(eps^2) + rounding/eps
    assert ga.abs().sum() > 0


def test_ties_and_gradient_go_to_first_maximum():
    # A constant input: all four queries of a cell tie, so the gradient must follow
    # query (0,0) alone, as max_pool2d does.
    x = torch.ones(1, 1, 7, 9, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([1.3, 2.2], dtype=torch.float64)
    out = resizeops.dynopool2d(x, alpha)
    g = torch.randn_like(out)
    (gx,) = torch.autograd.grad(out, x, g)
    _, expected_gx = oracle.dynopool2d(x, out.shape[-2:], grad_out=g)
    assert_close(gx, expected_gx)


def test_nan_propagates():
    x = torch.randn(1, 2, 8, 8)
    x[0, 1, 3, 4] = float("nan")
    out = resizeops.dynopool2d(x, torch.tensor([2.0, 2.0]))
    assert torch.isnan(out[0, 1]).any()
    assert not torch.isnan(out[0, 0]).any()
    assert_close(out, oracle.dynopool2d(x, out.shape[-2:]))


def _strided_view(base, layout):
    """A non-contiguous view of ``base`` (N, C, H, W) laid out as ``layout``."""
    if layout == "channels_last":
        return base.contiguous(memory_format=torch.channels_last)
    if layout == "sliced":
        return base[:, ::2, 1:, ::2]
    if layout == "permuted":
        return base.permute(0, 1, 3, 2)
    assert layout == "sliced_channels_last"
    return base.contiguous(memory_format=torch.channels_last)[:, 1:-1, :, 3:]


@pytest.mark.parametrize("layout", ["channels_last", "sliced", "permuted", "sliced_channels_last"])
def test_strided_inputs(layout):
    x = _strided_view(torch.randn(2, 6, 15, 22, dtype=torch.float64), layout)
    assert not x.is_contiguous()
    x.requires_grad_(True)
    alpha = torch.tensor([1.9, 1.45], dtype=torch.float64, requires_grad=True)
    out = resizeops.dynopool2d(x, alpha)
    expected_format = torch.channels_last if "channels_last" in layout else torch.contiguous_format
    assert out.is_contiguous(memory_format=expected_format)
    g = torch.randn_like(out)
    expected, expected_gx = oracle.dynopool2d(x, out.shape[-2:], grad_out=g)
    assert_close(out, expected)
    gx, ga = torch.autograd.grad(out, (x, alpha), g)
    assert_close(gx, expected_gx)
    xc = x.detach().contiguous().requires_grad_(True)
    (ga_contig,) = torch.autograd.grad(resizeops.dynopool2d(xc, alpha), alpha, g.contiguous())
    assert_close(ga, ga_contig)


@pytest.mark.parametrize("shape", [(0, 3, 8, 8), (2, 0, 8, 8)])
def test_empty_batch_or_channels(shape):
    x = torch.randn(shape, requires_grad=True)
    alpha = torch.tensor([2.0, 1.6], requires_grad=True)
    out = resizeops.dynopool2d(x, alpha)
    assert out.shape == shape[:2] + (4, 5)
    out.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(alpha.grad, torch.zeros(2))


def test_half_alpha_and_float32_x_mix():
    # alpha may have its own floating dtype (e.g. a float32 parameter beside bf16
    # activations); its gradient keeps alpha's dtype, the output keeps x's.
    x = torch.randn(2, 3, 9, 9, dtype=torch.bfloat16, requires_grad=True)
    alpha = torch.tensor([1.5, 2.5], requires_grad=True)
    out = resizeops.dynopool2d(x, alpha)
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16 and alpha.grad.dtype == torch.float32
    x64 = x.detach().double().requires_grad_(True)
    a64 = alpha.detach().double().requires_grad_(True)
    resizeops.dynopool2d(x64, a64).sum().backward()
    assert_close(alpha.grad, a64.grad, atol=1e-2, rtol=1e-2)  # bf16 input and grad_out rounding
    assert math.isfinite(float(alpha.grad.sum()))


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


# ============================================================================
# 2. Every kernel backend against the reference (the cross-backend matrix)
# ============================================================================


# The CUDA kernels' per-element code run serially on the CPU (conftest.use_cuda_emulation),
# with their default forms: the GPU indexing and arithmetic, checked without a GPU.
# The experimental forms run the same tests in tests/test_dynopool2d_kernel_forms.py.
EMULATED = {
    # The defaults: grad_x scattered for float32/float64, gathered in 16-bit types.
    "cuda_emulated": KernelForms(),
    # The fixed-order gather (the deterministic mode's grad_x), in 3x3 tiles and as a loop.
    "cuda_emulated_tile": KernelForms(gather="tile", grad_x="gather"),
    "cuda_emulated_loop": KernelForms(gather="loop", grad_x="gather"),
}


BACKENDS = [
    pytest.param("cpu", id="cpu"),
    *(pytest.param(name, id=name) for name in EMULATED),
    pytest.param("triton", id="triton", marks=pytest.mark.triton),
    pytest.param("cuda", id="cuda", marks=pytest.mark.cuda),
]

# The kernel forms of the emulated backend a test runs on (test_int64_indexing_path).
EMULATED_FORMS = pytest.StashKey[KernelForms]()


def use_backend(request, monkeypatch, emulated):
    """The body of the ``backend`` fixtures (here and in test_dynopool2d_kernel_forms.py):
    ``request.param`` is a backend name, skipped where it cannot run, or a key of
    ``emulated`` ({name: KernelForms}): the CUDA kernels' CPU emulation with those forms,
    routed through the ``cpu`` backend (the forms are kept in the test's stash)."""
    name = request.param
    if name in emulated:
        request.node.stash[EMULATED_FORMS] = emulated[name]
        return use_cuda_emulation(monkeypatch, "dynopool2d", emulated[name])
    return require_backend(name, "dynopool2d")


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    return use_backend(request, monkeypatch, EMULATED)


def _backend_cases():
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


BACKEND_CASES = _backend_cases()


# grad_alpha is a sum over every output (and, for half types, of products of
# rounded inputs), so it is compared relative to its largest entry:
#   float64: summation order only (the kernels' partials vs grid_sample's sums);
#   float32: ~1e-7 per term, random-walk growth over a few thousand terms;
#   float16 / bfloat16: both sides compute in float32 from the same rounded
#   inputs, but grad_out is rounded to the half type before either side sees it,
#   and a near-tie can pick another query: a looser bound.
ALPHA_TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


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
    tol = ALPHA_TOL[dt]
    assert_close(ga, rga, dt, msg="grad_alpha", atol=tol * scale, rtol=tol)


@pytest.mark.parametrize("n,c,h,w,rh,rw", BACKEND_CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_reference(backend, n, c, h, w, rh, rw, dtype):
    dev = _device_for(backend)
    x = torch.randn(n, c, h, w, dtype=dtype).to(dev)
    alpha = torch.tensor([1 / rh, 1 / rw], dtype=dtype, device=dev)
    _compare(backend, x, alpha)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,c,h,w,rh,rw", BACKEND_CASES[:7])
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
    x = _strided_view(torch.randn(2, 36, 15, 22).to(dtype).to(dev), layout)
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
        tol = ALPHA_TOL[dtype]
        assert_close(ga, rga, dtype, msg=f"{name}: grad_alpha", atol=tol * scale, rtol=tol)


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
    forms = request.node.stash.get(EMULATED_FORMS, None)  # the emulation's forms (use_backend)
    if forms is not None:
        use_cuda_emulation(monkeypatch, "dynopool2d", dataclasses.replace(forms, force_int64=True))
    elif name in ("triton", "cuda"):
        use_forms(monkeypatch, name, "dynopool2d", KernelForms(force_int64=True))
    dev = _device_for(backend)
    base = torch.randn(2, 6, 13, 18, device=dev)
    x = {"contiguous": base, "channels_last": base.contiguous(memory_format=torch.channels_last),
         "sliced": base[:, 1::2, :, 2:]}[layout]
    _compare(backend, x, torch.tensor([1.6, 0.8], device=dev))


# ============================================================================
# 3. Triton only
# ============================================================================
# The Triton kernels (triton_kernels/dynopool.py) on a GPU, or on the CPU under the
# Triton interpreter: ``TRITON_INTERPRET=1 python -m pytest -m triton tests``; skipped
# elsewhere. The interpreter runs every program in Python, so shapes stay small; the
# scale range (r from 0.2 to 2.5) and the awkward sizes (odd, prime, 1, C = 40) are
# what matter here, not the size. (The Triton forms, rows and 8 warps, are in
# tests/test_dynopool2d_kernel_forms.py.)

def _triton_cases():
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


TRITON_CASES = _triton_cases()


def _triton_run(backend, x, alpha, g=None, out_size=None):
    """(out, grad_x, grad_alpha) of one call; ``g`` defaults to a seeded random grad_out."""
    x = x.detach().requires_grad_(True)
    alpha = alpha.detach().requires_grad_(True)
    out = resizeops.dynopool2d(x, alpha, out_size, backend=backend)
    if g is None:
        g = seeded(out.shape, out.dtype, seed=1)
    gx, ga = torch.autograd.grad(out, (x, alpha), g)
    return out, gx, ga


def _triton_compare(x, alpha, g=None, dtype=None):
    dt = dtype or x.dtype
    out, gx, ga = _triton_run("triton", x, alpha, g)
    ref, rgx, rga = _triton_run("reference", x, alpha, g)
    assert out.shape == ref.shape and out.dtype == ref.dtype and out.stride() == ref.stride()
    assert_close(out, ref, dt, msg="forward")
    assert gx.dtype == x.dtype and gx.stride() == rgx.stride()
    assert_close(gx, rgx, dt, msg="grad_x")
    assert ga.dtype == alpha.dtype and ga.shape == (2,)
    tol = ALPHA_TOL[dt]
    assert_close(ga, rga, dt, msg="grad_alpha", atol=tol * (float(rga.abs().max()) + 1.0), rtol=tol)
    return out, gx, ga


class TestTriton:
    """The Triton dynopool2d kernels against the reference backend (and the loop oracle)."""

    pytestmark = pytest.mark.triton

    @pytest.fixture(autouse=True)
    def _triton_runs_here(self):
        require_backend("triton", "dynopool2d")  # Triton importable, a GPU or TRITON_INTERPRET=1

    def test_triton_is_available_for_dynopool2d(self):
        (info,) = [b for b in resizeops.backends(TRITON_DEV, op="dynopool2d") if b.name == "triton"]
        assert info.available, info.reason
        assert "dynopool2d" in info.ops

    @pytest.mark.parametrize("dtype", TRITON_DTYPES, ids=str)
    @pytest.mark.parametrize("n,c,h,w,rh,rw", TRITON_CASES)
    def test_matches_reference(self, n, c, h, w, rh, rw, dtype):
        # conftest.TOL per dtype for forward and grad_x: half types are computed in
        # float32 by both sides from the same rounded inputs and rounded once.
        x = seeded((n, c, h, w), dtype)
        alpha_dtype = torch.float64 if dtype == torch.float64 else torch.float32  # float32 alpha beside half x
        alpha = torch.tensor([1 / rh, 1 / rw], dtype=alpha_dtype, device=TRITON_DEV)
        out, _, _ = _triton_compare(x, alpha)
        assert tuple(out.shape[-2:]) == oracle.dynopool_out_size(h, w, alpha.tolist())

    @pytest.mark.parametrize("n,c,h,w,rh,rw", TRITON_CASES[:4])
    def test_matches_float64_oracle(self, n, c, h, w, rh, rw):
        # Independent of grid_sample: the loop oracle written from docs/SEMANTICS.md, DynOPool.
        x = seeded((n, c, h, w), torch.float64)
        alpha = torch.tensor([1 / rh, 1 / rw], dtype=torch.float64, device=TRITON_DEV)
        out, gx, _ = _triton_run("triton", x, alpha)
        g = seeded(out.shape, torch.float64, seed=1)
        expected, expected_gx = oracle.dynopool2d(x.cpu(), out.shape[-2:], grad_out=g.cpu())
        assert_close(out.cpu(), expected)
        assert_close(gx.cpu(), expected_gx)

    @pytest.mark.parametrize("layout", ["nchw", "channels_last", "sliced", "permuted", "sliced_channels_last"])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
    def test_layouts(self, layout, dtype):
        # x is read through its strides (no copy); the output and grad_x are
        # contiguous in x's memory format, the same strides as the reference's.
        base = seeded((2, 12, 9, 14), dtype)
        x = {
            "nchw": lambda: base,
            "channels_last": lambda: base.contiguous(memory_format=torch.channels_last),
            "sliced": lambda: base[:, ::2, 1:, ::3],
            "permuted": lambda: base.permute(0, 1, 3, 2),
            "sliced_channels_last": lambda: base.contiguous(memory_format=torch.channels_last)[:, 1:11, :, 2:],
        }[layout]()
        alpha = torch.tensor([1.9, 1.45], device=TRITON_DEV)
        out, gx, _ = _triton_compare(x, alpha, dtype=dtype)
        fmt = torch.channels_last if "channels_last" in layout else torch.contiguous_format
        assert out.is_contiguous(memory_format=fmt) and gx.is_contiguous(memory_format=fmt)

    # (A transposed grad_out: the cross-backend test_non_contiguous_grad_out[triton].)
    @pytest.mark.parametrize("kind", ["sliced", "expanded"])
    def test_non_contiguous_grad_out(self, kind):
        x = seeded((2, 3, 12, 10), torch.float32)
        alpha = torch.tensor([2.0, 1.6], device=TRITON_DEV)
        n, c, ho, wo = resizeops.dynopool2d(x, alpha, backend="reference").shape
        if kind == "sliced":
            g = seeded((n, 2 * c, ho, 2 * wo), torch.float32)[:, ::2, :, 1::2]
        else:  # stride 0 on N and C: autograd's grad of out.sum()-like losses
            g = seeded((1, 1, ho, wo), torch.float32).expand(n, c, ho, wo)
        assert not g.is_contiguous()
        got = _triton_run("triton", x, alpha, g)
        want = _triton_run("reference", x, alpha, g.contiguous())
        for name, a, b in zip(("forward", "grad_x", "grad_alpha"), got, want):
            assert_close(a, b, atol=1e-4, rtol=1e-4, msg=name)

    def test_nan_propagates(self):
        x = seeded((1, 3, 8, 9), torch.float32)
        x[0, 1, 3, 4] = float("nan")
        alpha = torch.tensor([1.6, 1.3], device=TRITON_DEV)
        out, gx, ga = _triton_run("triton", x, alpha)
        ref, rgx, rga = _triton_run("reference", x, alpha)
        assert torch.isnan(out[0, 1]).any() and not torch.isnan(out[0, 0]).any()
        assert torch.equal(torch.isnan(out), torch.isnan(ref))
        assert_close(out, ref)
        # The NaN query wins the max, so the gradient goes to its taps: finite values.
        assert_close(gx, rgx)
        assert torch.isnan(ga).any() and torch.equal(torch.isnan(ga), torch.isnan(rga))

    @pytest.mark.parametrize("value,alpha_w", [(0.0, 1.3), (1.0, 2.0)])
    def test_ties_go_to_the_first_query(self, value, alpha_w):
        # A constant plane where all four queries of a cell tie exactly, whatever the
        # rounding (FMA contraction included): value 0, or value 1 with every query on a
        # pixel centre (H = 2·Ho, W = 2·Wo: integer source coordinates). The whole
        # gradient must follow query (0,0), as max_pool2d does. Checked against the
        # loop oracle and the reference.
        x = torch.full((1, 2, 8, 10), value, dtype=torch.float64, device=TRITON_DEV)
        alpha = torch.tensor([2.0, alpha_w], dtype=torch.float64, device=TRITON_DEV)
        out, gx, _ = _triton_run("triton", x, alpha)
        g = seeded(out.shape, torch.float64, seed=1)
        expected, expected_gx = oracle.dynopool2d(x.cpu(), out.shape[-2:], grad_out=g.cpu())
        assert_close(out.cpu(), expected)
        assert_close(gx.cpu(), expected_gx)
        _, rgx, _ = _triton_run("reference", x, alpha)
        assert_close(gx, rgx)

    def test_only_the_needed_gradients(self):
        x = seeded((2, 3, 9, 9), torch.float32)
        alpha = torch.tensor([1.5, 2.5], device=TRITON_DEV)
        a = alpha.clone().requires_grad_(True)
        (ga,) = torch.autograd.grad(resizeops.dynopool2d(x, a, backend="triton").sum(), a)
        (rga,) = torch.autograd.grad(resizeops.dynopool2d(x, a, backend="reference").sum(), a)
        assert_close(ga, rga, atol=1e-4 * (float(rga.abs().max()) + 1), rtol=1e-4)
        xg = x.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(resizeops.dynopool2d(xg, alpha, backend="triton").sum(), xg)
        (rgx,) = torch.autograd.grad(resizeops.dynopool2d(xg, alpha, backend="reference").sum(), xg)
        assert_close(gx, rgx)
        # The kernel entry points skip what is not asked for.
        from resizeops.triton_kernels import dynopool

        g = torch.ones(2, 3, 6, 4, device=TRITON_DEV)
        gx_only = dynopool.dynopool2d_backward(g, x, (6, 4), False, need_x=True, need_size=False)
        size_only = dynopool.dynopool2d_backward(g, x, (6, 4), False, need_x=False, need_size=True)
        assert gx_only[1] is None and size_only[0] is None
        assert size_only[1].dtype == torch.float64 and size_only[1].shape == (2,)

    def test_size_gradient_is_deterministic(self):
        # grad_x uses atomics, but the size gradients come from per-program partials
        # summed in a fixed order: bit-identical run to run, on the GPU too.
        x = seeded((2, 40, 7, 6), torch.float32)
        alpha = torch.tensor([0.8, 1.3], device=TRITON_DEV)
        first = _triton_run("triton", x, alpha)[2]
        second = _triton_run("triton", x, alpha)[2]
        assert torch.equal(first, second)

    def test_empty_batch(self):
        # N = 0 is handled by the op before any kernel runs.
        x = torch.randn(0, 3, 8, 8, device=TRITON_DEV, requires_grad=True)
        alpha = torch.tensor([2.0, 1.6], device=TRITON_DEV, requires_grad=True)
        out = resizeops.dynopool2d(x, alpha, backend="triton")
        assert out.shape == (0, 3, 4, 5)
        out.sum().backward()
        assert x.grad.shape == x.shape and torch.equal(alpha.grad, torch.zeros(2, device=TRITON_DEV))

    def test_deterministic_mode_refuses_the_triton_backward(self):
        # grad_x is scattered with atomics: the backend declares its backward
        # non-deterministic, so asking for it by name under deterministic algorithms
        # raises (the forward is fine), warns under warn_only, and automatic selection
        # routes around it.
        assert not _dispatch.get_backend("triton").kernels["dynopool2d"].deterministic_backward(TRITON_DEV)
        x = seeded((1, 2, 6, 7), torch.float32).requires_grad_(True)
        alpha = torch.tensor([1.5, 1.5], device=TRITON_DEV)
        torch.use_deterministic_algorithms(True)
        out = resizeops.dynopool2d(x, alpha, backend="triton")
        with pytest.raises(RuntimeError, match="backend 'triton' .* not deterministic"):
            out.sum().backward()
        torch.use_deterministic_algorithms(True, warn_only=True)
        with pytest.warns(UserWarning, match="not deterministic"):
            resizeops.dynopool2d(x, alpha, backend="triton").sum().backward()
        if TRITON_DEV.type == "cpu":
            torch.use_deterministic_algorithms(True)
            chosen = _dispatch.select("dynopool2d", TRITON_DEV, None, for_backward=True)
            assert chosen is not _dispatch.get_backend("triton").kernels["dynopool2d"]

    def test_gradcheck_x_float64(self):
        # Tiny: gradcheck launches one forward per input element.
        x = seeded((1, 2, 3, 4), torch.float64).requires_grad_(True)
        alpha = torch.tensor([0.7, 1.6], dtype=torch.float64, device=TRITON_DEV)
        assert torch.autograd.gradcheck(lambda t: resizeops.dynopool2d(t, alpha, backend="triton"), (x,))

    def test_torch_compile_fullgraph_with_cached_size(self):
        # The public op is a torch.library custom op with a fake kernel: with the size
        # cached (out_size) there is no host read of alpha and no graph break.
        torch._dynamo.reset()
        x = seeded((2, 3, 11, 9), torch.float32)
        alpha = torch.tensor([1.7, 0.9], device=TRITON_DEV)
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


# ============================================================================
# 4. CUDA only (GPU)
# ============================================================================
# Skipped without a GPU; `pytest -m cuda` selects them. The CUDA kernels against the
# C++ CPU kernel and their serial emulation, opcheck on CUDA tensors, a non-default
# stream, empty and degenerate shapes, large channel counts. (The CUDA kernels against
# their emulation per kernel form are in tests/test_dynopool2d_kernel_forms.py.)

class TestCuda:
    """The CUDA dynopool2d kernels on a GPU."""

    pytestmark = CUDA_ONLY

    @pytest.fixture(autouse=True)
    def _needs_cuda_kernels(self):
        require_cuda_kernels()

    @pytest.mark.parametrize("cl", [False, True])
    @pytest.mark.parametrize(
        "shape,out", [((2, 5, 13, 17), (7, 10)), ((1, 300, 9, 31), (4, 20)), ((3, 2, 1, 8), (3, 3))]
    )
    def test_cuda_matches_cpu_kernels(self, shape, out, cl):
        # Same math (math.h), same order: the CUDA kernel agrees with its own CPU
        # emulation and the C++ CPU kernel to float32 rounding (FMA contraction).
        x = cpu_randn(shape, cl=cl)
        g = cpu_randn((shape[0], shape[1], *out), cl=cl, seed=1)
        got = EXT.dynopool2d_forward(x.cuda(), *out, cl, DEFAULT_FORMS).cpu()
        assert_close(got, EXT._dynopool2d_forward_emulated(x, *out, cl, DEFAULT_FORMS), torch.float32)
        assert_close(got, EXT.dynopool2d_forward(x, *out, cl, DEFAULT_FORMS), torch.float32)
        gx, gs = EXT.dynopool2d_backward(g.cuda(), x.cuda(), *out, cl, True, True, DEFAULT_FORMS)
        cgx, cgs = EXT._dynopool2d_backward_emulated(g, x, *out, cl, True, True, DEFAULT_FORMS)
        assert gx.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        assert_close(gx.cpu(), cgx, torch.float32)
        assert_close(gs.cpu(), cgs, atol=1e-3 * (1 + float(cgs.abs().max())), rtol=1e-4)

    @pytest.mark.parametrize("cl", [False, True])
    @pytest.mark.parametrize("mask", [(True, True), (True, False), (False, True)])
    def test_opcheck_cuda(self, cl, mask):
        x = cpu_randn((2, 3, 11, 9), cl=cl).cuda()
        opcheck(EXT.dynopool2d_forward.default, (x, 6, 5, cl, DEFAULT_FORMS))
        g = cpu_randn((2, 3, 6, 5), cl=cl, seed=3).cuda()
        opcheck(EXT.dynopool2d_backward.default, (g, x, 6, 5, cl, *mask, DEFAULT_FORMS))
        alpha = torch.tensor([1.8, 1.7], device="cuda", requires_grad=True)
        opcheck(torch.ops.resizeops.dynopool2d.default, (x.detach().requires_grad_(mask[0]), alpha, [6, 5], "cuda"))

    def test_empty_and_degenerate(self):
        for shape in [(0, 3, 8, 8), (2, 0, 8, 8)]:
            x = torch.randn(shape, device="cuda", requires_grad=True)
            alpha = torch.tensor([2.0, 2.0], device="cuda", requires_grad=True)
            out = resizeops.dynopool2d(x, alpha, backend="cuda")
            assert out.shape == (shape[0], shape[1], 4, 4)
            gx, ga = torch.autograd.grad(out.sum(), (x, alpha))
            assert gx.shape == x.shape and float(ga.abs().sum()) == 0.0
        x = torch.randn(1, 1, 1, 1, device="cuda")
        out = resizeops.dynopool2d(x, torch.tensor([0.4, 0.4], device="cuda"), backend="cuda")
        assert torch.equal(out, x.expand(1, 1, 2, 2))

    def test_runs_on_the_current_stream(self):
        x = torch.randn(4, 16, 64, 48, device="cuda", requires_grad=True)
        alpha = torch.tensor([1.7, 1.3], device="cuda", requires_grad=True)
        want = resizeops.dynopool2d(x, alpha, backend="cuda")
        (want_gx,) = torch.autograd.grad(want.sum(), x)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            got = resizeops.dynopool2d(x, alpha, backend="cuda")
            (gx,) = torch.autograd.grad(got.sum(), x)
        torch.cuda.current_stream().wait_stream(s)
        # grad_x: float32 scatters with atomics (order not fixed), so equal to rounding.
        assert torch.equal(got, want)
        assert_close(gx, want_gx, torch.float32)

    def test_default_backend_on_cuda_is_cuda(self):
        dev = torch.device("cuda")
        cuda = _dispatch.get_backend("cuda").kernels["dynopool2d"]
        assert _dispatch.select("dynopool2d", dev, None) is cuda
        # The gather backward is deterministic: still chosen (conftest restores the mode).
        torch.use_deterministic_algorithms(True)
        assert _dispatch.select("dynopool2d", dev, None, for_backward=True) is cuda
