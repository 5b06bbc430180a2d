"""resizeops.dynopool2d on the reference backend against docs/SEMANTICS.md, DynOPool (float64 oracle, gradients)."""

import math
import random

import oracle
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close

import resizeops


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


@pytest.mark.parametrize("layout", ["channels_last", "sliced", "permuted", "sliced_channels_last"])
def test_strided_inputs(layout):
    base = torch.randn(2, 6, 15, 22, dtype=torch.float64)
    if layout == "channels_last":
        x = base.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = base[:, ::2, 1:, ::2]
    elif layout == "permuted":
        x = base.permute(0, 1, 3, 2)
    else:
        x = base.contiguous(memory_format=torch.channels_last)[:, 1:5, :, 3:]
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
