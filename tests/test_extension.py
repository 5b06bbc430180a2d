"""Tests of the compiled extension resizeops._C: loading, build info, query_coords.

The whole module is skipped when the extension is not usable, unless
RESIZEOPS_REQUIRE_EXT=1 (set in CI), where a missing extension fails.
"""

from __future__ import annotations

import os
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from resizeops.core import _extension
from resizeops.core.kernel_forms import KernelForms

STATUS = _extension.load()
if not STATUS.loaded and os.environ.get("RESIZEOPS_REQUIRE_EXT") != "1":
    pytest.skip(f"compiled extension not usable: {STATUS.reason}", allow_module_level=True)

ops = torch.ops.resizeops_ext

# (out_size, size_hat, in_size). size_hat is the value of the surrogate size;
# it equals out_size in DynOPool, and differs in finite-difference checks.
QUERY_CASES = [
    pytest.param(4, 4.0, 8, id="halving-borders-exact"),  # u_j = j: u=0 and u=in-1 hit exactly
    pytest.param(3, 3.0, 7, id="odd"),
    pytest.param(4, 3.7, 9, id="size_hat-non-integer"),
    pytest.param(16, 15.5, 31, id="size_hat-half"),
    pytest.param(2, 2.0, 1, id="in_size-1"),
    pytest.param(1, 1.0, 1, id="1x1"),
    pytest.param(5, 5.0, 3, id="upsampling"),
    pytest.param(7, 7.3, 2, id="upsampling-non-integer"),
    pytest.param(3, 2.2, 4, id="size_hat-below-out"),
    pytest.param(0, 2.0, 5, id="empty"),
]
DTYPES = [torch.float32, torch.float64]


def _exact_query_coords(out_size, size_hat, in_size):
    """Exact (u_clipped, dclip * du/dsize_hat, u_unclipped) per query row (docs/SEMANTICS.md, DynOPool), as Fractions."""
    s = Fraction(size_hat)
    rows = []
    for j in range(2 * out_size):
        u = Fraction(2 * j + 1) * in_size / (4 * s) - Fraction(1, 2)
        du = -Fraction(2 * j + 1) * in_size / (4 * s * s)
        # The clip's derivative is 1 on [0, in - 1), 0 elsewhere: the derivative
        # towards larger u (math.h clip_border; grid_sample's is 0 at u = 0 too).
        if u < 0:
            rows.append((Fraction(0), Fraction(0), u))
        elif u >= in_size - 1:
            rows.append((Fraction(in_size - 1), Fraction(0), u))
        else:
            rows.append((u, du, u))
    return rows


def _tolerances(dtype):
    # u = ((2j+1)·in − 2ŝ)/(4ŝ): one rounding of values <= ~30; its derivative a few.
    return dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-6, atol=5e-6)


def test_status_fields_sane():
    assert STATUS.loaded, STATUS.reason
    assert STATUS.reason == ""
    assert STATUS.path and os.path.isfile(STATUS.path)
    assert STATUS.torch_built == _extension._release(torch.__version__)
    assert STATUS.has_cuda_kernels == (STATUS.cuda_built is not None)
    if torch.version.cuda is None:
        assert not STATUS.has_cuda_kernels
    assert _extension.load() is STATUS  # cached
    lines = _extension.describe()
    assert lines and all(isinstance(line, str) for line in lines)
    assert any("loaded" in line for line in lines)


def test_build_info_matches_running_torch():
    info = ops.build_info()
    fields = _extension.parse_build_info(info)
    assert set(fields) >= {"torch", "cuda", "cuda_kernels", "debug"}, info
    assert fields["torch"] == _extension._release(torch.__version__)
    assert fields["cuda_kernels"] in ("0", "1")
    assert (fields["cuda"] == "none") == (fields["cuda_kernels"] == "0")
    if fields["cuda_kernels"] == "1":
        # the kernels' toolkit and torch's CUDA have the same major version
        assert torch.version.cuda is not None
        assert fields["cuda"].split(".")[0] == torch.version.cuda.split(".")[0]
        # the GPU targets the build compiled (setup.py records them): SASS for one
        # architecture at least, and what `info` shows
        assert STATUS.cuda_arch and any(t.startswith("sm_") for t in STATUS.cuda_arch), info
        assert ",".join(STATUS.cuda_arch) == fields["cuda_arch"]
        assert any(line.startswith("GPU code") and STATUS.cuda_arch[0] in line for line in _extension.describe())
    else:
        assert "cuda_arch" not in fields and STATUS.cuda_arch is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_size,size_hat,in_size", QUERY_CASES)
