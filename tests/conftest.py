import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # `import oracle`

# Tolerances against a float64 oracle evaluated on the same (rounded) input values.
# float32: a handful of ulps of the O(1) data after ~8 multiply-adds.
# float16 / bfloat16: the kernels accumulate in float32, so the error is the final
# rounding to the storage type: half an ulp, 2^-11 (fp16) and 2^-8 (bf16) relative,
# plus an absolute floor for values near zero.
TOL = {
    torch.float64: dict(atol=1e-12, rtol=1e-12),
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.float16: dict(atol=1e-3, rtol=1e-3),
    torch.bfloat16: dict(atol=8e-3, rtol=8e-3),
}


def assert_close(actual, expected, dtype=None, msg="", **kw):
    """torch.testing.assert_close with the dtype's tolerance and the first mismatches printed."""
    tol = dict(TOL[dtype or actual.dtype])
    tol.update(kw)
    actual = actual.detach().double()
    expected = expected.detach().double()
    try:
        torch.testing.assert_close(actual, expected, equal_nan=True, **tol)
    except AssertionError as e:
        bad = ~torch.isclose(actual, expected, equal_nan=True, **tol)
        idx = bad.nonzero()[:5].tolist()
        firsts = [(i, actual[tuple(i)].item(), expected[tuple(i)].item()) for i in idx]
        raise AssertionError(f"{msg}\n{e}\nfirst mismatches (index, actual, expected): {firsts}") from None


def device_for_backend(backend):
    """The device a backend's cross-backend tests run on: the CPU for ``cpu`` (and
    the Triton interpreter without a GPU), else the GPU."""
    if backend == "cpu":
        return torch.device("cpu")
    if backend == "cuda" or torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")  # triton under TRITON_INTERPRET=1


def require_backend(name, op):
    """Skip the test when backend ``name`` cannot run ``op`` here (fail for ``cpu``
    under RESIZEOPS_REQUIRE_EXT=1, where the compiled extension must be usable)."""
    from resizeops.core import _dispatch

    reason = _dispatch.get_backend(name).not_supported_reason(op, device_for_backend(name))
    if reason:
        if name == "cpu" and os.environ.get("RESIZEOPS_REQUIRE_EXT") == "1":
            pytest.fail(f"the cpu backend must run here (RESIZEOPS_REQUIRE_EXT=1): {reason}")
        pytest.skip(f"{name}: {reason}")
    return name


def pytest_addoption(parser):
    parser.addoption(
        "--experimental",
        action="store_true",
        help="also run the tests of the experimental kernel forms (resizeops/core/kernel_forms.py), "
        "which are deselected by default",
    )


def pytest_collection_modifyitems(config, items):
    # The experimental kernel forms are out of the default matrix: deselected (not
    # skipped) unless asked for; `pytest --experimental -m experimental` runs them alone.
    if config.getoption("--experimental"):
        return
    kept = [item for item in items if item.get_closest_marker("experimental") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("experimental")])
        items[:] = kept


def pytest_configure(config):
    # The suite's own switches are '0' or '1' (unset: 0); a typo must not quietly
    # turn a required check into a skip.
    for name in ("RESIZEOPS_REQUIRE_EXT", "RESIZEOPS_REQUIRE_CUDA_BUILD"):
        value = os.environ.get(name, "")
        if value not in ("", "0", "1"):
            raise pytest.UsageError(f"{name} must be '0' or '1', got {value!r}")


@pytest.fixture(autouse=True)
def _seed_and_restore():
    torch.manual_seed(0)
    det = torch.are_deterministic_algorithms_enabled()
    warn = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(det, warn_only=warn)


# --- Shared by the op modules (tests/test_<op>.py) ----------------------------

EXT = torch.ops.resizeops_ext
DEFAULT_FORMS = []  # the ops' `forms` argument for the default forms (KernelForms().encode())
CUDA_ONLY = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
TRITON_DEV = device_for_backend("triton")  # the GPU, else the CPU (under TRITON_INTERPRET=1)
TRITON_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def require_cuda_kernels():
    """Fail where a GPU is visible but the extension has no CUDA kernels."""
    from resizeops.core import _extension

    if not _extension.load().has_cuda_kernels:
        pytest.fail("the extension was built without CUDA kernels on a machine with a GPU")


def require_emulation(op):
    """Skip (fail under RESIZEOPS_REQUIRE_EXT=1) without the CUDA kernels' CPU emulation of ``op``."""
    if not hasattr(torch.ops.resizeops_ext, f"_{op}_backward_emulated"):
        if os.environ.get("RESIZEOPS_REQUIRE_EXT") == "1":
            pytest.fail("the CUDA-kernel emulation must run here (RESIZEOPS_REQUIRE_EXT=1)")
        pytest.skip("the compiled extension is not loaded")


