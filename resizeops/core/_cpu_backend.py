"""Registers the compiled extension's C++ CPU kernels with the dispatcher.

The kernels (csrc/cpu/) are ops of the ``resizeops_ext`` namespace; this module
adapts them to the backend signatures of :mod:`resizeops.core._dispatch` (the
``cuda`` backend uses the same adapters: the ops dispatch on the device, and
``forms``, the :class:`~resizeops.core.kernel_forms.KernelForms` of the call,
matter to the CUDA kernels only) and never raises: without a usable extension it registers nothing, and
``resizeops.backends()`` says why the ``cpu`` backend is unavailable.
"""

from __future__ import annotations

import torch

from . import _dispatch, _extension
from .kernel_forms import DEFAULT
from .reference import alpha_grad_from_size_grad, output_memory_format


def _channels_last(*xs: torch.Tensor) -> bool:
    """Whether the op's output (or a gradient) is channels_last: the reference's rule."""
    return output_memory_format(*xs) == torch.channels_last


def dynopool2d_forward(x, alpha, out_size, forms=DEFAULT):
    return torch.ops.resizeops_ext.dynopool2d_forward(
        x, int(out_size[0]), int(out_size[1]), _channels_last(x), forms.encode()
    )


def dynopool2d_backward(grad_out, x, alpha, out_size, need_x, need_alpha, forms=DEFAULT):
    grad_x, grad_size = torch.ops.resizeops_ext.dynopool2d_backward(
        grad_out, x, int(out_size[0]), int(out_size[1]), _channels_last(x), need_x, need_alpha, forms.encode()
    )
    grad_alpha = alpha_grad_from_size_grad(grad_size, alpha, x.shape[-2:]) if need_alpha else None
    return (grad_x if need_x else None), grad_alpha


def resize_blend_forward(x1, x2, w1, w2, size, align_corners, scales, forms=DEFAULT):
    s1, s2 = scales
    return torch.ops.resizeops_ext.resize_blend_forward(
        x1, x2, w1, w2, [int(size[0]), int(size[1])], align_corners, s1, s2, _channels_last(x1, x2), forms.encode()
    )


def resize_blend_backward(grad_out, x1, x2, w1, w2, size, align_corners, scales, mask, forms=DEFAULT):
    s1, s2 = scales
    grads = torch.ops.resizeops_ext.resize_blend_backward(
        grad_out, x1, x2, w1, w2, [int(size[0]), int(size[1])], align_corners, s1, s2,
        *(bool(m) for m in mask), _channels_last(x1), _channels_last(x2), forms.encode(),
    )  # fmt: skip
    return tuple(g if m else None for g, m in zip(grads, mask))


def shape_adaptor_maxpool_forward(x, w1, w2, size, align_corners, forms=DEFAULT):
    return torch.ops.resizeops_ext.shape_adaptor_maxpool_forward(
        x, w1, w2, [int(size[0]), int(size[1])], align_corners, _channels_last(x), forms.encode()
    )


def shape_adaptor_maxpool_backward(grad_out, x, w1, w2, size, align_corners, mask, forms=DEFAULT):
    grads = torch.ops.resizeops_ext.shape_adaptor_maxpool_backward(
        grad_out, x, w1, w2, [int(size[0]), int(size[1])], align_corners, *(bool(m) for m in mask),
        _channels_last(x), forms.encode(),
    )  # fmt: skip
    return tuple(g if m else None for g, m in zip(grads, mask))


def _has_cpu_kernel(name: str) -> bool:
    # The schemas are defined (csrc/resizeops.cpp) even in a build without the
    # kernel file, so the op's presence alone says nothing.
    return hasattr(torch.ops.resizeops_ext, name) and torch._C._dispatch_has_kernel_for_dispatch_key(
        f"resizeops_ext::{name}", "CPU"
    )


def _register() -> None:
    if not _extension.load().loaded or not hasattr(torch.ops.resizeops_ext, "dynopool2d_forward"):
        return
    # No atomics and fixed-order sums: deterministic run to run (csrc/cpu/dynopool2d.cpp).
    _dispatch.register_kernel("cpu", "dynopool2d", dynopool2d_forward, dynopool2d_backward, True)
    if hasattr(torch.ops.resizeops_ext, "resize_blend_forward"):
        # Likewise deterministic (csrc/cpu/resize_blend.cpp).
        _dispatch.register_kernel("cpu", "resize_blend", resize_blend_forward, resize_blend_backward, True)
    if _has_cpu_kernel("shape_adaptor_maxpool_forward") and _has_cpu_kernel("shape_adaptor_maxpool_backward"):
        # Likewise deterministic (csrc/cpu/shape_adaptor_maxpool.cpp).
        _dispatch.register_kernel(
            "cpu", "shape_adaptor_maxpool", shape_adaptor_maxpool_forward, shape_adaptor_maxpool_backward, True
        )


_register()
