"""GPU-only checks of the CUDA blend kernels (csrc/cuda/resize_blend.cu, shape_adaptor_maxpool.cu): resize_blend and
shape_adaptor_maxpool, beyond the cross-backend suites (test_backends_blend.py,
test_shape_adaptor_maxpool.py): the CUDA kernels against their serial CPU emulation
and the C++ CPU kernels, opcheck on CUDA tensors, the 64-bit index path, a non-default
stream, empty shapes, large channel counts. Skipped without a GPU; `pytest -m cuda`
selects them."""

import pytest
import torch
from conftest import assert_close
from torch.library import opcheck

import resizeops
from resizeops.core import _dispatch, _extension
from resizeops.core.kernel_forms import KernelForms

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

EXT = torch.ops.resizeops_ext
DEFAULT = []  # the ops' `forms` argument for the default forms (KernelForms().encode())


@pytest.fixture(autouse=True)
def _needs_cuda_kernels():
    if not _extension.load().has_cuda_kernels:
        pytest.fail("the extension was built without CUDA kernels on a machine with a GPU")


def _x(shape, dtype=torch.float32, cl=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if cl else x


def _close_sums(a, b):
    # Block partials in float64, summed in another order than the serial emulation.
    assert_close(a, b, atol=1e-4 * (1 + float(b.abs())), rtol=1e-5)


BLEND_CASES = [
    # (shape1, shape2, size, align_corners, scales)
    ((2, 5, 13, 17), (2, 5, 26, 34), (19, 25), True, None),
    ((1, 300, 9, 31), (1, 300, 18, 62), (13, 40), False, None),
    ((2, 3, 8, 8), (2, 3, 16, 16), (16, 16), False, ((2.0, 2.0), None)),  # ELASTIC: x2 passes through
    ((3, 2, 1, 8), (3, 2, 5, 1), (3, 3), True, None),
]


@pytest.mark.parametrize("form", ["tile", "loop"])  # the gathers' two forms (KernelForms.gather)
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("s1,s2,size,ac,scales", BLEND_CASES)
def test_blend_cuda_matches_its_emulation_and_the_cpu_kernel(s1, s2, size, ac, scales, cl, form):
    forms = KernelForms(gather=form).encode()
    x1, x2 = _x(s1, cl=cl), _x(s2, cl=cl, seed=1)
    w1, w2 = torch.tensor(0.7), torch.tensor(-1.2)
    g = _x((s1[0], s1[1], *size), cl=cl, seed=2)
    sc = scales or (None, None)
    cuda = [t.cuda() for t in (x1, x2, w1, w2)]
    got = EXT.resize_blend_forward(*cuda, list(size), ac, *sc, cl, forms).cpu()
    want_f = EXT._resize_blend_forward_emulated(x1, x2, w1, w2, list(size), ac, *sc, cl, forms)
    assert_close(got, want_f, torch.float32)
    assert_close(got, EXT.resize_blend_forward(x1, x2, w1, w2, list(size), ac, *sc, cl, DEFAULT), torch.float32)
    mask = (True, True, True, True)
    grads = EXT.resize_blend_backward(g.cuda(), *cuda, list(size), ac, *sc, *mask, cl, cl, forms)
    want = EXT._resize_blend_backward_emulated(g, x1, x2, w1, w2, list(size), ac, *sc, *mask, cl, cl, forms)
    fmt = torch.channels_last if cl else torch.contiguous_format
    for a, b in zip(grads[:2], want[:2]):
        assert a.is_contiguous(memory_format=fmt)
        assert_close(a.cpu(), b, torch.float32)
    for a, b in zip(grads[2:], want[2:]):
        _close_sums(a.cpu(), b)


@pytest.mark.parametrize("form", ["tile", "loop"])
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("shape,size", [((2, 5, 13, 17), (9, 12)), ((1, 300, 9, 31), (6, 15)), ((2, 3, 2, 9), (1, 4))])
def test_shape_adaptor_cuda_matches_its_emulation(shape, size, cl, form):
    forms = KernelForms(gather=form).encode()
    x = _x(shape, cl=cl)
    w1, w2 = torch.tensor(0.7), torch.tensor(1.3)
    g = _x((shape[0], shape[1], *size), cl=cl, seed=2)
    got = EXT.shape_adaptor_maxpool_forward(x.cuda(), w1.cuda(), w2.cuda(), list(size), True, cl, forms).cpu()
    assert_close(got, EXT._shape_adaptor_maxpool_forward_emulated(x, w1, w2, list(size), True, cl, forms), torch.float32)
    grads = EXT.shape_adaptor_maxpool_backward(g.cuda(), x.cuda(), w1.cuda(), w2.cuda(), list(size), True,
                                               True, True, True, cl, forms)  # fmt: skip
    want = EXT._shape_adaptor_maxpool_backward_emulated(g, x, w1, w2, list(size), True, True, True, True, cl, forms)
    assert_close(grads[0].cpu(), want[0], torch.float32)
    for a, b in zip(grads[1:], want[1:]):
        _close_sums(a.cpu(), b)


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("mask", [(True, True, True, True), (True, False, False, True), (False, False, True, False)])
def test_opcheck_blend_cuda(cl, mask):
    x1, x2 = _x((2, 3, 5, 7), cl=cl).cuda(), _x((2, 3, 9, 13), seed=1).cuda()
    w1, w2 = torch.tensor(0.5, device="cuda"), torch.tensor(1.5, device="cuda", dtype=torch.float64)
    opcheck(EXT.resize_blend_forward.default, (x1, x2, w1, w2, [7, 10], True, None, None, cl, DEFAULT))
    opcheck(EXT.resize_blend_forward.default, (x1, x2, w1, w2, [9, 13], False, [2.0, 2.0], None, cl, DEFAULT))
    g = _x((2, 3, 7, 10), seed=2).cuda()
    opcheck(
        EXT.resize_blend_backward.default, (g, x1, x2, w1, w2, [7, 10], True, None, None, *mask, cl, False, DEFAULT)
    )


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("mask", [(True, True, True), (True, False, False), (False, True, False)])
def test_opcheck_shape_adaptor_cuda(cl, mask):
    x = _x((2, 3, 9, 8), cl=cl).cuda()
    w1, w2 = torch.tensor(0.5, device="cuda"), torch.tensor(1.5, device="cuda")
    opcheck(EXT.shape_adaptor_maxpool_forward.default, (x, w1, w2, [5, 6], True, cl, DEFAULT))
    g = _x((2, 3, 5, 6), seed=2).cuda()
    opcheck(EXT.shape_adaptor_maxpool_backward.default, (g, x, w1, w2, [5, 6], True, *mask, cl, DEFAULT))


def test_int64_index_path():
    # The test hook force_int64 takes the 64-bit path on small tensors: the same bits.
    x1, x2 = _x((2, 7, 9, 11)).cuda(), _x((2, 7, 17, 23), cl=True, seed=1).cuda()
    w = torch.tensor(0.6, device="cuda")
    g = _x((2, 7, 13, 14), seed=2).cuda()
    args = ([13, 14], True, None, None)
    want_f = EXT.resize_blend_forward(x1, x2, w, w, *args, True, DEFAULT)
    want_b = EXT.resize_blend_backward(g, x1, x2, w, w, *args, True, True, True, True, False, True, DEFAULT)
    want_sa = EXT.shape_adaptor_maxpool_backward(g, x2, w, w, [13, 14], True, True, True, True, True, DEFAULT)
    int64 = KernelForms(force_int64=True).encode()
    assert torch.equal(EXT.resize_blend_forward(x1, x2, w, w, *args, True, int64), want_f)
    got_b = EXT.resize_blend_backward(g, x1, x2, w, w, *args, True, True, True, True, False, True, int64)
    for a, b in zip(got_b, want_b):
        assert torch.equal(a, b)
    got_sa = EXT.shape_adaptor_maxpool_backward(g, x2, w, w, [13, 14], True, True, True, True, True, int64)
    for a, b in zip(got_sa, want_sa):
        assert torch.equal(a, b)


def test_empty_batch_and_channels():
    for shape in [(0, 3, 8, 8), (2, 0, 8, 8)]:
        x = torch.randn(shape, device="cuda", requires_grad=True)
        w = torch.tensor(0.5, device="cuda", requires_grad=True)
        out = resizeops.shape_adaptor_maxpool(x, w, 1.0, (6, 6), backend="cuda")
        gx, gw = torch.autograd.grad(out.sum(), (x, w))
        assert out.shape == (shape[0], shape[1], 6, 6) and gx.shape == x.shape and float(gw) == 0.0
        y = torch.randn(shape[0], shape[1], 4, 4, device="cuda", requires_grad=True)
        out = resizeops.resize_blend(y, x, w, 1.0, (6, 6), backend="cuda")
        assert out.shape == (shape[0], shape[1], 6, 6)


def test_runs_on_the_current_stream():
    x1 = torch.randn(4, 16, 32, 24, device="cuda", requires_grad=True)
    x2 = torch.randn(4, 16, 64, 48, device="cuda", requires_grad=True)
    w = torch.tensor(0.3, device="cuda", requires_grad=True)

    def run():
        out = resizeops.resize_blend(x1, x2, w, 1 - w, (48, 36), backend="cuda")
        sa = resizeops.shape_adaptor_maxpool(x2, w, 1 - w, (48, 36), backend="cuda")
        return (out, sa) + torch.autograd.grad((out * sa).sum(), (x1, x2, w))

    want = run()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        got = run()
    torch.cuda.current_stream().wait_stream(s)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


@pytest.mark.parametrize("op", ["resize_blend", "shape_adaptor_maxpool"])
def test_default_backend_on_cuda_is_cuda(op):
    dev = torch.device("cuda")
    cuda = _dispatch.get_backend("cuda").kernels[op]
    assert _dispatch.select(op, dev, None) is cuda
    torch.use_deterministic_algorithms(True)  # the gather backward is deterministic: still chosen (conftest restores)
    assert _dispatch.select(op, dev, None, for_backward=True) is cuda
