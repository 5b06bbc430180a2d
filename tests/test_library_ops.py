"""torch.library integration: opcheck on every op, torch.compile, double backward refused."""

import pytest
import torch
from torch.library import opcheck

import resizeops

ops = torch.ops.resizeops


def _x(shape, cl=False, grad=True, dtype=torch.float32):
    t = torch.randn(shape, dtype=dtype)
    if cl:
        t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(grad)


DYNOPOOL_ARGS = [
    (_x((2, 3, 9, 11)), torch.tensor([1.7, 1.37], requires_grad=True), [5, 8], None),
    (_x((2, 3, 9, 11), cl=True), torch.tensor([0.7, 2.0], requires_grad=True), [13, 6], "reference"),
    (_x((1, 2, 1, 5), dtype=torch.float64), torch.tensor([0.5, 2.5], dtype=torch.float64), [2, 2], None),
    (_x((2, 3, 9, 11), grad=False), torch.tensor([1.7, 1.37], requires_grad=True), [5, 8], None),
    (_x((0, 3, 9, 11)), torch.tensor([1.7, 1.37], requires_grad=True), [5, 8], None),
]


@pytest.mark.parametrize("args", DYNOPOOL_ARGS)
def test_opcheck_dynopool2d(args):
    opcheck(ops.dynopool2d.default, args)


@pytest.mark.parametrize("mask", [[True, True], [True, False], [False, True]])
@pytest.mark.parametrize("cl", [False, True])
def test_opcheck_dynopool2d_backward(mask, cl):
    x = _x((2, 3, 9, 11), cl=cl, grad=False)
    g = torch.randn(2, 3, 5, 8)
    opcheck(ops._dynopool2d_backward.default, (g, x, torch.tensor([1.7, 1.37]), [5, 8], None, mask))


BLEND_ARGS = [
    (_x((2, 3, 5, 7)), _x((2, 3, 9, 13)), torch.tensor(0.3, requires_grad=True), torch.tensor(0.7), [7, 9], True, None, None, None),
    (_x((2, 3, 5, 7), cl=True), _x((2, 3, 9, 13)), torch.tensor(1.0), torch.tensor(1.0), [9, 13], False, [2.0, 2.0], None, None),
    (_x((2, 3, 5, 7)), _x((2, 3, 9, 13), cl=True), torch.tensor(1.0), torch.tensor(1.0), [10, 13], False, [2.0, 2.0], [1.25, 1.0], "reference"),
    (_x((2, 3, 9, 13), dtype=torch.float64), _x((2, 3, 9, 13), dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64), [9, 13], True, None, None, None),
]


@pytest.mark.parametrize("args", BLEND_ARGS)
def test_opcheck_resize_blend(args):
    opcheck(ops.resize_blend.default, args)


@pytest.mark.parametrize("mask", [[True, True, True, True], [False, True, False, True], [True, False, True, False]])
def test_opcheck_resize_blend_backward(mask):
    x1, x2 = _x((2, 3, 5, 7), grad=False), _x((2, 3, 9, 13), cl=True, grad=False)
    g = torch.randn(2, 3, 10, 13)
    w = torch.tensor(0.5)
    opcheck(ops._resize_blend_backward.default, (g, x1, x2, w, w, [10, 13], False, [2.0, 2.0], None, None, mask))


@pytest.mark.parametrize("backend", [None, "reference"])  # the C++ autograd (cpu) and the Python one
def test_double_backward_is_refused_clearly(backend):
    with resizeops.use_backend(backend):
        _double_backward_refused()


def _double_backward_refused():
    x = _x((1, 2, 6, 6), dtype=torch.float64)
    alpha = torch.tensor([1.5, 1.5], dtype=torch.float64, requires_grad=True)
    out = resizeops.dynopool2d(x, alpha)
    (gx,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="dynopool2d: double backward .* is not supported"):
        gx.sum().backward()
    x1 = _x((1, 2, 3, 3), dtype=torch.float64)
    out = resizeops.resize_blend(x1, x1, 0.5, 0.5, (5, 5))
    (gx1,) = torch.autograd.grad(out.sum(), x1, create_graph=True)
    with pytest.raises(RuntimeError, match="resize_blend: double backward .* is not supported"):
        gx1.sum().backward()
    x = _x((1, 2, 6, 6), dtype=torch.float64)
    out = resizeops.shape_adaptor_maxpool(x, 0.5, 0.5, (5, 5))
    (gx,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="shape_adaptor_maxpool: double backward .* is not supported"):
        gx.sum().backward()