def test_query_coords_cpu_matches_formula(out_size, size_hat, in_size, dtype):
    size_hat_t = torch.tensor([size_hat], dtype=dtype)
    got = ops.query_coords(size_hat_t, out_size, in_size)
    assert got.shape == (2 * out_size, 2) and got.dtype == dtype and got.device.type == "cpu"
    assert got.is_contiguous()

    # Oracle in exact arithmetic, at the size_hat the kernel sees (rounded to dtype).
    exact = _exact_query_coords(out_size, size_hat_t.item(), in_size)
    expected = torch.tensor([[float(u), float(du)] for u, du, _ in exact], dtype=torch.float64).reshape(-1, 2)
    tol = _tolerances(dtype)
    checked = 0
    for j, (u_c, du_c, u) in enumerate(exact):
        # A border decision within rounding of the exact border may go either
        # way in floating point; rows exactly on a border must be decided right.
        near = min(abs(u), abs(u - (in_size - 1)))
        if 0 < near < 1e-4:
            continue
        checked += 1
        torch.testing.assert_close(got[j].double(), expected[j], **tol, msg=lambda m: f"row {j}: {m}")
    assert checked >= len(exact) - 1


def test_query_coords_clip_derivative_is_the_one_towards_larger_u():
    # in 8 -> out 4 (alpha = 2): u_j = j exactly (one correctly rounded division of
    # integers), every query on a pixel; j = 0 and j = 7 sit on the borders. The
    # derivative is taken towards larger u everywhere: 1 · du at u = 0 (inside from
    # there on), 0 at u = in - 1 (clipped beyond it). grid_sample's is 0 at both.
    for dtype in DTYPES:
        for out_size, in_size in ((4, 8), (3, 6), (5, 10), (7, 14), (11, 22)):
            got = ops.query_coords(torch.tensor([float(out_size)], dtype=dtype), out_size, in_size)
            assert torch.equal(got[:, 0], torch.arange(in_size, dtype=dtype)), (out_size, in_size)
            assert got[-1, 1].item() == 0.0
            assert (got[:-1, 1] < 0).all()  # u = 0 and the interior rows carry the gradient
    # Upsampling: the first and last rows lie outside [0, in-1] and are clipped.
    got = ops.query_coords(torch.tensor([5.0], dtype=torch.float64), 5, 3)
    assert got[0, 0].item() == 0.0 and got[0, 1].item() == 0.0
    assert got[-1, 0].item() == 2.0 and got[-1, 1].item() == 0.0
    # in_size 1: everything is the single pixel, with no coordinate gradient.
    got = ops.query_coords(torch.tensor([2.0], dtype=torch.float64), 2, 1)
    assert (got == 0).all()


