"""Deploying a trained model without resizeops: the ops as standard ATen ops.

A frozen model (:func:`resizeops.freeze`) exports with ``torch.export`` and keeps
the custom ops ``resizeops::*`` with their kernels. For runtimes that know
only ATen or ONNX, each forward op has a decomposition into standard ATen ops,
the same math in the cheapest form found:

* ``dynopool2d``: a bilinear resize (``align_corners=False``) to (2·Ho, 2·Wo),
  then a 2×2 max-pool. Query row j of DynOPool (0 ≤ j < 2·Ho) samples the source
  coordinate ``((y_j + 1)·H − 1)/2`` with ``y_j = −1 + (2j + 1)/(2·Ho)`` (the
  value of Ĥ is Ho), that is ``(j + ½)·H/(2·Ho) − ½``: the half-pixel coordinate
  ``F.interpolate(size=2·Ho, align_corners=False)`` gives output row j. Border
  padding clips it to [0, H − 1]; interpolate clamps a negative one to 0 and,
  past the last pixel's centre, blends the last pixel with itself: the same
  samples. Output cell (i, k) is the max of query rows 2i, 2i + 1 and columns
  2k, 2k + 1: ``max_pool2d(·, 2)``. So ``min_size``, up-sampling (α < 1) and odd
  sizes need nothing special. The two forms differ only by rounding (the op goes
  through the normalised coordinate, which loses up to H·2⁻²⁴ of a pixel in
  float32) and for non-finite inputs where a bilinear weight is exactly 0 (one
  form multiplies a neighbour by it, 0·inf = NaN, the other skips it);
  ``tests/test_export.py`` checks both statements.
* ``resize_blend`` and ``shape_adaptor_maxpool``: the reference composition
  (:func:`resizeops.reference.resize_blend`: ``F.interpolate`` of each input,
  with a scale and a crop where ``scales`` says so, an input already of the
  output size passed through; the cell's low branch ``max_pool2d(x, 2)``).

Half types are computed in float32 and rounded once, and the output keeps the
input's memory format, as the ops do. The decompositions compute the forward
value only (α gets no gradient through them: a frozen model needs none).

They are registered in torch's global decomposition table at import, which
``torch.onnx.export`` (the default, ``dynamo=True`` exporter) applies to every op
its ONNX registry lacks: a plain ``torch.onnx.export(frozen, args)`` gives an
ONNX graph of standard ops (Resize, MaxPool, Slice, Mul, Add) that runs without
resizeops. ``torch.export.export`` and ``ExportedProgram.run_decompositions()``
with the default table keep the custom ops; :func:`decompositions` is the table
that removes them. Under the TorchScript exporter (``dynamo=False``), which has
no decomposition table, the ops record these decompositions in its trace.
"""

from __future__ import annotations

import sys
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F

from . import _validate, reference

__all__ = ["decompositions"]


# Each decomposition first refuses a dynamic H or W under export, as the ops' fake kernels
# do: FakeTensorMode runs a registered decomposition instead of the fake kernel when sizes
# are symbolic (dynamo's strict export, which the ONNX exporter falls back to).


def _dynopool2d(x, alpha, out_size, backend=None):
    _validate.static_spatial_size("dynopool2d", "x", x.shape[2:])
    ho, wo = out_size
    cdt = reference.compute_dtype(x.dtype)
    queries = F.interpolate(x.to(cdt), size=(2 * ho, 2 * wo), mode="bilinear", align_corners=False)
    out = F.max_pool2d(queries, 2)
    return out.to(x.dtype).contiguous(memory_format=reference.output_memory_format(x))


def _resize_whole_then_crop(x, size, align_corners, scale):
    """``reference.resize``, always through the whole scaled image: ONNX's ``Resize`` takes
    an output size or scales, not both, so the reference's cropped form (a smaller output
    at the full scale) has no ONNX equivalent; interpolate by the scale, then a ``Slice``."""
    if scale is None:
        return reference.resize(x, size, align_corners)
    y = F.interpolate(x, scale_factor=(float(scale[0]), float(scale[1])), mode="bilinear",
                      align_corners=align_corners, recompute_scale_factor=False)  # fmt: skip
    return y[..., : int(size[0]), : int(size[1])]


