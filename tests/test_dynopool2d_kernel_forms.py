"""DynOPool's kernel forms (resizeops/core/kernel_forms.py): the ways of computing
dynopool2d that a backend can take, against each other and against the reference.

1. The experimental forms on the cross-backend matrix: every test of
   tests/test_dynopool2d.py that takes the ``backend`` fixture, collected again here,
   where ``backend`` is parametrised over the CUDA kernels' serial CPU emulation with
   each experimental form (lanes, fused backward, rows, separable; marked
   ``experimental``).
2. The emulation's forms against each other: grad_x scattered and gathered, the
   gather in 3x3 tiles and as a loop, the deterministic mode's gather.
3. The experimental forms in the emulation (marked ``experimental``): the lanes form
   against one lane, the fused backward against the two-pass gather (its tilings, plan
   and fallbacks, separable winners), the row and separable forwards against the cell
   form (their plans and fallbacks).
4. ``TestCuda`` (marked ``cuda``, skipped without a GPU): the CUDA kernels against
   their emulation, per form.
5. ``TestTriton`` (marked ``triton``; experimental): the Triton forms (rows, 8 warps)
   against the flat kernel with 4 warps.

Run with ``--experimental`` to include the experimental forms
(``pytest --experimental -m experimental`` runs them alone); the emulation needs the
compiled extension. The helpers shared with tests/test_dynopool2d.py are imported
from there.
"""

import dataclasses
import random

import pytest
import torch
from conftest import (
    CUDA_ONLY,
    DEFAULT_FORMS,
    EXT,
    TRITON_DEV,
    assert_close,
    cpu_randn,
    require_backend,
    require_cuda_kernels,
    require_emulation,
    seeded,
)

# The cross-backend matrix (section 1): collected again in this module, with its `backend` fixture.
from test_dynopool2d import (  # noqa: F401
    test_degenerate_outputs_have_the_canonical_strides,
    test_deterministic_mode_bit_identical,
    test_gradcheck_float64,
    test_half_types,
    test_infinite_values_like_the_reference,
    test_int64_indexing_path,
    test_kink_at_alpha_2_takes_the_derivative_from_above,
    test_layouts,
    test_matches_reference,
    test_nan_and_ties,
    test_non_contiguous_grad_out,
    test_only_the_needed_gradients,
    test_tied_queries_route_like_the_reference,
)
from test_dynopool2d import use_backend

import resizeops
from resizeops.core.kernel_forms import KernelForms


# ============================================================================
# 1. The experimental forms on the cross-backend matrix
# ============================================================================