@pytest.mark.parametrize("out_size,size_hat,in_size", QUERY_CASES)
def test_query_coords_matches_grid_sample_border(out_size, size_hat, in_size):
    """Values and size_hat-derivatives equal grid_sample(padding_mode="border")'s on a ramp image.

    Sampling x[i] = i gives the clipped coordinate itself, and its autograd
    derivative in size_hat is exactly dclip * du/dsize_hat: the ground truth
    of docs/SEMANTICS.md, DynOPool, derivative convention at the borders included
    (one difference at u = 0, below).
    """
    if out_size == 0:
        pytest.skip("nothing to sample")
    ramp = torch.arange(in_size, dtype=torch.float64).view(1, 1, in_size, 1)
    j = torch.arange(2 * out_size, dtype=torch.float64)

    def sample(s):
        y = -1 + (2 * j + 1) / (2 * s)
        grid = torch.stack([torch.zeros_like(y), y], dim=-1).view(1, -1, 1, 2)  # (x, y) order
        return F.grid_sample(ramp, grid, mode="bilinear", padding_mode="border", align_corners=False).view(-1)

    s = torch.tensor(size_hat, dtype=torch.float64)
    expected_u = sample(s)
    expected_du = torch.autograd.functional.jacobian(sample, s)
    got = ops.query_coords(s.view(1), out_size, in_size)
    torch.testing.assert_close(got[:, 0], expected_u, rtol=1e-12, atol=1e-12)
    # One difference, by design: at u = 0 exactly grid_sample's clip has derivative 0,
    # resizeops' the one towards larger u (test above).
    at_zero = got[:, 0] == 0
    at_zero &= torch.tensor([(2 * j + 1) * in_size == 2 * size_hat for j in range(2 * out_size)])
    expected_du = torch.where(at_zero, got[:, 1], expected_du)
    torch.testing.assert_close(got[:, 1], expected_du, rtol=1e-12, atol=1e-12)


def test_query_coords_accepts_any_one_element_shape():
    ref = ops.query_coords(torch.tensor([3.5]), 3, 7)
    for s in (torch.tensor(3.5), torch.tensor([[3.5]]), torch.tensor([0.0, 3.5])[1:]):
        torch.testing.assert_close(ops.query_coords(s, 3, 7), ref, rtol=0, atol=0)


@pytest.mark.parametrize(
    "args,match",
    [
        ((torch.tensor([2.0, 3.0]), 3, 7), "exactly one element"),
        ((torch.tensor([], dtype=torch.float32), 3, 7), "exactly one element"),
        ((torch.tensor([3]), 3, 7), "float32 or float64"),
        ((torch.tensor([3.0], dtype=torch.float16), 3, 7), "float32 or float64"),
        ((torch.tensor([3.0]), -1, 7), "out_size must be >= 0"),
        ((torch.tensor([3.0]), 3, 0), "in_size must be >= 1"),
        ((torch.tensor([3.0]), 2**62, 7), "out_size is too large"),
    ],
)
def test_query_coords_bad_args_raise(args, match):
    with pytest.raises(RuntimeError, match=match):
        ops.query_coords(*args)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_size,size_hat,in_size", QUERY_CASES + [pytest.param(3000, 2999.4, 6001, id="large")])
def test_query_coords_cuda_matches_cpu(out_size, size_hat, in_size, dtype):
    if not STATUS.has_cuda_kernels:
        pytest.skip("the extension was built without CUDA kernels")
    s_cpu = torch.tensor([size_hat], dtype=dtype)
    expected = ops.query_coords(s_cpu, out_size, in_size)
    # on a side stream, to exercise the current-stream launch
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = ops.query_coords(s_cpu.cuda(), out_size, in_size)
    stream.synchronize()
    assert got.device.type == "cuda" and got.dtype == dtype and got.shape == expected.shape
    # nvcc may contract a*b+c into an FMA where g++ rounds twice: one ulp apart.
    tol = dict(rtol=1e-13, atol=1e-13) if dtype == torch.float64 else dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got.cpu(), expected, **tol)
    # the clip decisions agree (derivative exactly zero on the same rows)
    assert torch.equal(got.cpu()[:, 1] == 0, expected[:, 1] == 0)


# --- the loader itself (no compiled code involved) ----------------------------


def test_loader_reports_missing_extension(monkeypatch):
    def missing(name, *args, **kwargs):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(_extension.importlib, "import_module", missing)
    status = _extension._load_uncached()
    assert not status.loaded
    assert "not installed" in status.reason
    assert "pip install --no-build-isolation -e ." in status.reason
    assert status.path is None and status.torch_built is None and not status.has_cuda_kernels


