"""docs/SEMANTICS.md, Bad input: every rejected input raises a TypeError/ValueError naming the argument, before any kernel runs."""

import pytest
import torch

import resizeops

X = torch.randn(2, 3, 8, 8)
ALPHA = torch.tensor([2.0, 2.0])


def _no_kernel(monkeypatch):
    """Make any kernel call fail loudly, proving that the checks run first."""
    from resizeops.core import _dispatch

    def boom(*a, **k):
        raise AssertionError("a kernel was reached with bad input")

    monkeypatch.setattr(_dispatch, "select", boom)


DYNOPOOL_BAD = [
    # (kwargs, exception, words the message must contain)
    (dict(x=[[1.0]]), TypeError, ["`x`", "torch.Tensor", "list"]),
    (dict(x=torch.randn(3, 8, 8)), ValueError, ["`x`", "4-D", "3-D"]),
    (dict(x=torch.randn(1, 2, 3, 8, 8)), ValueError, ["`x`", "4-D", "5-D"]),
    (dict(x=torch.randint(0, 5, (2, 3, 8, 8))), TypeError, ["`x`", "float", "torch.int64"]),
    (dict(x=torch.randn(2, 3, 0, 8)), ValueError, ["`x`", "H ≥ 1", "(2, 3, 0, 8)"]),
    (dict(alpha=2.0), TypeError, ["`alpha`", "shape (2,)", "float"]),
    (dict(alpha=torch.tensor([2.0])), ValueError, ["`alpha`", "shape (2,)", "(1)"]),
    (dict(alpha=torch.tensor([[2.0, 2.0]])), ValueError, ["`alpha`", "shape (2,)", "(1, 2)"]),
    (dict(alpha=torch.tensor([2, 2])), TypeError, ["`alpha`", "floating", "torch.int64"]),
    (dict(alpha=torch.tensor([0.0, 2.0])), ValueError, ["`alpha`", "> 0", "alpha_h = 0.0"]),
    (dict(alpha=torch.tensor([2.0, -1.0])), ValueError, ["`alpha`", "> 0", "alpha_w = -1.0"]),
    (dict(alpha=torch.tensor([float("nan"), 2.0])), ValueError, ["`alpha`", "finite", "nan"]),
    (dict(alpha=torch.tensor([2.0, float("inf")])), ValueError, ["`alpha`", "finite", "inf"]),
    (dict(alpha=torch.tensor([1e-9, 1e-9])), ValueError, ["`alpha`", "MAX_OUTPUT_NUMEL", "elements"]),
    # float64 alpha so small that H/alpha overflows to inf (was an OverflowError), or whose
    # output size overflows float64 when formatted (1e-306 on both axes).
    (dict(alpha=torch.tensor([1e-308, 2.0], dtype=torch.float64)), ValueError, ["`alpha`", "too small", "8/alpha_h"]),
    (dict(alpha=torch.tensor([2.0, 5e-324], dtype=torch.float64)), ValueError, ["`alpha`", "too small", "alpha_w"]),
    (dict(alpha=torch.tensor([1e-30, 2.0], dtype=torch.float64)), ValueError, ["`alpha`", "MAX_OUTPUT_NUMEL"]),
    (dict(alpha=torch.tensor([1e-306, 1e-306], dtype=torch.float64)), ValueError, ["`alpha`", "MAX_OUTPUT_NUMEL"]),
    (dict(out_size=(4, 0)), ValueError, ["`out_size`", "≥ 1", "(4, 0)"]),
    (dict(out_size=(4, -3)), ValueError, ["`out_size`", "≥ 1", "(4, -3)"]),
    (dict(out_size=(4,)), ValueError, ["`out_size`", "pair", "1 entries"]),
    (dict(out_size=(4.0, 4.0)), TypeError, ["`out_size`", "ints", "4.0"]),
    (dict(out_size=4), TypeError, ["`out_size`", "pair of ints", "int"]),
    (dict(out_size=(10**6, 10**6)), ValueError, ["`out_size`", "MAX_OUTPUT_NUMEL", "1000000"]),
    (dict(min_size=0), ValueError, ["`min_size`", "≥ 1", "0"]),
    (dict(min_size=1.5), TypeError, ["`min_size`", "int", "float"]),
]


@pytest.mark.parametrize("kwargs,exc,words", DYNOPOOL_BAD, ids=[str(i) for i in range(len(DYNOPOOL_BAD))])
def test_dynopool2d_bad_input(monkeypatch, kwargs, exc, words):
    _no_kernel(monkeypatch)
    args = dict(x=X, alpha=ALPHA)
    args.update(kwargs)
    with pytest.raises(exc) as info:
        resizeops.dynopool2d(**args)
    msg = str(info.value)
    assert msg.startswith("dynopool2d:")
    for word in words:
        assert word in msg, f"{word!r} not in {msg!r}"


def test_dynopool2d_bad_backend_name():
    with pytest.raises(ValueError, match="backend='gpu' is not a backend"):
        resizeops.dynopool2d(X, ALPHA, backend="gpu")
    with pytest.raises(TypeError, match="backend must be a backend name"):
        resizeops.dynopool2d(X, ALPHA, backend=1)


