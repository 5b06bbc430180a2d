"""Options and parametrisation of the pytest-benchmark suite (``pytest benchmarks``).

The cases are :data:`resizeops.bench.CASES`, the ones ``python -m resizeops bench``
runs. Default: the GPU tier on CUDA when a GPU is visible, else the CPU tier.
"""

import pytest
import torch


def pytest_addoption(parser):
    group = parser.getgroup("resizeops benchmarks")
    group.addoption("--bench-device", default=None, help="cpu or cuda (default: cuda when a GPU is visible)")
    group.addoption(
        "--bench-cases", default=None, help="comma list of case names or tiers (cpu, gpu), or 'all' (default: the device's tier)"
    )
    group.addoption("--bench-dtype", default="float32", help="float32 (default), float16, bfloat16 or float64")
    group.addoption(
        "--bench-compile", action="store_true", help="also time compiled-reference on the CPU (always on CUDA)"
    )


def _device(config) -> torch.device:
    name = config.getoption("--bench-device") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pytest_generate_tests(metafunc):
    if "bench_item" not in metafunc.fixturenames:
        return
    from resizeops import bench

    config = metafunc.config
    device = _device(config)
    # torch.compile's warm-up costs tens of seconds per case on a small CPU: keep the
    # smoke run (--benchmark-disable) quick there unless asked.
    compile = device.type == "cuda" or config.getoption("--bench-compile")
    params, ids = [], []
    for case in bench.cases_for(config.getoption("--bench-cases"), device):
        for provider in bench.providers_for(case, device, compile=compile):
            for mode in bench.MODES:
                params.append((case, provider, mode))
                ids.append(f"{case.name}-{provider}-{mode}")
    metafunc.parametrize("bench_item", params, ids=ids)


@pytest.fixture(scope="session")
def bench_device(request) -> torch.device:
    device = _device(request.config)
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("--bench-device cuda: no CUDA device is visible")
    return device


@pytest.fixture(scope="session")
def bench_dtype(request) -> torch.dtype:
    from resizeops import bench

    return bench._parse_dtypes(request.config.getoption("--bench-dtype"), torch.device("cpu"))[0]
