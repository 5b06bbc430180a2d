"""pytest-benchmark suite: every provider of every case, forward and forward+backward.

    pytest benchmarks                                # time (CPU tier, or GPU tier on CUDA)
    pytest benchmarks --benchmark-disable            # smoke test: each call runs once
    pytest benchmarks --bench-cases all --bench-dtype bfloat16 --benchmark-group-by=group

Cases and providers come from :mod:`resizeops.bench` (the same as
``python -m resizeops bench``). The forward of every provider is also checked
against the eager reference.
"""

import torch

from resizeops import bench

# Loose: this is a smoke check that a provider computes the op, not the accuracy
# test (tests/ compares every backend to a float64 oracle with per-dtype tolerances).
_TOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def test_op(benchmark, bench_item, bench_device, bench_dtype):
    case, provider, mode = bench_item
    device = bench_device
    inputs = case.make_inputs(device, bench_dtype, requires_grad=(mode == "fwd+bwd"))
    leaves = case.grad_leaves(inputs)

    if mode == "fwd":

        def fn():
            with torch.no_grad():
                out = case.run(inputs, provider)
            _sync(device)
            return out

    else:

        def fn():
            for t in leaves:
                t.grad = None
            case.run(inputs, provider).backward(inputs["grad_out"])
            _sync(device)

    fn()  # warm-up outside the timing: compilation, autotuning, first-touch page faults
    benchmark.group = f"{case.name} {mode} {str(bench_dtype).replace('torch.', '')}"
    benchmark.extra_info.update(case=case.name, op=case.op, provider=provider, mode=mode, shapes=case.summary())
    result = benchmark(fn)

    if mode == "fwd":
        assert tuple(result.shape) == case.out_shape
        with torch.no_grad():
            expected = case.run(inputs, bench.EAGER)
        tol = _TOL[bench_dtype]
        torch.testing.assert_close(result.double(), expected.double(), atol=tol, rtol=tol)
    else:
        for t in leaves:
            assert t.grad is not None and t.grad.shape == t.shape