def _three_calls(public, backend=None, device="cpu"):
    """(name, call, inputs) of each op: through the public function when ``public``,
    else through the custom op directly."""
    torch.manual_seed(0)

    def leaf(t):
        return t.to(device).detach().requires_grad_(True)

    x = leaf(_x((2, 3, 9, 11), cl=True))
    alpha = leaf(torch.tensor([1.7, 1.37]))
    x1, x2 = leaf(_x((2, 3, 5, 7))), leaf(_x((2, 3, 9, 13)))
    w1, w2 = leaf(torch.tensor(0.3)), leaf(torch.tensor(-0.7))
    b = backend
    if public:
        return [
            ("dynopool2d", lambda: resizeops.dynopool2d(x, alpha, out_size=(5, 8), backend=b), (x, alpha)),
            ("resize_blend", lambda: resizeops.resize_blend(x1, x2, w1, w2, (7, 9), backend=b), (x1, x2, w1, w2)),
            ("shape_adaptor_maxpool", lambda: resizeops.shape_adaptor_maxpool(x, w1, w2, (7, 6), backend=b), (x, w1, w2)),
        ]  # fmt: skip
    return [
        ("dynopool2d", lambda: ops.dynopool2d(x, alpha, [5, 8], b), (x, alpha)),
        ("resize_blend", lambda: ops.resize_blend(x1, x2, w1, w2, [7, 9], True, None, None, b), (x1, x2, w1, w2)),
        ("shape_adaptor_maxpool", lambda: ops.shape_adaptor_maxpool(x, w1, w2, [7, 6], True, b), (x, w1, w2)),
    ]


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_public_functions_record_the_custom_ops_autograd(backend):
    # One autograd path: eager calls record the custom op's registered autograd,
    # as traced ones do; each subset of needed gradients gives the same values.
    if backend == "cpu" and "cpu" not in [b.name for b in resizeops.backends("cpu") if b.available]:
        pytest.skip("no C++ CPU kernels in this build")
    for name, call, inputs in _three_calls(True, backend):
        out = call()
        assert "GeneratedBackwardFor_resizeops" in out.grad_fn.name(), (name, out.grad_fn.name())
        g = torch.randn(out.shape)
        full = torch.autograd.grad(out, inputs, g)
        for k in range(len(inputs)):  # one input needing a gradient at a time
            for t in inputs:
                t.requires_grad_(t is inputs[k])
            (gk,) = torch.autograd.grad(call(), inputs[k], g)
            assert torch.equal(gk, full[k]) and gk.stride() == full[k].stride(), (name, k)
        for t in inputs:
            t.requires_grad_(True)
        with torch.no_grad():
            assert call().grad_fn is None
        with torch.inference_mode():
            assert torch.equal(call(), out.detach())


def test_intercepting_modes_see_the_custom_ops():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(str(func))
            return func(*args, **(kwargs or {}))

    for name, call, _ in _three_calls(True):
        with Record() as rec:
            call()
        assert f"resizeops.{name}.default" in rec.names, (name, rec.names)


def test_compile_fullgraph_with_out_size():
    # A cached out_size (docs/SEMANTICS.md, Shapes as state) keeps alpha on the device: no host read, no graph break.
    def f(x, alpha, x2, w):
        y = resizeops.dynopool2d(x, alpha, out_size=(5, 8))
        return resizeops.resize_blend(y, x2, w, 1.0 - w, (7, 9)) * 2

    x = _x((2, 3, 9, 11))
    x2 = _x((2, 3, 9, 11))
    alpha = torch.tensor([1.7, 1.37], requires_grad=True)
    w = torch.tensor(0.25, requires_grad=True)
    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True)
    out = compiled(x, alpha, x2, w)
    expected = f(x, alpha, x2, w)
    torch.testing.assert_close(out, expected)
    got = torch.autograd.grad(out.sum(), (x, alpha, x2, w))
    want = torch.autograd.grad(expected.sum(), (x, alpha, x2, w))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_compiled_call_sees_use_backend_changes():
    # The backend asked for by the context manager is read while tracing; a later
    # change of it must not be baked into the compiled graph.
    f = torch.compile(lambda x, a: resizeops.dynopool2d(x, a, out_size=(4, 4)), backend="aot_eager", fullgraph=True)
    x, a = torch.randn(1, 1, 8, 8), torch.tensor([2.0, 2.0])
    torch._dynamo.reset()
    f(x, a)
    with resizeops.use_backend("cuda"):  # never runs CPU tensors
        with pytest.raises(RuntimeError, match="backend 'cuda' was requested"):
            f(x, a)
    f(x, a)
