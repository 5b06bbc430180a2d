"""GPU-only checks of the CUDA DynOPool kernels (csrc/cuda/dynopool2d.cu), beyond the
cross-backend suite of test_backends_dynopool.py: the CUDA kernels against the C++ CPU
kernel and its serial emulation of the CUDA code, opcheck on CUDA tensors, a
non-default stream, empty and degenerate shapes, large channel counts.
Skipped without a GPU; `pytest -m cuda` selects them."""

import dataclasses

import pytest
import torch
from conftest import assert_close
from torch.library import opcheck

import resizeops
from resizeops.core import _extension
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


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("shape,out", [((2, 5, 13, 17), (7, 10)), ((1, 300, 9, 31), (4, 20)), ((3, 2, 1, 8), (3, 3))])
def test_cuda_matches_cpu_kernels(shape, out, cl):
    # Same math (math.h), same order: the CUDA kernel agrees with its own CPU
    # emulation and the C++ CPU kernel to float32 rounding (FMA contraction).
    x = _x(shape, cl=cl)
    g = _x((shape[0], shape[1], *out), cl=cl, seed=1)
    got = EXT.dynopool2d_forward(x.cuda(), *out, cl, DEFAULT).cpu()
    assert_close(got, EXT._dynopool2d_forward_emulated(x, *out, cl, DEFAULT), torch.float32)
    assert_close(got, EXT.dynopool2d_forward(x, *out, cl, DEFAULT), torch.float32)
    gx, gs = EXT.dynopool2d_backward(g.cuda(), x.cuda(), *out, cl, True, True, DEFAULT)
    cgx, cgs = EXT._dynopool2d_backward_emulated(g, x, *out, cl, True, True, DEFAULT)
    assert gx.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    assert_close(gx.cpu(), cgx, torch.float32)
    assert_close(gs.cpu(), cgs, atol=1e-3 * (1 + float(cgs.abs().max())), rtol=1e-4)


