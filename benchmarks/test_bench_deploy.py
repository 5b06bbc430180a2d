"""pytest-benchmark: a frozen model's inference in PyTorch eager against its exports (CPU).

    pytest benchmarks/test_bench_deploy.py --benchmark-only     # time
    pytest benchmarks --benchmark-disable                       # smoke test: each call once

Cases are :data:`resizeops.bench.DEPLOY_CASES`; providers ``pytorch-eager`` (the ops'
fused kernels), ``pytorch-aten`` (the ATen-only torch.export program) and
``onnxruntime`` (``torch.onnx.export`` run by ONNX Runtime's CPU provider, as many
intra-op threads as PyTorch). Each provider's output is checked against eager.
"""

import importlib
import os

import pytest
import torch

from resizeops import bench


def _require(name):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        if os.environ.get("RESIZEOPS_REQUIRE_EXT") == "1":
            pytest.fail(f"{name} must be installed here (RESIZEOPS_REQUIRE_EXT=1, as in CI): {e}")
        pytest.skip(f"{name} is not installed: {e}")


@pytest.fixture(scope="module", params=list(bench.DEPLOY_CASES))
def deploy_case(request, tmp_path_factory):
    _require("torchvision")
    case = bench.DEPLOY_CASES[request.param]
    model, x = case.build()
    with torch.no_grad():
        expected = model(x)
    return case, model, x, expected, str(tmp_path_factory.mktemp("deploy"))


@pytest.mark.parametrize("provider", bench.DEPLOY_PROVIDERS)
def test_deploy(benchmark, deploy_case, provider):
    case, model, x, expected, workdir = deploy_case
    if provider == "onnxruntime":
        _require("onnxscript")
        _require("onnxruntime")
    run = case.runner(provider, model, x, workdir)
    run()  # warm-up outside the timing
    benchmark.group = f"{case.name} fwd float32"
    benchmark.extra_info.update(case=case.name, provider=provider, shapes=case.summary(), threads=torch.get_num_threads())
    out = benchmark(run)
    err = (out.double() - expected.double()).abs().max().item()
    assert err <= 1e-4 * expected.abs().max().item(), f"{provider}: max error {err:.3e}"
