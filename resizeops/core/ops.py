"""The public ops, registered with ``torch.library`` in the ``resizeops`` namespace.

Layers of one call (torchvision's roi_align layout, in Python):

1. ``dynopool2d`` / ``resize_blend`` (the functions users call): validate every
   argument (docs/SEMANTICS.md, "Bad input"), compute the output size on the host if it was not given,
   read the backend asked for by argument or :func:`resizeops.use_backend`.
2. ``torch.ops.resizeops.dynopool2d`` / ``resize_blend``: custom ops with a fake
   kernel (``torch.compile`` sees shapes), registered autograd, and a
   device-agnostic implementation that picks a backend (:mod:`._dispatch`) and
   runs its forward kernel.
3. ``torch.ops.resizeops._dynopool2d_backward`` / ``_resize_blend_backward``:
   separate backward ops with their own fake kernels; their own backward
   (double backward) is refused with a clear message.

Every call, eager or traced, goes through these custom ops: one autograd path.
(A lighter eager path around the custom-op machinery saved ~0.2–0.5 ms of host
time per forward+backward but nothing measurable in a training step;
docs/PERF_NOTES.md, "One autograd path".)

The ops are defined in Python, so they exist whether or not the compiled
extension loaded; the extension's kernels (namespace ``resizeops_ext``) plug in
per backend with :func:`resizeops.core._dispatch.register_kernel`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch

from . import _dispatch, _validate, export, reference
from .reference import output_memory_format

__all__ = ["dynopool2d", "resize_blend", "shape_adaptor_maxpool", "dynopool2d_output_size"]

Number = Union[float, int]


def _rnd(v: float) -> int:
    """rnd(v) = floor(v + 0.5): round half up, not banker's rounding (SEMANTICS.md, "Conventions")."""
    return math.floor(v + 0.5)


def _empty(shape, like: torch.Tensor, fmt: torch.memory_format, dtype=None) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype or like.dtype, device=like.device, memory_format=fmt)


def _no_grad() -> torch.Tensor:
    # A stand-in output of a backward op for an input that needs no gradient.
    return torch.empty(0)


def _double_backward(op: str):
    def backward(ctx, *grads):
        raise RuntimeError(
            f"resizeops.{op}: double backward (a gradient of the gradient) is not supported; "
            f"use resizeops.reference.{op} under autograd if you need it"
        )

    return backward


def _noop_setup_context(ctx, inputs, output):
    pass


def _custom_op(name: str, impl, schema: str):
    """``impl`` as the custom op ``resizeops::<name>`` with an explicit schema (the
    implementations keep no type annotations)."""
    return torch.library.custom_op(f"resizeops::{name}", impl, mutates_args=(), schema=schema)


def _call_op(name: str, args):
    """``torch.ops.resizeops.<name>(*args)``; under the TorchScript ONNX exporter
    (``dynamo=False``), which knows ATen ops only and has no decomposition table,
    the op's ATen decomposition (:mod:`resizeops.export`)."""
    if export.onnx_tracing():
        return export.DECOMPOSITIONS[name](*args)
    return getattr(torch.ops.resizeops, name)(*args)


# =============================================================================
# dynopool2d (docs/SEMANTICS.md, "DynOPool")
# =============================================================================


def _dynopool2d_impl(x, alpha, out_size, backend):
    ho, wo = out_size
    if x.numel() == 0:
        return _empty((x.shape[0], x.shape[1], ho, wo), x, output_memory_format(x))
    k = _dispatch.select("dynopool2d", x.device, backend)
    return k.forward(x, alpha, [ho, wo])


_dynopool2d = _custom_op(
    "dynopool2d",
    _dynopool2d_impl,
    "(Tensor x, Tensor alpha, SymInt[] out_size, str? backend) -> Tensor",
)


@_dynopool2d.register_fake
def _(x, alpha, out_size, backend):
    _validate.static_spatial_size("dynopool2d", "x", x.shape[2:])  # dynamo's export reaches here symbolic
    ho, wo = out_size
    return _empty((x.shape[0], x.shape[1], ho, wo), x, output_memory_format(x))