@pytest.mark.parametrize("form", ["tile", "loop"])
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("shape,out", [((2, 5, 13, 17), (7, 10)), ((2, 3, 8, 8), (15, 3)), ((1, 3, 29, 11), (5, 2))])
def test_cuda_gather_forms_match_the_emulation(shape, out, cl, form):
    # Both forms of the gather (KernelForms.gather; the variants "cuda-tile" and
    # "cuda-loop", for A/B timing) on the GPU against the emulation, which gives both
    # forms bit-identical sums.
    forms = KernelForms(grad_x="gather", gather=form).encode()
    x = _x(shape, cl=cl)
    g = _x((shape[0], shape[1], *out), cl=cl, seed=1)
    gx, _ = EXT.dynopool2d_backward(g.cuda(), x.cuda(), *out, cl, True, False, forms)
    cgx, _ = EXT._dynopool2d_backward_emulated(g, x, *out, cl, True, False, forms)
    assert_close(gx.cpu(), cgx, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("shape,out", [((2, 5, 13, 17), (7, 10)), ((2, 3, 8, 8), (15, 3)), ((1, 300, 9, 31), (4, 20))])
def test_cuda_scatter_matches_the_emulation_and_the_gather(shape, out, cl, dtype):
    # grad_x scattered with atomics (KernelForms.grad_x="scatter", the default for
    # float and double) against its serial emulation and the GPU gather (variant
    # "cuda-gather"): equal to rounding (the order of the atomic adds is not fixed);
    # the size gradient is the same pass's either way.
    x = _x(shape, dtype, cl=cl)
    g = _x((shape[0], shape[1], *out), dtype, cl=cl, seed=1)
    scatter = KernelForms(grad_x="scatter").encode()
    gx, gs = EXT.dynopool2d_backward(g.cuda(), x.cuda(), *out, cl, True, True, scatter)
    cgx, _ = EXT._dynopool2d_backward_emulated(g, x, *out, cl, True, False, scatter)
    assert gx.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    assert_close(gx.cpu(), cgx, dtype)
    gather = KernelForms(grad_x="gather").encode()
    ggx, ggs = EXT.dynopool2d_backward(g.cuda(), x.cuda(), *out, cl, True, True, gather)
    assert_close(gx, ggx, dtype)
    assert_close(gs, ggs, atol=1e-6 * (1 + float(ggs.abs().max())), rtol=1e-6)
    # Only grad_x, and grad_x of a tensor whose offsets need 64 bits (test hook).
    scatter64 = KernelForms(grad_x="scatter", force_int64=True).encode()
    gx64, _ = EXT.dynopool2d_backward(g.cuda(), x.cuda(), *out, cl, True, False, scatter64)
    assert_close(gx64, ggx, dtype)


@pytest.mark.experimental
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("cl", [False, True])
def test_cuda_lanes_matches_the_emulation_and_one_lane(cl, dtype):
    # The lanes form (KernelForms(lanes=4), variant "cuda-lanes": 4 channels per
    # thread, 2 in float64) of
    # the forward and backward pass 1 on the GPU: against its serial emulation and the
    # one-lane kernels. Channel counts with a partial group of lanes, channels_last data
    # aligned for vector loads (C % 4 == 0) and one element off (no vector loads).
    gen = torch.Generator().manual_seed(4)
    fmt = torch.channels_last if cl else torch.contiguous_format
    cases = [((2, 8, 13, 17), (7, 10)), ((1, 7, 9, 31), (4, 20)), ((2, 12, 8, 8), (15, 3))]
    for shape, out in cases + [((2, 9, 10, 13), (5, 7))]:
        x = torch.randn(shape, generator=gen).to(dtype).contiguous(memory_format=fmt)
        g = torch.randn(shape[0], shape[1], *out, generator=gen).to(dtype).contiguous(memory_format=fmt)
        if shape[1] == 9:  # misaligned: drop the first channel
            x, g = x[:, 1:], g[:, 1:]
        got = {}
        for lanes in (1, 4):
            forms = KernelForms(lanes=lanes).encode()
            fwd = EXT.dynopool2d_forward(x.cuda(), *out, cl, forms).cpu()
            gx, gs = EXT.dynopool2d_backward(g.cuda(), x.cuda(), *out, cl, True, True, forms)
            got[lanes] = (fwd, gx.cpu(), gs.cpu())
            if lanes == 4:
                assert_close(fwd, EXT._dynopool2d_forward_emulated(x, *out, cl, forms), dtype)
                cgx, cgs = EXT._dynopool2d_backward_emulated(g, x, *out, cl, True, True, forms)
                assert_close(gx.cpu(), cgx, dtype)
                assert_close(gs.cpu(), cgs, atol=1e-3 * (1 + float(cgs.abs().max())), rtol=1e-4)
        assert_close(got[4][0], got[1][0], dtype)
        assert_close(got[4][1], got[1][1], dtype)
        assert got[4][1].stride() == got[1][1].stride()
        assert_close(got[4][2], got[1][2], atol=1e-6 * (1 + float(got[1][2].abs().max())), rtol=1e-6)
        # The gather in the lanes form (the deterministic path of float and double).
        forms = KernelForms(lanes=4, grad_x="gather").encode()
        gx, _ = EXT.dynopool2d_backward(g.cuda(), x.cuda(), *out, cl, True, False, forms)
        cgx, _ = EXT._dynopool2d_backward_emulated(g, x, *out, cl, True, False, forms)
        assert torch.equal(gx.cpu().isnan(), cgx.isnan())
        assert_close(gx.cpu(), cgx, dtype)


@pytest.mark.experimental
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=["float32", "bfloat16", "float64"])
@pytest.mark.parametrize("tile", [None, (2, 4)], ids=["default_tiles", "tiles_2x4"])
@pytest.mark.parametrize("winners", ["cell", "separable", "cell_channels_last", "lanes_channels_last"])
def test_cuda_fused_backward_matches_the_emulation_and_the_gather(dtype, tile, winners):
    # The fused backward (KernelForms(grad_x="fused"), variant "cuda-fused": one kernel,
    # winners in a shared-memory window per tile, then the gather from it) on the GPU,
    # its tiles' winners by cells or separable (KernelForms.fused_winners) in NCHW, by
    # cells in channels_last (blocks of 8, 4 or 1 channels: the channel counts below give
    # each), one channel per thread or 4 (2 in float64; KernelForms(lanes=4), "lanes"):
    # against its serial emulation, the GPU's two-pass gather and itself (deterministic:
    # bit-identical run to run). Images spanning several default tiles, down- and
    # up-sampled (the plan halves its tiles; separable winners fall back to cells at x2.4
    # with the default tiles), and small tiles (test hook fused_tile) on small images;
    # the ImageNet-VGG plane.
    cl = winners.endswith("channels_last")
    fmt = torch.channels_last if cl else torch.contiguous_format
    fused = KernelForms(
        grad_x="fused", fused_tile=tile, fused_winners="cell" if cl else winners,
        lanes=4 if winners.startswith("lanes") else 1,
    )  # fmt: skip
    gather = dataclasses.replace(fused, grad_x="gather")
    gen = torch.Generator().manual_seed(6)
    cases = [((2, 5, 13, 17), (7, 10)), ((2, 3, 8, 8), (15, 3)), ((1, 3, 40, 150), (23, 97)),
             ((1, 2, 37, 130), (90, 312)), ((2, 2, 70, 70), (35, 44)), ((1, 2, 224, 224), (112, 140))]  # fmt: skip
    if cl:  # C = 8, 12, 3, 16, 24, 8
        cases = [((n, c, h, w), out) for ((n, _, h, w), out), c in zip(cases, (8, 12, 3, 16, 24, 8))]
    for shape, out in cases:
        if (tile is not None or winners.startswith("lanes")) and shape[2] == 224:
            continue  # (the small tiles on small images; and the sanitizers' time)
        x = torch.randn(shape, generator=gen).to(dtype).contiguous(memory_format=fmt)
        g = torch.randn(shape[0], shape[1], *out, generator=gen).to(dtype).contiguous(memory_format=fmt)
        form = EXT._dynopool2d_backward_form(g, x, *out, cl, True, fused.encode())
        fallback = winners != "separable" or (shape[2] == 37 and tile is None)
        assert form[0] == 2 and (form[-1] == 0) == fallback, (shape, out, form)
        if cl:
            cb = 1 if shape[1] % 4 else 4 if shape[1] % 8 or dtype == torch.float64 else 8
            lanes = 1 if not winners.startswith("lanes") or cb == 1 else 2 if dtype == torch.float64 else 4
            assert form[-3] == cb and form[-2] == lanes, form
        gx, gs = EXT.dynopool2d_backward(g.cuda(), x.cuda(), *out, cl, True, True, fused.encode())
        gx2, gs2 = EXT.dynopool2d_backward(g.cuda(), x.cuda(), *out, cl, True, True, fused.encode())
        assert torch.equal(gx, gx2) and torch.equal(gs, gs2)
        # grad_x alone: another instantiation of the kernel (nvcc may contract differently).
        gx_only, _ = EXT.dynopool2d_backward(g.cuda(), x.cuda(), *out, cl, True, False, fused.encode())
        assert_close(gx_only, gx, dtype)
        assert gx.is_contiguous(memory_format=fmt) and gx.dtype == dtype
        cgx, cgs = EXT._dynopool2d_backward_emulated(g, x, *out, cl, True, True, fused.encode())
        assert cgx.stride() == gx.stride()
        assert_close(gx.cpu(), cgx, dtype)
        assert_close(gs.cpu(), cgs, atol=1e-3 * (1 + float(cgs.abs().max())), rtol=1e-4)
        ggx, ggs = EXT.dynopool2d_backward(g.cuda(), x.cuda(), *out, cl, True, True, gather.encode())
        assert_close(gx, ggx, dtype)
        assert_close(gs, ggs, atol=1e-6 * (1 + float(ggs.abs().max())), rtol=1e-6)


