""":func:`analyze`: trace the model, run it on a fake input, return the report."""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from resizeops.models.nn import ShapeAdaptor, refresh_shapes

from .interpreter import run
from .report import RFReport, size_pair
from .tracing import trace


def analyze(
    model: nn.Module,
    input_size: Union[int, Sequence[int]] = (224, 224),
    ignore_dilation: bool = False,
    *,
    filter_inf: bool = False,
    in_channels: Optional[int] = None,
    leaf_modules: Sequence[Union[type, str]] = (),
    rules: Optional[Mapping[Any, Callable]] = None,
    concrete_args: Optional[Dict[str, Any]] = None,
    name: Optional[str] = None,
) -> RFReport:
    """Receptive-field analysis of ``model`` at an input of ``input_size``.

    What it computes is defined in ``docs/SEMANTICS.md``, "Receptive fields" (the
    receptive-field refinement paper, §3).

    Args:
        model: any ``nn.Module`` torch.fx can trace (its learnable resizers are
            analysed at their current scales). Its parameters may be on the meta
            device (build it under ``with torch.device("meta"):`` to skip weight
            initialisation); otherwise nothing is computed for real either (fake tensors).
        input_size: H = W, or (H, W); only the feature-map sizes (and
            interpolation to fixed sizes) depend on it.
        ignore_dilation: count a dilated kernel as its undilated size, as
            rfa-toolbox does, to compare with it.
        filter_inf: return :meth:`RFReport.filtered` (infinite paths left out, as
            rfa-toolbox's ``filter_all_inf_rf``).
        in_channels: of the dummy input (default: the first convolution's).
        leaf_modules: module classes or qualified names to keep as single layers
            (e.g. a block torch.fx cannot trace): pointwise if they keep the
            spatial size, else a convolution if they have ``kernel_size`` and
            ``stride``, else an error asking for a rule.
        rules: ``{module class or function: fn}``, ``fn(module_or_function,
            in_size, out_size)`` returning ``(kernel, stride)`` (numbers or
            pairs), ``"global"`` or ``"pointwise"``.
        concrete_args: passed to ``torch.fx.Tracer.trace``.
        name: the model's name in the report (default: its class).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        RFTraceError (a ValueError): torch.fx cannot trace the model, or an op
            moves spatial positions in a way the analysis does not know.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"rf.analyze: `model` must be a torch.nn.Module, got {type(model).__name__}")
    size = size_pair(input_size, "analyze")
    gm = trace(model, leaf_modules, concrete_args)
    tensors = list(model.parameters()) + list(model.buffers())
    p = tensors[0] if tensors else None
    device = p.device if p is not None else torch.device("cpu")
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    if in_channels is None:
        first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))), None)
        in_channels = first.in_channels if first is not None else 3
    shape = (1, int(in_channels)) + size

    # The analysis runs the model in eval mode; its mode and the Shape Adaptors' record of
    # their last forward are put back afterwards.
    was_training = model.training
    adaptors = [m for m in model.modules() if isinstance(m, ShapeAdaptor)]
    saved_last = [m._last for m in adaptors]
    model.eval()
    try:
        if device.type != "meta":
            refresh_shapes(model)  # the resizers' host copies, read once, outside fake mode
        ctx = run(gm, shape, device, dtype, ignore_dilation, rules)
    finally:
        model.train(was_training)
        for m, last in zip(adaptors, saved_last):
            m._last = last
    report = RFReport(model=name or type(model).__name__, input_size=size, ignore_dilation=ignore_dilation,
                      layers=ctx.rows, assumed_pointwise=ctx.assumed, notes=ctx.notes)  # fmt: skip
    return report.filtered() if filter_inf else report