def _dynopool2d_backward_impl(grad_out, x, alpha, out_size, backend, grad_mask):
    need_x, need_alpha = bool(grad_mask[0]), bool(grad_mask[1])
    if x.numel() == 0:
        gx = _empty(x.shape, x, output_memory_format(x)) if need_x else _no_grad()
        ga = torch.zeros_like(alpha) if need_alpha else _no_grad()
        return gx, ga
    k = _dispatch.select("dynopool2d", x.device, backend, for_backward=True)
    gx, ga = k.backward(grad_out, x, alpha, list(out_size), need_x, need_alpha)
    return (gx if need_x else _no_grad()), (ga if need_alpha else _no_grad())


_dynopool2d_backward = _custom_op(
    "_dynopool2d_backward",
    _dynopool2d_backward_impl,
    "(Tensor grad_out, Tensor x, Tensor alpha, SymInt[] out_size, str? backend, bool[] grad_mask) -> (Tensor, Tensor)",
)


@_dynopool2d_backward.register_fake
def _(grad_out, x, alpha, out_size, backend, grad_mask):
    gx = _empty(x.shape, x, output_memory_format(x)) if grad_mask[0] else _no_grad()
    ga = torch.empty_like(alpha, memory_format=torch.contiguous_format) if grad_mask[1] else _no_grad()
    return gx, ga


def _dynopool2d_setup_context(ctx, inputs, output):
    x, alpha, out_size, backend = inputs
    ctx.save_for_backward(x, alpha)
    ctx.out_size = list(out_size)
    ctx.backend = backend


def _dynopool2d_autograd(ctx, grad_out):
    x, alpha = ctx.saved_tensors
    need_x, need_alpha = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    gx, ga = torch.ops.resizeops._dynopool2d_backward(grad_out, x, alpha, ctx.out_size, ctx.backend, [need_x, need_alpha])
    return (gx if need_x else None), (ga if need_alpha else None), None, None


_dynopool2d.register_autograd(_dynopool2d_autograd, setup_context=_dynopool2d_setup_context)
_dynopool2d_backward.register_autograd(_double_backward("dynopool2d"), setup_context=_noop_setup_context)


def _output_size(op: str, in_size: Sequence[int], values: Sequence[float], min_size: int) -> Tuple[int, int]:
    """(Ho, Wo) from already checked alpha values: H/α in float64, which overflows for a
    subnormal or tiny α (H/5e-324 = inf): that is a too-small ``alpha``, not an OverflowError.

    No test on the quotient itself: under dynamo's strict export a dynamic H is symbolic
    here, and the fake kernel refuses it with the reason once the sizes are known.
    """
    sizes = []
    for axis, side, value in zip("hw", (int(in_size[0]), int(in_size[1])), values):
        try:
            sizes.append(max(_rnd(side / value), min_size))
        except OverflowError:  # floor(inf)
            raise ValueError(
                f"{op}: `alpha` = ({values[0]!r}, {values[1]!r}) is too small: {side}/alpha_{axis} "
                f"overflows float64 (the output would be infinitely large)"
            ) from None
    return sizes[0], sizes[1]


def dynopool2d_output_size(in_size: Sequence[int], alpha: Sequence[float], min_size: int = 2) -> Tuple[int, int]:
    """(Ho, Wo) = (max(rnd(H/α_h), min_size), max(rnd(W/α_w), min_size)) (SEMANTICS.md, "DynOPool").

    Host arithmetic in float64 on the given alpha values, which must be finite and
    > 0 (``ValueError`` naming ``alpha`` otherwise, also for one so small that
    H/α overflows).
    """
    op = "dynopool2d_output_size"
    values = _validate.alpha_sequence(op, alpha)
    _validate.alpha_values(op, values)
    return _output_size(op, in_size, values, min_size)


