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
    from resizeops import _dispatch

    reason = _dispatch.get_backend(name).not_supported_reason(op, device_for_backend(name))
    if reason:
        if name == "cpu" and os.environ.get("RESIZEOPS_REQUIRE_EXT") == "1":
            pytest.fail(f"the cpu backend must run here (RESIZEOPS_REQUIRE_EXT=1): {reason}")
        pytest.skip(f"{name}: {reason}")
    return name


@pytest.fixture(autouse=True)
def _seed_and_restore():
    torch.manual_seed(0)
    det = torch.are_deterministic_algorithms_enabled()
    warn = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(det, warn_only=warn)