OUTPUT_SIZE_BAD = [
    (((8, 8), (0, 1)), ValueError, ["`alpha`", "> 0", "alpha_h = 0.0"]),  # was a ZeroDivisionError
    (((8, 8), (2.0, -1.0)), ValueError, ["`alpha`", "> 0", "alpha_w = -1.0"]),
    (((8, 8), (float("nan"), 1.0)), ValueError, ["`alpha`", "finite"]),
    (((8, 8), (1e-320, 1.0)), ValueError, ["`alpha`", "too small"]),
    (((8, 8), (10**400, 1.0)), ValueError, ["`alpha`", "float64", "401 digits"]),
    (((8, 8), (2.0,)), TypeError, ["`alpha`", "two numbers"]),
    (((8, 8), "ab"), TypeError, ["`alpha`", "two numbers"]),
    (((8, 8), (2.0, "x")), TypeError, ["`alpha`", "two numbers"]),
    (((8, 8), torch.tensor([2.0])), ValueError, ["`alpha`", "two values"]),
    (((8, 8), torch.tensor([2.0, 2.0], device="meta")), ValueError, ["`alpha`", "meta", "`out_size`"]),
]


@pytest.mark.parametrize("args,exc,words", OUTPUT_SIZE_BAD, ids=[str(i) for i in range(len(OUTPUT_SIZE_BAD))])
def test_dynopool2d_output_size_bad_input(args, exc, words):
    with pytest.raises(exc) as info:
        resizeops.dynopool2d_output_size(*args)
    msg = str(info.value)
    assert msg.startswith("dynopool2d_output_size:")
    for word in words:
        assert word in msg, f"{word!r} not in {msg!r}"


def test_dynopool2d_output_size_accepts_numbers_and_tensors():
    assert resizeops.dynopool2d_output_size((8, 9), (2, 1.5)) == (4, 6)
    assert resizeops.dynopool2d_output_size((8, 9), torch.tensor([2.0, 1.5])) == (4, 6)
    assert resizeops.dynopool2d_output_size((8, 9), [torch.tensor(2.0), torch.tensor(1.5)]) == (4, 6)
    assert resizeops.dynopool2d_output_size((8, 9), (100.0, 100.0), min_size=3) == (3, 3)


def test_dynopool2d_on_meta_tensors_needs_out_size(monkeypatch):
    """A meta alpha has no values to compute the output size from: a ValueError naming
    `alpha` and `out_size` (was NotImplementedError "Cannot copy out of meta tensor");
    with `out_size` the op runs on meta tensors (shapes only)."""
    x = torch.randn(2, 3, 8, 8, device="meta")
    alpha = torch.tensor([2.0, 2.0], device="meta")
    with pytest.raises(ValueError, match=r"dynopool2d: `alpha` is on the meta device.*pass `out_size`"):
        resizeops.dynopool2d(x, alpha)
    out = resizeops.dynopool2d(x, alpha, out_size=(4, 4))
    assert out.device.type == "meta" and out.shape == (2, 3, 4, 4)


def test_dynopool2d_alpha_on_another_device_is_named():
    meta_alpha = torch.tensor([2.0, 2.0], device="meta")
    with pytest.raises(ValueError, match=r"`alpha` is on meta but `x` is on cpu"):
        resizeops.dynopool2d(X, meta_alpha)


X1 = torch.randn(2, 3, 4, 4)
X2 = torch.randn(2, 3, 8, 8)

