"""Per-kernel GPU times of one DynOPool forward+backward (torch.profiler), for the notes.

    python scripts/profile_kernels.py [backend ...]     # default: cuda cuda-loop triton
Prints, per backend, layout and dtype, the CUDA kernels of the ImageNet-VGG case
(N=64, C=64, 224x224, r=(0.5, 0.625)) with their mean time over 5 steps.
"cuda-loop" is the cuda backend with the gather's loop form for every pixel
(RESIZEOPS_CUDA_GATHER=loop, version 2 of docs/PERF_NOTES.md), against the default
3x3 tiles (version 3): the A/B of one run.
"""

import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

import resizeops


def main(backends):
    x0 = torch.randn(64, 64, 224, 224, device="cuda")
    alpha = torch.tensor([2.0, 1.6], device="cuda", requires_grad=True)
    for name in backends:
        backend = "cuda" if name == "cuda-loop" else name
        os.environ["RESIZEOPS_CUDA_GATHER"] = "loop" if name == "cuda-loop" else "tile"
        for cl in (False, True):
            for dtype in (torch.float32, torch.bfloat16):
                x = x0.to(dtype)
                x = (x.contiguous(memory_format=torch.channels_last) if cl else x).requires_grad_(True)

                def step():
                    out = resizeops.dynopool2d(x, alpha, backend=backend)
                    out.backward(torch.ones_like(out))
                    x.grad = None
                    alpha.grad = None

                for _ in range(3):
                    step()
                torch.cuda.synchronize()
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    for _ in range(5):
                        step()
                    torch.cuda.synchronize()
                print(f"--- {name} {'channels_last' if cl else 'NCHW'} {str(dtype).replace('torch.', '')}")
                rows = []
                for e in prof.key_averages():
                    t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
                    if t > 0:
                        rows.append((t / 5 / 1e3, e.key))
                for ms, name in sorted(rows, reverse=True)[:6]:
                    print(f"  {ms:8.3f} ms  {name[:90]}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["cuda", "cuda-loop", "triton"])