def cpu_randn(shape, dtype=torch.float32, cl=False, seed=0):
    """Seeded random values on the CPU, in channels_last with ``cl``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if cl else x


def seeded(shape, dtype, seed=0):
    """Seeded random values (drawn in float64, then rounded to dtype) on TRITON_DEV."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).to(TRITON_DEV)


def use_forms(monkeypatch, backend, op, forms):
    """Run ``backend``'s kernels of ``op`` with ``forms`` (a KernelForms: an
    experimental form, or the test hooks: the 64-bit index path, small tiles) for
    the rest of the test, and return ``backend``."""
    from resizeops.core import _dispatch

    kernels = _dispatch.get_backend(backend).kernels
    monkeypatch.setitem(kernels, op, kernels[op].with_forms(forms))
    return backend


def use_cuda_emulation(monkeypatch, op, forms=None):
    """Route the ``cpu`` backend's ``op`` through the CUDA kernels' serial CPU
    emulation, with ``forms`` (a KernelForms; None: the defaults), and return "cpu".

    ``resizeops_ext::_<op>_{forward,backward}_emulated`` run the per-thread code of
    the CUDA kernels (csrc/include/resizeops/dynopool_elements.h, blend_elements.h) in
    serial loops, with the same tables, forms and gathers as csrc/cuda/: the GPU
    code's indexing and arithmetic, checked without a GPU. Skips (fails under
    RESIZEOPS_REQUIRE_EXT=1) without the compiled extension.
    """
    from resizeops.core import _dispatch
    from resizeops.core.kernel_forms import DEFAULT
    from resizeops.core.reference import alpha_grad_from_size_grad, output_memory_format

    ext = torch.ops.resizeops_ext
    require_emulation(op)
    encoded = (forms or DEFAULT).encode()

    def cl(*xs):
        return output_memory_format(*xs) == torch.channels_last

    if op == "dynopool2d":

        def forward(x, alpha, out_size):
            return ext._dynopool2d_forward_emulated(x, int(out_size[0]), int(out_size[1]), cl(x), encoded)

        def backward(g, x, alpha, out_size, need_x, need_alpha):
            gx, gs = ext._dynopool2d_backward_emulated(
                g, x, int(out_size[0]), int(out_size[1]), cl(x), need_x, need_alpha, encoded
            )
            ga = alpha_grad_from_size_grad(gs, alpha, x.shape[-2:]) if need_alpha else None
            return (gx if need_x else None), ga

    elif op == "resize_blend":

        def forward(x1, x2, w1, w2, size, ac, scales):
            return ext._resize_blend_forward_emulated(x1, x2, w1, w2, list(size), ac, *scales, cl(x1, x2), encoded)

        def backward(g, x1, x2, w1, w2, size, ac, scales, mask):
            grads = ext._resize_blend_backward_emulated(
                g, x1, x2, w1, w2, list(size), ac, *scales, *(bool(m) for m in mask), cl(x1), cl(x2), encoded
            )
            return tuple(t if m else None for t, m in zip(grads, mask))

    else:

        def forward(x, w1, w2, size, ac):
            return ext._shape_adaptor_maxpool_forward_emulated(x, w1, w2, list(size), ac, cl(x), encoded)

        def backward(g, x, w1, w2, size, ac, mask):
            grads = ext._shape_adaptor_maxpool_backward_emulated(
                g, x, w1, w2, list(size), ac, *(bool(m) for m in mask), cl(x), encoded
            )
            return tuple(t if m else None for t, m in zip(grads, mask))

    monkeypatch.setitem(_dispatch.get_backend("cpu").kernels, op, _dispatch.Kernels(forward, backward))
    return "cpu"


def cuobjdump():
    """cuobjdump: Triton's bundled copy (its NVIDIA backend ships one), else the one on
    PATH, else None. Used by the static GPU checks (test_cuda_static.py, test_triton_aot.py)."""
    import shutil

    try:
        import triton

        tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
        if os.path.exists(tool):
            return tool
    except ImportError:
        pass
    return shutil.which("cuobjdump")


def resource_usage(tool, path):
    """{mangled kernel name: {"REG": n, "STACK": n, "LOCAL": n, ...}} of the cubins in path
    (a cubin, or a shared library with embedded ones), and the architectures found."""
    import re
    import subprocess

    out = subprocess.run([tool, "--dump-resource-usage", path], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    usage = {}
    for head, body in zip(lines, lines[1:]):
        if head.strip().startswith("Function "):
            name = head.strip()[len("Function ") :].rstrip(":")
            usage[name] = {k: int(v) for k, v in re.findall(r"(\w+):(\d+)", body)}
    return usage, re.findall(r"arch = (sm_\d+)", out)
