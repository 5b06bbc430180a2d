"""Registers the Triton kernels (triton_kernels/, installed as resizeops.triton_kernels) with the dispatcher.

The kernels run on CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1``
(the dispatcher's ``_triton_reason`` decides per call). This module adapts them
to the backend signatures of :mod:`resizeops.core._dispatch` and never raises: when
triton cannot be imported, or the kernel package is not installed, it registers
nothing and ``resizeops.backends()`` says why the ``triton`` backend is unavailable.

The kernel module is imported on first use, not here: ``triton.jit`` decides at
decoration time whether a kernel is compiled or interpreted (``TRITON_INTERPRET``),
and the dispatcher reads that variable when an op runs, so the two agree even if
the variable is set after ``import resizeops``.
"""

from __future__ import annotations

import importlib
import importlib.util

from . import _dispatch
from .kernel_forms import DEFAULT
from .reference import alpha_grad_from_size_grad, output_memory_format

_KERNEL_MODULE = "resizeops.triton_kernels.dynopool"
_BLEND_MODULE = "resizeops.triton_kernels.blend"
_SHAPE_ADAPTOR_MODULE = "resizeops.triton_kernels.shape_adaptor"


def _kernels():
    return importlib.import_module(_KERNEL_MODULE)


def _blend_kernels():
    return importlib.import_module(_BLEND_MODULE)


def _shape_adaptor_kernels():
    return importlib.import_module(_SHAPE_ADAPTOR_MODULE)


def _channels_last(*xs) -> bool:
    """Whether the op's output (or a gradient) is channels_last: the reference's rule."""
    import torch

    return output_memory_format(*xs) == torch.channels_last


# ``forms``: the call's KernelForms (kernel_forms.py): the Triton kernels read
# triton_forward, triton_warps and the test hook force_int64.


def dynopool2d_forward(x, alpha, out_size, forms=DEFAULT):
    return _kernels().dynopool2d_forward(
        x, out_size, _channels_last(x), rows=forms.triton_forward == "rows", warps=forms.triton_warps,
        force_int64=forms.force_int64,
    )  # fmt: skip


def dynopool2d_backward(grad_out, x, alpha, out_size, need_x, need_alpha, forms=DEFAULT):
    if not (need_x or need_alpha):
        return None, None
    grad_x, grad_size = _kernels().dynopool2d_backward(
        grad_out, x, out_size, _channels_last(x), need_x, need_alpha, force_int64=forms.force_int64
    )
    grad_alpha = alpha_grad_from_size_grad(grad_size, alpha, x.shape[-2:]) if need_alpha else None
    return grad_x, grad_alpha


def resize_blend_forward(x1, x2, w1, w2, size, align_corners, scales, forms=DEFAULT):
    return _blend_kernels().resize_blend_forward(
        x1, x2, w1, w2, size, align_corners, scales, _channels_last(x1, x2), force_int64=forms.force_int64
    )


def resize_blend_backward(grad_out, x1, x2, w1, w2, size, align_corners, scales, mask, forms=DEFAULT):
    if not any(mask):
        return None, None, None, None
    # grad_xk in xk's own memory format; the grad_w reduction walks the outputs in
    # the forward's order (channels_last if either input is).
    layouts = (_channels_last(x1), _channels_last(x2), _channels_last(x1, x2))
    return _blend_kernels().resize_blend_backward(
        grad_out, x1, x2, w1, w2, size, align_corners, scales, [bool(m) for m in mask], layouts,
        force_int64=forms.force_int64,
    )  # fmt: skip


def shape_adaptor_maxpool_forward(x, w1, w2, size, align_corners, forms=DEFAULT):
    return _shape_adaptor_kernels().shape_adaptor_maxpool_forward(
        x, w1, w2, size, align_corners, _channels_last(x), force_int64=forms.force_int64
    )


def shape_adaptor_maxpool_backward(grad_out, x, w1, w2, size, align_corners, mask, forms=DEFAULT):
    if not any(mask):
        return None, None, None
    return _shape_adaptor_kernels().shape_adaptor_maxpool_backward(
        grad_out, x, w1, w2, size, align_corners, [bool(m) for m in mask], _channels_last(x),
        force_int64=forms.force_int64,
    )  # fmt: skip


def _register() -> None:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401

        if importlib.util.find_spec(_KERNEL_MODULE) is None:
            return
    except Exception:  # noqa: BLE001 - ImportError, or a broken triton install: no triton backend
        return
    # grad_x is scattered with atomics (the order of float additions varies run to
    # run); under torch.use_deterministic_algorithms the dispatcher routes around it.
    _dispatch.register_kernel("triton", "dynopool2d", dynopool2d_forward, dynopool2d_backward, deterministic_backward=False)
    if importlib.util.find_spec(_BLEND_MODULE) is None:
        return
    # resize_blend's backward gathers grad_x (no atomics) and sums the grad_w
    # partials in a fixed order: deterministic run to run.
    _dispatch.register_kernel(
        "triton", "resize_blend", resize_blend_forward, resize_blend_backward, deterministic_backward=True
    )
    if importlib.util.find_spec(_SHAPE_ADAPTOR_MODULE) is None:
        return
    # shape_adaptor_maxpool's backward is the same kind of gather (the pooled branch's
    # gradient to each window's argmax, recomputed from x), with fixed-order sums.
    _dispatch.register_kernel(
        "triton",
        "shape_adaptor_maxpool",
        shape_adaptor_maxpool_forward,
        shape_adaptor_maxpool_backward,
        deterministic_backward=True,
    )


try:
    _register()
except Exception:  # noqa: BLE001 - importing resizeops must never fail because of Triton
    pass