BLEND_BAD = [
    (dict(x1=None), TypeError, ["`x1`", "torch.Tensor", "NoneType"]),
    (dict(x2=torch.randn(3, 8, 8)), ValueError, ["`x2`", "4-D", "3-D"]),
    (dict(x1=torch.randint(0, 3, (2, 3, 4, 4))), TypeError, ["`x1`", "float", "torch.int64"]),
    (dict(x2=torch.randn(2, 3, 8, 8, dtype=torch.float64)), TypeError, ["`x1` and `x2`", "one dtype", "torch.float64"]),
    (dict(x2=torch.randn(2, 4, 8, 8)), ValueError, ["`x1` and `x2`", "same N and C", "(2, 4, 8, 8)"]),
    (dict(x2=torch.randn(3, 3, 8, 8)), ValueError, ["`x1` and `x2`", "same N and C"]),
    (dict(x2=torch.randn(2, 3, 8, 8, device="meta")), ValueError, ["`x2` is on meta", "`x1` is on cpu"]),
    (dict(w1=torch.tensor([0.5, 0.5])), ValueError, ["`w1`", "0-d", "(2)"]),
    (dict(w2=torch.tensor(1)), TypeError, ["`w2`", "floating", "torch.int64"]),
    (dict(w2="0.5"), TypeError, ["`w2`", "float", "str"]),
    (dict(w1=True), TypeError, ["`w1`", "float", "bool"]),
    (dict(w1=torch.tensor(0.5, device="meta")), ValueError, ["`w1` is on meta"]),
    (dict(size=(0, 4)), ValueError, ["`size`", "≥ 1", "(0, 4)"]),
    (dict(size=(-1, 4)), ValueError, ["`size`", "≥ 1", "(-1, 4)"]),
    (dict(size=(4, 4, 4)), ValueError, ["`size`", "pair", "3 entries"]),
    (dict(size="44"), TypeError, ["`size`", "pair of ints", "str"]),
    (dict(size=(10**6, 10**6)), ValueError, ["`size`", "MAX_OUTPUT_NUMEL"]),
    (dict(align_corners=1), TypeError, ["`align_corners`", "bool", "int"]),
    (dict(scales=(2.0,)), TypeError, ["`scales`", "pair", "(2.0,)"]),
    (dict(scales=((0.0, 2.0), None)), ValueError, ["`scales[0]`", "> 0", "(0.0, 2.0)"]),
    (dict(scales=(None, (float("nan"), 1.0))), ValueError, ["`scales[1]`", "finite"]),
    (dict(scales=(("a", 2), None)), TypeError, ["`scales[0]`", "floats"]),
    (dict(scales=((1.0, 1.0), None), size=(6, 6)), ValueError, ["`scales[0]`", "smaller than `size`", "(4, 4)"]),
    # A Python number beyond float64 (was an OverflowError).
    (dict(w1=10**400), ValueError, ["`w1`", "float64", "401 digits"]),
    (dict(w2=-(10**309)), ValueError, ["`w2`", "float64"]),
    (dict(scales=((10**400, 2), None)), ValueError, ["`scales[0]`", "float64"]),
    # A scale whose full interpolate output is over the limit, however small the crop
    # (30000 on 4x4 asked the reference for 230 GB; 1e12 and 1e300 failed inside torch).
    (dict(scales=((30000, 30000), None), align_corners=False), ValueError,
     ["`scales[0]`", "MAX_OUTPUT_NUMEL", "120000×120000"]),
    (dict(scales=(None, (1e12, 1.0))), ValueError, ["`scales[1]`", "MAX_OUTPUT_NUMEL"]),
    (dict(scales=((1e300, 1e300), None)), ValueError, ["`scales[0]`", "MAX_OUTPUT_NUMEL", "e+601"]),
]


@pytest.mark.parametrize("kwargs,exc,words", BLEND_BAD, ids=[str(i) for i in range(len(BLEND_BAD))])
def test_resize_blend_bad_input(monkeypatch, kwargs, exc, words):
    _no_kernel(monkeypatch)
    args = dict(x1=X1, x2=X2, w1=0.5, w2=0.5, size=(6, 6))
    args.update(kwargs)
    with pytest.raises(exc) as info:
        resizeops.resize_blend(**args)
    msg = str(info.value)
    assert msg.startswith("resize_blend:")
    for word in words:
        assert word in msg, f"{word!r} not in {msg!r}"


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_scale_limit_counts_the_full_interpolate_output(monkeypatch, backend):
    """The limit applies to floor(H·s) × floor(W·s) of a scaled input, on every backend
    (the check runs before the backend is chosen): 2·3·(4·9)² = 7776 elements."""
    args = (X1, X2, 1.0, 1.0, (6, 6), False, ((9, 9), None))
    monkeypatch.setattr(resizeops, "MAX_OUTPUT_NUMEL", 7775)
    with pytest.raises(ValueError, match=r"`scales\[0\]`.*7\.776e\+03 elements"):
        resizeops.resize_blend(*args, backend=backend)
    monkeypatch.setattr(resizeops, "MAX_OUTPUT_NUMEL", 7776)
    if backend == "cpu" and not resizeops.backends("cpu", "resize_blend")[2].available:
        pytest.skip("the compiled extension is not loaded")
    assert resizeops.resize_blend(*args, backend=backend).shape == (2, 3, 6, 6)


def test_output_limit_is_settable(monkeypatch):
    monkeypatch.setattr(resizeops, "MAX_OUTPUT_NUMEL", 95)
    with pytest.raises(ValueError, match="MAX_OUTPUT_NUMEL"):
        resizeops.dynopool2d(X, ALPHA)  # 2*3*4*4 = 96 elements
    monkeypatch.setattr(resizeops, "MAX_OUTPUT_NUMEL", 96)
    resizeops.dynopool2d(X, ALPHA)


def test_nothing_is_modified_in_place():
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    alpha = torch.tensor([1.5, 2.5], requires_grad=True)
    x1 = torch.randn(2, 3, 4, 4, requires_grad=True)
    w = torch.tensor(0.5, requires_grad=True)
    tensors = [x, alpha, x1, w]
    before = [(t.detach().clone(), t._version) for t in tensors]
    resizeops.dynopool2d(x, alpha).sum().backward()
    resizeops.resize_blend(x1, x, w, 0.5, (5, 5)).sum().backward()
    for t, (copy, version) in zip(tensors, before):
        assert torch.equal(t.detach(), copy) and t._version == version
