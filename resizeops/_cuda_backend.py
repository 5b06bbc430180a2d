"""Registers the compiled extension's CUDA kernels (csrc/cuda/) with the dispatcher.

The ops of ``resizeops_ext`` dispatch on the tensors' device, so the adapters
are the CPU backend's (:mod:`resizeops._cpu_backend`). Never raises: without an
extension built with CUDA, nothing is registered and ``resizeops.backends()``
says why the ``cuda`` backend is unavailable.
"""

from __future__ import annotations

import torch

from . import _dispatch, _extension
from ._cpu_backend import dynopool2d_backward, dynopool2d_forward


def _register() -> None:
    status = _extension.load()
    if not (status.loaded and status.has_cuda_kernels) or not hasattr(torch.ops.resizeops_ext, "dynopool2d_forward"):
        return
    # The backward gathers (no atomics) and sums the size gradient in a fixed
    # order: bit-identical run to run on one GPU (csrc/cuda/dynopool2d.cu).
    _dispatch.register_kernel("cuda", "dynopool2d", dynopool2d_forward, dynopool2d_backward, True)


_register()