def test_loader_reports_undefined_symbol_verbatim(monkeypatch):
    msg = "/x/resizeops/_C.abi3.so: undefined symbol: _ZN3c1017RegisterOperatorsD1Ev"

    def broken(name, *args, **kwargs):
        raise ImportError(msg)

    monkeypatch.setattr(_extension.importlib, "import_module", broken)
    status = _extension._load_uncached()
    assert not status.loaded
    assert msg in status.reason
    assert "another torch" in status.reason and "--no-build-isolation" in status.reason


def test_loader_reports_os_error(monkeypatch):
    def broken(name, *args, **kwargs):
        raise OSError("libc10_cuda.so: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(_extension.importlib, "import_module", broken)
    status = _extension._load_uncached()
    assert not status.loaded and "libc10_cuda.so: cannot open shared object file" in status.reason


def test_loader_refuses_extension_built_for_other_torch(monkeypatch):
    built = _extension._release(torch.__version__)
    monkeypatch.setattr(torch, "__version__", "9.8.7+cu999")
    status = _extension._load_uncached()
    assert not status.loaded
    assert f"built for torch {built}, running torch 9.8.7" in status.reason
    assert "pip install --no-build-isolation -e ." in status.reason
    assert status.torch_built == built and status.path == STATUS.path


def test_release_strips_local_and_dev_parts():
    assert _extension._release("2.14.1+cu130") == "2.14.1"
    assert _extension._release("2.7.0.dev20250101+cu126") == "2.7.0"
    assert _extension._release("2.6.0a0+git1234") == "2.6.0"
    assert _extension._release("2.11") == "2.11.0"


def test_query_coords_opcheck():
    for dtype in DTYPES:
        torch.library.opcheck(ops.query_coords.default, (torch.tensor([2.5], dtype=dtype), 3, 5))


@pytest.mark.skipif(
    os.environ.get("RESIZEOPS_REQUIRE_CUDA_BUILD") != "1",
    reason="only where the build must have CUDA kernels (CI and the GPU script set RESIZEOPS_REQUIRE_CUDA_BUILD=1)",
)
def test_cuda_kernels_were_built():
    assert STATUS.has_cuda_kernels and STATUS.cuda_built, STATUS


@pytest.mark.parametrize("forms", [KernelForms(), KernelForms(grad_x="gather", force_int64=True)],
                         ids=["default_forms", "other_forms"])
@pytest.mark.parametrize("cl", [False, True])
def test_dynopool_kernels_opcheck(cl, forms):
    # The kernel forms' argument (the CPU kernel validates it; the CUDA kernels' forms).
    fmt = torch.channels_last if cl else torch.contiguous_format
    x = torch.randn(2, 3, 9, 11).contiguous(memory_format=fmt)
    torch.library.opcheck(ops.dynopool2d_forward.default, (x, 5, 7, cl, forms.encode()))
    g = torch.randn(2, 3, 5, 7)
    for need_x, need_size in ((True, True), (True, False), (False, True)):
        torch.library.opcheck(ops.dynopool2d_backward.default, (g, x, 5, 7, cl, need_x, need_size, forms.encode()))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: ops.dynopool2d_forward(torch.randn(3, 8, 8), 4, 4, False, []), "must be 4-D"),
        (lambda: ops.dynopool2d_forward(torch.randn(1, 1, 8, 8), 0, 4, False, []), "output size must be >= 1"),
        (lambda: ops.dynopool2d_forward(torch.ones(1, 1, 8, 8, dtype=torch.int32), 4, 4, False, []), "floating"),
        (lambda: ops.dynopool2d_backward(torch.randn(1, 1, 3, 4), torch.randn(1, 1, 8, 8), 4, 4, False, True, True, []),
         "grad_out must have shape"),
        (lambda: ops.dynopool2d_backward(torch.randn(1, 1, 4, 4).double(), torch.randn(1, 1, 8, 8), 4, 4, False, True,
                                         True, []),
         "grad_out must be"),
        (lambda: ops.dynopool2d_forward(torch.randn(1, 1, 8, 8), 4, 4, False, [0, 0, 0]), "forms must have 10 entries"),
    ],
)
def test_dynopool_kernels_reject_bad_args(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()
