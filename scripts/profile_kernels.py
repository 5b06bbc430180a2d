"""Per-kernel GPU times of one forward+backward of each op (torch.profiler), for the notes.

    python scripts/profile_kernels.py [op ...]     # default: dynopool blend cell
Prints, per op, provider, layout and dtype, the CUDA kernels of the op's ImageNet-VGG
case with their mean time over 5 steps, then the step's wall time (CUDA events over
20 steps, outside the profiler: above the kernels' sum when the host cannot keep
the GPU busy):
  dynopool: N=64, C=64, 224x224, r=(0.5, 0.625);
  dynopool-cifar: DynOPool's CIFAR-VGG case, N=128, C=64, 32x32, same r (its
    channels_last fwd+bwd took 1.23 ms against 0.23 ms in NCHW on the H200,
    docs/BENCHMARKS.md, unexplained), with the default providers only;
  blend:    Shape Adaptor, x1 64x64x112x112 + x2 64x64x224x224 -> 168x168;
  cell:     shape_adaptor_maxpool, x 64x64x224x224 -> 168x168.
Providers: "cuda" and "triton" (their measured default forms: DynOPool's grad_x
scattered with atomics in float32, the blend gathers' loop form, one channel per
thread), then each variant of resizeops/core/kernel_forms.py VARIANTS, the backend
run with other kernel forms (backend=<variant name>), on the ops it applies to:
"cuda-tile" and "cuda-loop" (every
grad_x gathered, in the gathers' tile form where it fits or in the loop form for
every pixel; the blends' gathers take the form too: the A/B of one run,
docs/PERF_NOTES.md), and the experimental ones, never timed on a GPU (DynOPool
only): "cuda-lanes" (its forward and backward pass 1 with 4 channels per thread,
vector loads in channels_last), "cuda-fused" (its backward in one kernel; in
channels_last with blocks of 8 channels), "cuda-fused-lanes" (both; in
channels_last the lanes forward and the fused backward's winners 4 channels per
thread), "cuda-rows" (its forward with 4 cells of a row per thread),
"cuda-separable" (its forward per tile of output cells, the vertical
interpolations shared through shared memory), "cuda-fused-separable" (that
forward, and the fused backward finding its tiles' winners the same way),
"triton-rows" (its Triton forward in 2-D tiles), "triton-w8" and
"triton-rows-w8" (those forwards with 8 warps per program). The NCHW-only
variants (cuda-rows, the separable ones, triton-rows, triton-rows-w8: their
``nchw_only``) are profiled in NCHW only: in channels_last they would time the
default again. PROFILE_PROVIDERS="cuda cuda-lanes" (environment) profiles only
those.
"""

import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

import resizeops
from resizeops.core.kernel_forms import VARIANTS  # name -> Variant: backend=<name> runs its forms

# The op of each profiled case (a variant runs on the ops of its .ops only).
OPS = {
    "dynopool": "dynopool2d", "dynopool-cifar": "dynopool2d", "blend": "resize_blend", "cell": "shape_adaptor_maxpool"
}
# Each backend's defaults, then its variants (not cuda-gather: cuda-tile and cuda-loop time the gather).
PROVIDERS = [p for b in ("cuda", "triton") for p in (b, *(n for n, v in VARIANTS.items() if v.backend == b))
             if p != "cuda-gather"]  # fmt: skip


def _steps(op, dtype, cl, backend):
    """A forward+backward step of op's case by ``backend`` (a backend or variant name)."""
    fmt = torch.channels_last if cl else torch.contiguous_format

    def leaf(*shape):
        return torch.randn(*shape, device="cuda").to(dtype).contiguous(memory_format=fmt).requires_grad_(True)

    if op in ("dynopool", "dynopool-cifar"):
        x = leaf(64, 64, 224, 224) if op == "dynopool" else leaf(128, 64, 32, 32)
        alpha = torch.tensor([2.0, 1.6], device="cuda", requires_grad=True)
        leaves = (x, alpha)

        def run():
            return resizeops.dynopool2d(x, alpha, backend=backend)
    elif op == "blend":
        x1, x2 = leaf(64, 64, 112, 112), leaf(64, 64, 224, 224)
        w1 = torch.tensor(0.6, device="cuda", requires_grad=True)
        w2 = torch.tensor(1.4, device="cuda", requires_grad=True)
        leaves = (x1, x2, w1, w2)

        def run():
            return resizeops.resize_blend(x1, x2, w1, w2, (168, 168), True, backend=backend)
    else:
        x = leaf(64, 64, 224, 224)
        w1 = torch.tensor(0.6, device="cuda", requires_grad=True)
        w2 = torch.tensor(1.4, device="cuda", requires_grad=True)
        leaves = (x, w1, w2)

        def run():
            return resizeops.shape_adaptor_maxpool(x, w1, w2, (168, 168), True, backend=backend)

    def step():
        out = run()
        out.backward(torch.ones_like(out))
        for t in leaves:
            t.grad = None

    return step


def main(ops):
    for op in ops:
        for provider in os.environ.get("PROFILE_PROVIDERS", "").split() or PROVIDERS:
            variant = VARIANTS.get(provider)
            if variant is not None and (op == "dynopool-cifar" or OPS.get(op) not in variant.ops):
                continue  # a variant on its ops only; the CIFAR case: the defaults' anomaly only (a few seconds)
            for cl in (False,) if variant is not None and variant.nchw_only else (False, True):
                for dtype in (torch.float32, torch.bfloat16):
                    label = f"--- {op} {provider} {'channels_last' if cl else 'NCHW'} {str(dtype).replace('torch.', '')}"
                    try:
                        step = _steps(op, dtype, cl, provider)
                        for _ in range(3):
                            step()
                        torch.cuda.synchronize()
                        with profile(activities=[ProfilerActivity.CUDA]) as prof:
                            for _ in range(5):
                                step()
                            torch.cuda.synchronize()
                    except Exception as e:  # noqa: BLE001 - report and go on with the next one
                        print(f"{label}: {type(e).__name__}: {str(e)[:120]}")
                        continue
                    print(label)
                    rows = []
                    for e in prof.key_averages():
                        # Self time: a kernel's own, 0 for the CPU-side ops that launch it.
                        t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
                        if t > 0:
                            rows.append((t / 5 / 1e3, e.key))
                    total = sum(ms for ms, _ in rows)
                    for ms, kernel in sorted(rows, reverse=True)[:5]:
                        # (without the namespace, so that the template arguments fit)
                        short = kernel.replace("resizeops::(anonymous namespace)::", "").removeprefix("void ")
                        print(f"  {ms:8.3f} ms  {short[:90]}")
                    print(f"  {total:8.3f} ms  (all kernels of one step)")
                    print(f"  {_wall_ms(step):8.3f} ms  (wall per step, CUDA events)")


def _wall_ms(step, n=20):
    """Mean time of one step between CUDA events around n back-to-back steps."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / n


if __name__ == "__main__":
    main(sys.argv[1:] or ["dynopool", "blend", "cell"])