@pytest.mark.experimental
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=["float32", "bfloat16", "float64"])
def test_cuda_forward_rows_matches_the_emulation_and_the_cell_form(dtype):
    # The forward's row form (KernelForms(forward="rows"), variant "cuda-rows": 4 cells
    # of a row per thread, NCHW) on the GPU, against its serial emulation and the one-cell kernel: output
    # widths with and without a partial group of 4 (vector stores where Wo % 4 == 0),
    # a sliced x.
    gen = torch.Generator().manual_seed(9)
    for shape, out in [((2, 5, 13, 17), (7, 8)), ((1, 3, 9, 31), (4, 21)), ((2, 2, 40, 70), (23, 44))]:
        x = torch.randn(shape[0], shape[1], shape[2], shape[3] + 1, generator=gen).to(dtype)[..., 1:]
        rows = KernelForms(forward="rows").encode()
        got = EXT.dynopool2d_forward(x.cuda(), *out, False, rows).cpu()
        assert got.is_contiguous()
        assert_close(got, EXT._dynopool2d_forward_emulated(x, *out, False, rows), dtype)
        assert_close(got, EXT.dynopool2d_forward(x.cuda(), *out, False, DEFAULT).cpu(), dtype)


@pytest.mark.experimental
@pytest.mark.parametrize("tile", [None, (2, 4)], ids=["default_tiles", "tiles_2x4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=["float32", "bfloat16", "float64"])
def test_cuda_forward_separable_matches_the_emulation_and_the_cell_form(dtype, tile):
    # The separable forward (KernelForms(forward="separable"), variant "cuda-separable":
    # per tile of output cells, the vertical interpolations in shared memory, NCHW) on
    # the GPU, against its serial emulation and the one-cell kernel: outputs spanning
    # several tiles and partial ones (the default tiles and the test hook forward_tile),
    # up- and down-sampling, a sliced x, the ImageNet-VGG plane size.
    gen = torch.Generator().manual_seed(10)
    separable = KernelForms(forward="separable", forward_tile=tile).encode()
    cases = [((2, 5, 13, 17), (7, 8)), ((1, 3, 9, 31), (4, 21)), ((2, 2, 40, 70), (23, 44)), ((1, 2, 6, 5), (17, 15)),
             ((1, 2, 224, 224), (112, 140))]  # fmt: skip
    for shape, out in cases:
        x = torch.randn(shape[0], shape[1], shape[2], shape[3] + 1, generator=gen).to(dtype)[..., 1:]
        # The separable form is taken.
        assert EXT._dynopool2d_forward_form(x, *out, False, separable)[0] == 2, (shape, out)
        got = EXT.dynopool2d_forward(x.cuda(), *out, False, separable).cpu()
        assert got.is_contiguous()
        assert_close(got, EXT._dynopool2d_forward_emulated(x, *out, False, separable), dtype)
        assert_close(got, EXT.dynopool2d_forward(x.cuda(), *out, False, DEFAULT).cpu(), dtype)


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("mask", [(True, True), (True, False), (False, True)])
def test_opcheck_cuda(cl, mask):
    x = _x((2, 3, 11, 9), cl=cl).cuda()
    opcheck(EXT.dynopool2d_forward.default, (x, 6, 5, cl, DEFAULT))
    g = _x((2, 3, 6, 5), cl=cl, seed=3).cuda()
    opcheck(EXT.dynopool2d_backward.default, (g, x, 6, 5, cl, *mask, DEFAULT))
    alpha = torch.tensor([1.8, 1.7], device="cuda", requires_grad=True)
    opcheck(torch.ops.resizeops.dynopool2d.default, (x.detach().requires_grad_(mask[0]), alpha, [6, 5], "cuda"))


def test_empty_and_degenerate():
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


def test_runs_on_the_current_stream():
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


def test_default_backend_on_cuda_is_cuda():
    from resizeops.core import _dispatch

    dev = torch.device("cuda")
    cuda = _dispatch.get_backend("cuda").kernels["dynopool2d"]
    assert _dispatch.select("dynopool2d", dev, None) is cuda
    torch.use_deterministic_algorithms(True)  # the gather backward is deterministic: still chosen (conftest restores)
    assert _dispatch.select("dynopool2d", dev, None, for_backward=True) is cuda