def dynopool2d(
    x: torch.Tensor,
    alpha: torch.Tensor,
    out_size: Optional[Sequence[int]] = None,
    min_size: int = 2,
    *,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """DynOPool (Jang et al., CVPR 2022): learnable-scale pooling (SEMANTICS.md, "DynOPool").

    Resamples ``x`` (N, C, H, W) at 2Ho×2Wo bilinear query points placed by the
    learnable ``alpha`` = (1/r_h, 1/r_w) and max-pools each 2×2 group of queries.

    Args:
        x: input feature map, float16/bfloat16/float32/float64, any strides.
        alpha: shape (2,) floating tensor on ``x``'s device, finite and > 0.
            Receives the straight-through gradient dĤ/dα_h = −H/α_h².
        out_size: the cached (Ho, Wo). When given, ``alpha`` is not read on the
            host (no device sync; its values are then not checked), which is what
            ``torch.compile(fullgraph=True)`` needs. When None, computed as
            ``max(rnd(H/α_h), min_size)`` and likewise for W.
        min_size: lower bound of each output side when ``out_size`` is None.
        backend: "cuda", "triton", "cpu", "reference" or None/"auto" (see
            :func:`resizeops.backends`).

    Returns:
        (N, C, Ho, Wo) of ``x``'s dtype, contiguous in ``x``'s memory format.
    """
    op = "dynopool2d"
    _validate.feature_map(op, "x", x)
    _validate.alpha_tensor(op, alpha, x)
    if out_size is None:
        min_size = _validate.positive_int(op, "min_size", min_size)
        _validate.alpha_readable(op, alpha)
        values = alpha.detach().tolist()
        _validate.alpha_values(op, values)
        ho, wo = _output_size(op, x.shape[-2:], values, min_size)
        given = f"({values[0]:.6g}, {values[1]:.6g})"
        _validate.output_numel(op, "alpha", x.shape[0], x.shape[1], ho, wo, given)
    else:
        ho, wo = _validate.size_pair(op, "out_size", out_size)
        _validate.output_numel(op, "out_size", x.shape[0], x.shape[1], ho, wo, f"({ho}, {wo})")
    args = (x, alpha, [ho, wo], _dispatch.requested(backend))
    return _call_op("dynopool2d", args)


# =============================================================================
# resize_blend (docs/SEMANTICS.md, "resize_blend")
# =============================================================================


def _scale_arg(s) -> Optional[Tuple[float, float]]:
    return None if s is None else (float(s[0]), float(s[1]))


def _resize_blend_impl(x1, x2, w1, w2, size, align_corners, scale1, scale2, backend):
    ho, wo = size
    if x1.numel() == 0:
        return _empty((x1.shape[0], x1.shape[1], ho, wo), x1, output_memory_format(x1, x2))
    k = _dispatch.select("resize_blend", x1.device, backend)
    return k.forward(x1, x2, w1, w2, [ho, wo], align_corners, (_scale_arg(scale1), _scale_arg(scale2)))


_resize_blend = _custom_op(
    "resize_blend",
    _resize_blend_impl,
    "(Tensor x1, Tensor x2, Tensor w1, Tensor w2, SymInt[] size, bool align_corners,"
    " float[]? scale1, float[]? scale2, str? backend) -> Tensor",
)


@_resize_blend.register_fake
def _(x1, x2, w1, w2, size, align_corners, scale1, scale2, backend):
    _validate.static_spatial_size("resize_blend", "x2", x2.shape[2:])
    _validate.static_spatial_size("resize_blend", "x1", x1.shape[2:])
    ho, wo = size
    return _empty((x1.shape[0], x1.shape[1], ho, wo), x1, output_memory_format(x1, x2))


def _resize_blend_backward_impl(grad_out, x1, x2, w1, w2, size, align_corners, scale1, scale2, backend, grad_mask):
    mask = [bool(m) for m in grad_mask]
    if x1.numel() == 0:
        grads = (
            _empty(x1.shape, x1, output_memory_format(x1)),
            _empty(x2.shape, x2, output_memory_format(x2)),
            torch.zeros_like(w1),
            torch.zeros_like(w2),
        )
    else:
        k = _dispatch.select("resize_blend", x1.device, backend, for_backward=True)
        grads = k.backward(
            grad_out, x1, x2, w1, w2, list(size), align_corners, (_scale_arg(scale1), _scale_arg(scale2)), mask
        )
    return tuple(g if m else _no_grad() for g, m in zip(grads, mask))


_resize_blend_backward = _custom_op(
    "_resize_blend_backward",
    _resize_blend_backward_impl,
    "(Tensor grad_out, Tensor x1, Tensor x2, Tensor w1, Tensor w2, SymInt[] size, bool align_corners,"
    " float[]? scale1, float[]? scale2, str? backend, bool[] grad_mask) -> (Tensor, Tensor, Tensor, Tensor)",
)


@_resize_blend_backward.register_fake
def _(grad_out, x1, x2, w1, w2, size, align_corners, scale1, scale2, backend, grad_mask):
    like = (
        _empty(x1.shape, x1, output_memory_format(x1)),
        _empty(x2.shape, x2, output_memory_format(x2)),
        torch.empty_like(w1),
        torch.empty_like(w2),
    )
    return tuple(g if m else _no_grad() for g, m in zip(like, grad_mask))


def _resize_blend_setup_context(ctx, inputs, output):
    x1, x2, w1, w2, size, align_corners, scale1, scale2, backend = inputs
    ctx.save_for_backward(x1, x2, w1, w2)
    ctx.args = (list(size), align_corners, scale1, scale2, backend)


def _resize_blend_autograd(ctx, grad_out):
    x1, x2, w1, w2 = ctx.saved_tensors
    mask = list(ctx.needs_input_grad[:4])
    grads = torch.ops.resizeops._resize_blend_backward(grad_out, x1, x2, w1, w2, *ctx.args, mask)
    return tuple(g if m else None for g, m in zip(grads, mask)) + (None,) * 5


_resize_blend.register_autograd(_resize_blend_autograd, setup_context=_resize_blend_setup_context)
_resize_blend_backward.register_autograd(_double_backward("resize_blend"), setup_context=_noop_setup_context)


def resize_blend(
    x1: torch.Tensor,
    x2: torch.Tensor,
    w1: Union[torch.Tensor, Number],
    w2: Union[torch.Tensor, Number],
    size: Sequence[int],
    align_corners: bool = True,
    scales=None,
    *,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """``w1·R(x1) + w2·R(x2)``: bilinear resize of both inputs to ``size``, blended.

    Defined in docs/SEMANTICS.md, "resize_blend".

    Serves the Shape Adaptor cell (``align_corners=True``, ``w1 = k(1−σ)``,
    ``w2 = kσ``) and the ELASTIC merge (``align_corners=False``, ``w1 = w2 = 1``,
    ``scales=((2, 2), None)``).

    Args:
        x1, x2: (N, C, H_k, W_k) feature maps of one dtype and device, same N and C.
        w1, w2: Python numbers or 0-d floating tensors on the inputs' device
            (gradients flow to tensors). Their dtype does not promote the output.
        size: (Ho, Wo), both ≥ 1.
        align_corners: as in ``F.interpolate``.
        scales: None, or ``(s1, s2)`` with each entry None or a pair (sh, sw) (or
            one float for both axes): that input is resized like
            ``interpolate(scale_factor=s, recompute_scale_factor=False)`` and its
            top-left ``size`` window kept. ``floor(H_k·sh) ≥ Ho`` is required.
        backend: as in :func:`dynopool2d`.

    Returns:
        (N, C, Ho, Wo) of the inputs' dtype; channels_last if either input is.
    """
    op = "resize_blend"
    _validate.feature_map(op, "x1", x1)
    _validate.feature_map(op, "x2", x2)
    if x1.dtype != x2.dtype:
        raise TypeError(f"{op}: `x1` and `x2` must have one dtype, got {x1.dtype} and {x2.dtype}")
    _validate.same_device(op, "x2", x2, "x1", x1)
    if x1.shape[0] != x2.shape[0] or x1.shape[1] != x2.shape[1]:
        raise ValueError(
            f"{op}: `x1` and `x2` must have the same N and C, got shapes {tuple(x1.shape)} and {tuple(x2.shape)}"
        )
    _validate.weight(op, "w1", w1, x1)
    _validate.weight(op, "w2", w2, x1)
    ho, wo = _validate.size_pair(op, "size", size)
    if not isinstance(align_corners, bool):
        raise TypeError(f"{op}: `align_corners` must be a bool, got {type(align_corners).__name__}")
    if scales is None:
        s1 = s2 = None
    else:
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or len(scales) != 2:
            raise TypeError(f"{op}: `scales` must be None or a pair (scale of x1, scale of x2), got {scales!r}")
        s1 = _validate.scale_pair(op, "scales[0]", scales[0])
        s2 = _validate.scale_pair(op, "scales[1]", scales[1])
        for name, xk, sk in (("scales[0]", x1, s1), ("scales[1]", x2, s2)):
            if sk is not None:
                full = (math.floor(xk.shape[2] * sk[0]), math.floor(xk.shape[3] * sk[1]))
                if full[0] < ho or full[1] < wo:
                    raise ValueError(
                        f"{op}: `{name}`={sk} resizes an input of {tuple(xk.shape[2:])} to {full}, "
                        f"smaller than `size`={(ho, wo)}: nothing to crop from"
                    )
                # The op is defined as interpolate-then-crop: a scale whose full
                # interpolate output is over the limit is refused like any other
                # output over it (the kernels never build it, but the
                # align_corners=True reference does, and 32-bit tables could not).
                _validate.output_numel(op, name, x1.shape[0], x1.shape[1], full[0], full[1], sk)
    _validate.output_numel(op, "size", x1.shape[0], x1.shape[1], ho, wo, f"({ho}, {wo})")
    cdt = reference.compute_dtype(x1.dtype)
    if not isinstance(w1, torch.Tensor):
        w1 = torch.tensor(float(w1), dtype=cdt, device=x1.device)
    if not isinstance(w2, torch.Tensor):
        w2 = torch.tensor(float(w2), dtype=cdt, device=x1.device)
    args = (x1, x2, w1, w2, [ho, wo], align_corners, s1, s2, _dispatch.requested(backend))
    return _call_op("resize_blend", args)


# =============================================================================
# shape_adaptor_maxpool (Shape Adaptor §3, Fig. 2; docs/SEMANTICS.md, "shape_adaptor_maxpool"): the Shape Adaptor VGG cell in one op
# =============================================================================


def _shape_adaptor_maxpool_impl(x, w1, w2, size, align_corners, backend):
    ho, wo = size
    if x.numel() == 0:
        return _empty((x.shape[0], x.shape[1], ho, wo), x, output_memory_format(x))
    k = _dispatch.select("shape_adaptor_maxpool", x.device, backend)
    return k.forward(x, w1, w2, [ho, wo], align_corners)


_shape_adaptor_maxpool = _custom_op(
    "shape_adaptor_maxpool",
    _shape_adaptor_maxpool_impl,
    "(Tensor x, Tensor w1, Tensor w2, SymInt[] size, bool align_corners, str? backend) -> Tensor",
)


@_shape_adaptor_maxpool.register_fake
def _(x, w1, w2, size, align_corners, backend):
    _validate.static_spatial_size("shape_adaptor_maxpool", "x", x.shape[2:])
    ho, wo = size
    return _empty((x.shape[0], x.shape[1], ho, wo), x, output_memory_format(x))


def _shape_adaptor_maxpool_backward_impl(grad_out, x, w1, w2, size, align_corners, backend, grad_mask):
    mask = [bool(m) for m in grad_mask]
    if x.numel() == 0:
        grads = (_empty(x.shape, x, output_memory_format(x)), torch.zeros_like(w1), torch.zeros_like(w2))
    else:
        k = _dispatch.select("shape_adaptor_maxpool", x.device, backend, for_backward=True)
        grads = k.backward(grad_out, x, w1, w2, list(size), align_corners, mask)
    return tuple(g if m else _no_grad() for g, m in zip(grads, mask))


_shape_adaptor_maxpool_backward = _custom_op(
    "_shape_adaptor_maxpool_backward",
    _shape_adaptor_maxpool_backward_impl,
    "(Tensor grad_out, Tensor x, Tensor w1, Tensor w2, SymInt[] size, bool align_corners, str? backend,"
    " bool[] grad_mask) -> (Tensor, Tensor, Tensor)",
)


@_shape_adaptor_maxpool_backward.register_fake
def _(grad_out, x, w1, w2, size, align_corners, backend, grad_mask):
    like = (_empty(x.shape, x, output_memory_format(x)), torch.empty_like(w1), torch.empty_like(w2))
    return tuple(g if m else _no_grad() for g, m in zip(like, grad_mask))


def _shape_adaptor_maxpool_setup_context(ctx, inputs, output):
    x, w1, w2, size, align_corners, backend = inputs
    ctx.save_for_backward(x, w1, w2)
    ctx.args = (list(size), align_corners, backend)


def _shape_adaptor_maxpool_autograd(ctx, grad_out):
    x, w1, w2 = ctx.saved_tensors
    mask = list(ctx.needs_input_grad[:3])
    grads = torch.ops.resizeops._shape_adaptor_maxpool_backward(grad_out, x, w1, w2, *ctx.args, mask)
    return tuple(g if m else None for g, m in zip(grads, mask)) + (None,) * 3


_shape_adaptor_maxpool.register_autograd(
    _shape_adaptor_maxpool_autograd, setup_context=_shape_adaptor_maxpool_setup_context
)
_shape_adaptor_maxpool_backward.register_autograd(
    _double_backward("shape_adaptor_maxpool"), setup_context=_noop_setup_context
)


def shape_adaptor_maxpool(
    x: torch.Tensor,
    w1: Union[torch.Tensor, Number],
    w2: Union[torch.Tensor, Number],
    size: Sequence[int],
    align_corners: bool = True,
    *,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """The Shape Adaptor max-pool op ``w1·R(maxpool2x2(x)) + w2·R(x)``.

    Defined in docs/SEMANTICS.md, "shape_adaptor_maxpool".

    Equal to ``resize_blend(F.max_pool2d(x, 2), x, w1, w2, size, align_corners)``
    (Shape Adaptor Fig. 2, the VGG cell of the official code), without
    materialising the pooled branch: the kernels take each 2×2 max where
    the bilinear taps read it, and the backward sends the pooled branch's
    gradient to the first maximum of each window, as max_pool2d does.

    Args:
        x: (N, C, H, W) feature map with H, W ≥ 2, float16/bfloat16/float32/float64.
        w1, w2: the weights of the pooled and of the full-resolution branch:
            Python numbers or 0-d floating tensors on ``x``'s device (k(1−σ) and
            kσ in the paper). Gradients flow to tensors.
        size: (Ho, Wo), both ≥ 1.
        align_corners: as in ``F.interpolate``; the Shape Adaptor code uses True.
        backend: as in :func:`dynopool2d`.

    Returns:
        (N, C, Ho, Wo) of ``x``'s dtype, contiguous in ``x``'s memory format.
    """
    op = "shape_adaptor_maxpool"
    _validate.feature_map(op, "x", x)
    if x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(
            f"{op}: `x` must have H ≥ 2 and W ≥ 2 for its 2×2 max-pool branch, got shape {tuple(x.shape)}"
        )
    _validate.weight(op, "w1", w1, x, "x")
    _validate.weight(op, "w2", w2, x, "x")
    ho, wo = _validate.size_pair(op, "size", size)
    if not isinstance(align_corners, bool):
        raise TypeError(f"{op}: `align_corners` must be a bool, got {type(align_corners).__name__}")
    _validate.output_numel(op, "size", x.shape[0], x.shape[1], ho, wo, f"({ho}, {wo})")
    cdt = reference.compute_dtype(x.dtype)
    if not isinstance(w1, torch.Tensor):
        w1 = torch.tensor(float(w1), dtype=cdt, device=x.device)
    if not isinstance(w2, torch.Tensor):
        w2 = torch.tensor(float(w2), dtype=cdt, device=x.device)
    args = (x, w1, w2, [ho, wo], align_corners, _dispatch.requested(backend))
    return _call_op("shape_adaptor_maxpool", args)


# =============================================================================
# The reference backend
# =============================================================================


def _cpu_only(device: torch.device) -> bool:
    # grid_sample's and upsample_bilinear2d's CUDA backward use atomicAdd.
    return device.type == "cpu"


_dispatch.register_kernel("reference", "dynopool2d", reference.dynopool2d, reference.dynopool2d_backward, _cpu_only)
_dispatch.register_kernel(
    "reference", "resize_blend", reference.resize_blend, reference.resize_blend_backward, _cpu_only
)
_dispatch.register_kernel(
    "reference",
    "shape_adaptor_maxpool",
    reference.shape_adaptor_maxpool,
    reference.shape_adaptor_maxpool_backward,
    _cpu_only,
)


# =============================================================================
# Export without resizeops: the forward ops' ATen decompositions (resizeops/core/export.py)
# in torch's global decomposition table, which torch.onnx.export applies to ops its
# ONNX registry lacks; torch.export and run_decompositions() keep the custom ops.
# =============================================================================

export._register_global()
