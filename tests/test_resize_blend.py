"""resizeops.resize_blend on the reference backend against docs/SEMANTICS.md, resize_blend,
and the two methods it serves."""

import math
import random

import oracle
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close

import resizeops


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