# The CUDA kernels' per-element code run serially on the CPU (conftest.use_cuda_emulation),
# with these experimental kernel forms: the GPU indexing and arithmetic, checked without
# a GPU. Small tile caps (the test hooks) make these small images span many tiles,
# partial ones at the borders included.
_SMALL_TILES = dict(fused_tile=(2, 4), forward_tile=(2, 4))
EXPERIMENTAL_EMULATED = {
    # The lanes form (4 channels per thread, 2 in float64) with the gather and with the
    # scatter; the fused backward (in channels_last, blocks of 8, 4 or 1 channels as C
    # allows), also with phase A's lanes form; the forward's row form (NCHW); the
    # separable forward (NCHW); both separable forms.
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


@pytest.fixture(params=[pytest.param(name, id=name, marks=pytest.mark.experimental) for name in EXPERIMENTAL_EMULATED])
def backend(request, monkeypatch):
    return use_backend(request, monkeypatch, EXPERIMENTAL_EMULATED)


# ============================================================================
# 2. The emulation's forms against each other
# ============================================================================


def _forward_emulated(x, out, cl, forms=KernelForms()):
    """The CUDA forward's emulation with ``forms``."""
    return EXT._dynopool2d_forward_emulated(x, *out, cl, forms.encode())


def _forward_form(x, out, cl, forms=KernelForms()):
    """The form (and plan) the CUDA forward takes with ``forms``: [0 cell | 1 rows | 2 separable, plan...]."""
    return EXT._dynopool2d_forward_form(x, *out, cl, forms.encode())


def _backward_emulated(g, x, out, cl, need_x, need_size, forms=KernelForms()):
    """The CUDA backward's emulation with ``forms``: (grad_x, grad_size)."""
    return EXT._dynopool2d_backward_emulated(g, x, *out, cl, need_x, need_size, forms.encode())


def _backward_form(g, x, out, cl, forms, need_x=True):
    """The grad_x form (and fused plan) the CUDA backward takes with ``forms``:
    [0 gather | 1 scatter | 2 fused, th, tw, cell_rows, cell_cols, cb, lanes, vcols]."""
    return EXT._dynopool2d_backward_form(g, x, *out, cl, need_x, forms.encode())


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


def _sliced_inputs_with_specials(shape, dtype, gen):
    """Two views of one random x of `shape` with ties, NaN and inf: sliced along W
    (NCHW strides, offset data) and the same values in channels_last strides."""
    base = torch.randn(shape[0], shape[1], shape[2], shape[3] + 2, generator=gen).to(dtype)
    base[..., ::3, ::2] = 0.5  # ties
    base.view(-1)[::17] = float("nan")
    base.view(-1)[5::19] = float("inf")
    return base[..., 1:-1], base[..., 1:-1].contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cuda_scatter_and_gather_agree(dtype, cl):
    """grad_x scattered from the output cells (atomics on the GPU, serial here) against
    the gather: the same terms summed in another order, so equal to rounding, with the
    same NaN / inf pattern (NaN and inf in grad_out, ties, up- and down-sampling, pixels
    no query reads, the last row and column). bfloat16 always gathers: bit-identical."""
    require_emulation("dynopool2d")
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
    require_emulation("dynopool2d")
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


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cuda_gather_tile_and_loop_forms_bit_identical(dtype, cl):
    """The CUDA gather's two forms (dynopool_elements.h), in the serial emulation: the 3x3
    tiles issue every load of a pixel at once and select afterwards, the loop loads
    only what it uses; same sum, same order, so bit-identical results. Covers pixels
    that fit a tile (r <= 0.75), pixels that need the loop (up-sampling), pixels no
    query reads (r < 0.5), and NaN / inf in grad_out at queries that did not win."""
    require_emulation("dynopool2d")
    for x, g, shape, out in _emulation_inputs(dtype, cl, seed=5):
        tile = _emulated_grad_x(g, x, out, cl, "tile")
        loop = _emulated_grad_x(g, x, out, cl, "loop")
        assert torch.equal(tile.isnan(), loop.isnan()), (shape, out)
        assert torch.equal(tile.nan_to_num(), loop.nan_to_num()), (shape, out)
        # And both against the C++ CPU kernel, which has no NaN-free oracle of its own here.
        cpu, _ = EXT.dynopool2d_backward(g, x, *out, cl, True, False, DEFAULT_FORMS)
        assert torch.equal(tile.isnan(), cpu.isnan()), (shape, out)


# ============================================================================
# 3. The experimental forms in the emulation
# ============================================================================


# --- The lanes form: 4 channels per thread (2 in float64) -----------------------------


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
    require_emulation("dynopool2d")
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


# --- The fused backward: grad_x in one kernel per tile of input pixels ----------------


_FUSED = 2  # resizeops_ext::_dynopool2d_backward_form's code of the fused form


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
    require_emulation("dynopool2d")
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
    require_emulation("dynopool2d")
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
    require_emulation("dynopool2d")
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
    require_emulation("dynopool2d")
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
    require_emulation("dynopool2d")
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


# --- The forward's row and separable forms (NCHW) -------------------------------------


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
    require_emulation("dynopool2d")
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
    require_emulation("dynopool2d")
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
    require_emulation("dynopool2d")
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
    require_emulation("dynopool2d")
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


# ============================================================================
# 4. CUDA only (GPU): the CUDA kernels against their emulation, per form
# ============================================================================
# Skipped without a GPU; `pytest -m cuda` selects them (the experimental ones also
# need --experimental).


class TestCuda:
    """The CUDA dynopool2d kernels on a GPU, per kernel form, against their serial emulation."""

    pytestmark = CUDA_ONLY

    @pytest.fixture(autouse=True)
    def _needs_cuda_kernels(self):
        require_cuda_kernels()

    @pytest.mark.parametrize("form", ["tile", "loop"])
    @pytest.mark.parametrize("cl", [False, True])
    @pytest.mark.parametrize(
        "shape,out", [((2, 5, 13, 17), (7, 10)), ((2, 3, 8, 8), (15, 3)), ((1, 3, 29, 11), (5, 2))]
    )
    def test_cuda_gather_forms_match_the_emulation(self, shape, out, cl, form):
        # Both forms of the gather (KernelForms.gather; the variants "cuda-tile" and
        # "cuda-loop", for A/B timing) on the GPU against the emulation, which gives both
        # forms bit-identical sums.
        forms = KernelForms(grad_x="gather", gather=form).encode()
        x = cpu_randn(shape, cl=cl)
        g = cpu_randn((shape[0], shape[1], *out), cl=cl, seed=1)
        gx, _ = EXT.dynopool2d_backward(g.cuda(), x.cuda(), *out, cl, True, False, forms)
        cgx, _ = EXT._dynopool2d_backward_emulated(g, x, *out, cl, True, False, forms)
        assert_close(gx.cpu(), cgx, torch.float32)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    @pytest.mark.parametrize("cl", [False, True])
    @pytest.mark.parametrize(
        "shape,out", [((2, 5, 13, 17), (7, 10)), ((2, 3, 8, 8), (15, 3)), ((1, 300, 9, 31), (4, 20))]
    )
    def test_cuda_scatter_matches_the_emulation_and_the_gather(self, shape, out, cl, dtype):
        # grad_x scattered with atomics (KernelForms.grad_x="scatter", the default for
        # float and double) against its serial emulation and the GPU gather (variant
        # "cuda-gather"): equal to rounding (the order of the atomic adds is not fixed);
        # the size gradient is the same pass's either way.
        x = cpu_randn(shape, dtype, cl=cl)
        g = cpu_randn((shape[0], shape[1], *out), dtype, cl=cl, seed=1)
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
    def test_cuda_lanes_matches_the_emulation_and_one_lane(self, cl, dtype):
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
    @pytest.mark.parametrize(
        "dtype", [torch.float32, torch.bfloat16, torch.float64], ids=["float32", "bfloat16", "float64"]
    )
    @pytest.mark.parametrize("tile", [None, (2, 4)], ids=["default_tiles", "tiles_2x4"])
    @pytest.mark.parametrize("winners", ["cell", "separable", "cell_channels_last", "lanes_channels_last"])
    def test_cuda_fused_backward_matches_the_emulation_and_the_gather(self, dtype, tile, winners):
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
    @pytest.mark.parametrize(
        "dtype", [torch.float32, torch.bfloat16, torch.float64], ids=["float32", "bfloat16", "float64"]
    )
    def test_cuda_forward_rows_matches_the_emulation_and_the_cell_form(self, dtype):
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
            assert_close(got, EXT.dynopool2d_forward(x.cuda(), *out, False, DEFAULT_FORMS).cpu(), dtype)

    @pytest.mark.experimental
    @pytest.mark.parametrize("tile", [None, (2, 4)], ids=["default_tiles", "tiles_2x4"])
    @pytest.mark.parametrize(
        "dtype", [torch.float32, torch.bfloat16, torch.float64], ids=["float32", "bfloat16", "float64"]
    )
    def test_cuda_forward_separable_matches_the_emulation_and_the_cell_form(self, dtype, tile):
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
            assert_close(got, EXT.dynopool2d_forward(x.cuda(), *out, False, DEFAULT_FORMS).cpu(), dtype)


# ============================================================================
# 5. Triton only: the Triton forms (experimental)
# ============================================================================
# On a GPU, or on the CPU under TRITON_INTERPRET=1; skipped elsewhere.


class TestTriton:
    """The Triton forms of the dynopool2d forward (KernelForms.triton_forward, triton_warps)."""

    pytestmark = pytest.mark.triton

    @pytest.fixture(autouse=True)
    def _triton_runs_here(self):
        require_backend("triton", "dynopool2d")  # Triton importable, a GPU or TRITON_INTERPRET=1

    @pytest.mark.experimental
    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
    def test_rows_forward_matches_the_flat_forward(self, dtype):
        """The NCHW forward's 2-D tile kernel (the experimental ``rows=True``, variant
        "triton-rows") does the flat kernel's arithmetic per element, so the outputs are
        bit-identical: tiles cut by the edges (Ho, Wo not multiples of the tile), narrow and
        wide outputs (both tile widths), H or W = 1, sliced and permuted inputs, NaN and
        inf, several planes; and through the dispatcher, backend="triton-rows"."""
        from resizeops.triton_kernels import dynopool

        cases = [((2, 3, 13, 17), (7, 10)), ((1, 2, 1, 40), (3, 21)), ((2, 5, 9, 1), (5, 2)),
                 ((1, 1, 33, 70), (40, 35)), ((3, 4, 6, 6), (12, 13))]  # fmt: skip
        for k, (shape, out) in enumerate(cases):
            x = seeded(shape, dtype, seed=k)
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
        xc = seeded((1, 3, 8, 8), dtype).contiguous(memory_format=torch.channels_last)
        assert dynopool.dynopool2d_forward(xc, (4, 5), True, rows=True).is_contiguous(memory_format=torch.channels_last)
        # The variant: the rows forward through the op, the triton backward.
        x = seeded((2, 3, 13, 17), dtype).requires_grad_(True)
        alpha = torch.tensor([1.7, 1.4], device=TRITON_DEV)
        got = resizeops.dynopool2d(x, alpha, backend="triton-rows")
        want = resizeops.dynopool2d(x, alpha, backend="triton")
        assert torch.equal(got, want)
        (gx,) = torch.autograd.grad(got.sum(), x)
        (want_gx,) = torch.autograd.grad(want.sum(), x)
        assert_close(gx, want_gx, dtype)

    @pytest.mark.experimental
    @pytest.mark.parametrize("rows", [False, True], ids=["flat", "rows"])
    def test_forward_with_8_warps_matches_4(self, rows):
        """The experimental ``warps=8`` (variant "triton-w8") launches the forwards with 8
        warps per program: the same per-element arithmetic, so the same bits (on a GPU the
        elements map to other threads; the interpreter runs the program as a whole either
        way). Both layouts (rows: NCHW only)."""
        from resizeops.triton_kernels import dynopool

        for k, (shape, out) in enumerate([((2, 3, 13, 17), (7, 10)), ((1, 2, 1, 40), (3, 21))]):
            for cl in (False, True) if not rows else (False,):
                x = seeded(shape, torch.float32, seed=k)
                x = x.contiguous(memory_format=torch.channels_last) if cl else x
                four = dynopool.dynopool2d_forward(x, out, cl, rows=rows)
                eight = dynopool.dynopool2d_forward(x, out, cl, rows=rows, warps=8)
                assert eight.stride() == four.stride() and torch.equal(eight, four), (shape, out, cl)
