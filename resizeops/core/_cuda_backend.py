"""Registers the compiled extension's CUDA kernels (csrc/cuda/) with the dispatcher.

The ops of ``resizeops_ext`` dispatch on the tensors' device, so the adapters
are the CPU backend's (:mod:`resizeops.core._cpu_backend`). Never raises: without an
extension built with CUDA, nothing is registered and ``resizeops.backends()``
says why the ``cuda`` backend is unavailable.
"""

from __future__ import annotations

import torch

from . import _dispatch, _extension
from ._cpu_backend import (
    dynopool2d_backward,
    dynopool2d_forward,
    resize_blend_backward,
    resize_blend_forward,
    shape_adaptor_maxpool_backward,
    shape_adaptor_maxpool_forward,
)


def _has_cuda_kernel(op: str) -> bool:
    return hasattr(torch.ops.resizeops_ext, op) and torch._C._dispatch_has_kernel_for_dispatch_key(
        f"resizeops_ext::{op}", "CUDA"
    )


def _register() -> None:
    status = _extension.load()
    if not (status.loaded and status.has_cuda_kernels) or not hasattr(torch.ops.resizeops_ext, "dynopool2d_forward"):
        return
    # The backward scatters grad_x with atomics in float32/float64 (run-to-run
    # rounding differences) but gathers it, in a fixed order, under
    # torch.use_deterministic_algorithms(True) (kernel_forms.h KernelForms::dynopool_grad_x);
    # the size gradient is always summed in a fixed order. So: deterministic when asked.
    _dispatch.register_kernel("cuda", "dynopool2d", dynopool2d_forward, dynopool2d_backward, True)
    if _has_cuda_kernel("resize_blend_forward"):
        # Gathers too (no atomics), and sums the weight gradients' block partials
        # in a fixed order: bit-identical run to run (csrc/cuda/resize_blend.cu, shape_adaptor_maxpool.cu).
        _dispatch.register_kernel("cuda", "resize_blend", resize_blend_forward, resize_blend_backward, True)
    if _has_cuda_kernel("shape_adaptor_maxpool_forward"):
        _dispatch.register_kernel(
            "cuda", "shape_adaptor_maxpool", shape_adaptor_maxpool_forward, shape_adaptor_maxpool_backward, True
        )


_register()
