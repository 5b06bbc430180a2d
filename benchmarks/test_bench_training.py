"""pytest-benchmark: one training step of a converted VGG-11, eager and under torch.compile.

    pytest benchmarks/test_bench_training.py                    # eager (and compiled on CUDA)
    pytest benchmarks/test_bench_training.py --bench-compile    # compiled on the CPU too

The model and step are :mod:`resizeops.bench.training`'s (``python -m resizeops
bench-train`` runs whole trainings and reports graphs, recompiles and breaks).
Here α trains with the weights' learning rate: it moves every step and the
output sizes stay, so the compiled model must not recompile nor break its graph.
"""

import copy

import pytest
import torch
from torch._dynamo.utils import counters

from resizeops.bench import training as bench_training


@pytest.mark.parametrize("method", ["dynopool", "shape_adaptor"])
@pytest.mark.parametrize("mode", ["eager", "compile"])
def test_training_step(benchmark, bench_device, request, method, mode):
    if mode == "compile" and bench_device.type == "cpu" and not request.config.getoption("--bench-compile"):
        pytest.skip("torch.compile of a VGG-11 takes minutes on a small CPU: pass --bench-compile")
    pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = bench_training.build_model("vgg11", method, 10, 32, "cifar").to(bench_device)
    eager = copy.deepcopy(model)
    x = torch.randn(32, 3, 32, 32, device=bench_device)
    y = torch.randint(0, 10, (32,), device=bench_device)
    torch._dynamo.reset()
    counters.clear()
    run = torch.compile(model) if mode == "compile" else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(run(x), y)
        loss.backward()
        opt.step()
        if bench_device.type == "cuda":
            torch.cuda.synchronize(bench_device)
        return loss.detach()

    first = step()  # warm-up outside the timing: compilation
    benchmark.group = f"train-step vgg11 {method} {bench_device.type}"
    benchmark.extra_info.update(model="vgg11", method=method, mode=mode, batch=32, size=32)
    benchmark(step)
    graphs = int(counters["stats"].get("unique_graphs", 0))
    breaks = int(sum(counters["graph_break"].values()))
    benchmark.extra_info.update(graphs=graphs, graph_breaks=breaks)
    if mode == "compile":
        assert graphs == 1 and breaks == 0  # α moved every step, no size changed: no recompile
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(eager(x), y)
    torch.testing.assert_close(first, want, rtol=1e-4, atol=1e-5)