def _resize_blend(x1, x2, w1, w2, size, align_corners, scale1=None, scale2=None, backend=None):
    _validate.static_spatial_size("resize_blend", "x2", x2.shape[2:])
    _validate.static_spatial_size("resize_blend", "x1", x1.shape[2:])
    return reference.blend(_resize_whole_then_crop, x1, x2, w1, w2, size, align_corners, (scale1, scale2))


def _shape_adaptor_maxpool(x, w1, w2, size, align_corners, backend=None):
    _validate.static_spatial_size("shape_adaptor_maxpool", "x", x.shape[2:])
    return reference.shape_adaptor_maxpool(x, w1, w2, size, align_corners)


#: The ATen decomposition of each forward op, by op name (the same argument list as
#: ``torch.ops.resizeops.<name>``).
DECOMPOSITIONS: Dict[str, Callable] = {
    "dynopool2d": _dynopool2d,
    "resize_blend": _resize_blend,
    "shape_adaptor_maxpool": _shape_adaptor_maxpool,
}


def _op_table() -> Dict[torch._ops.OpOverload, Callable]:
    return {getattr(torch.ops.resizeops, name).default: fn for name, fn in DECOMPOSITIONS.items()}


def decompositions(table: Optional[dict] = None) -> dict:
    """A decomposition table that lowers resizeops' ops to ATen, for ``run_decompositions``.

    ``torch.export.export(frozen, args).run_decompositions(resizeops.decompositions())``
    gives a program with no ``resizeops::`` op: the core ATen ops of
    ``torch.export.default_decompositions()``, with resizeops' ops decomposed as this
    module describes.

    Args:
        table: a decomposition table of your own to add resizeops' entries to (not
            modified: a copy is returned). Default: ``torch.export.default_decompositions()``.
    """
    out = torch.export.default_decompositions() if table is None else table.copy()
    out.update(_op_table())
    return out


def _register_global() -> None:
    """Register the decompositions in torch's global table (``torch._decomp``): the
    ONNX exporter decomposes every op without an ONNX translation with it."""
    from torch._decomp import decomposition_table, register_decomposition

    for op, fn in _op_table().items():
        if op not in decomposition_table:
            register_decomposition(op)(fn)


def onnx_tracing() -> bool:
    """Whether the TorchScript ONNX exporter (``torch.onnx.export(..., dynamo=False)``) is tracing."""
    return torch.jit.is_tracing() and torch.onnx.is_in_onnx_export()


def exporting() -> bool:
    """Whether a model is being captured for export: ``torch.export`` (which
    ``torch.onnx.export`` uses) or the TorchScript ONNX exporter."""
    return torch.compiler.is_exporting() or onnx_tracing()


def _qualified_name(layer: torch.nn.Module) -> Optional[str]:
    """``layer``'s name in the outermost module being run (found on the call stack), if any."""
    if torch.compiler.is_dynamo_compiling():  # traced by dynamo: no frames to walk
        return None
    name = None
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, torch.nn.Module) and owner is not layer and not _exporter_wrapper(owner):
            found = next((n for n, m in owner.named_modules() if m is layer), None)
            if found is not None:
                name = found
        frame = frame.f_back
    return name


def _exporter_wrapper(module: torch.nn.Module) -> bool:
    # The exporters run the user's model inside modules of their own (torch.jit's
    # ONNXTracedModule, torch.export's wrappers): names are the user's below them.
    return type(module).__module__.startswith(("torch.jit", "torch.export", "torch.onnx", "torch._"))


def not_frozen_error(layer: torch.nn.Module) -> ValueError:
    """The error for a resizer met by an export before :func:`resizeops.freeze`."""
    name = _qualified_name(layer)
    where = f"{type(layer).__name__} {name!r}" if name else type(layer).__name__
    return ValueError(
        f"{where} is not frozen, so it cannot be exported: its output size is computed on the host "
        f"from its learnable `alpha`, which an exported program cannot do. Export resizeops.freeze(model) "
        f"instead (a copy with the learned sizes baked in as constants)"
    )
