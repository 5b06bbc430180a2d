"""``resizeops.shape_report``: a model's learned shape.

One forward on a dummy input (no grad, eval mode, the model's mode restored
after) records each learnable resizer's scale and input/output size, the
feature-map size after every convolution, and the model's MACs
(``torch.utils.flop_counter``). Printable as a table; :meth:`ShapeReport.plot`
draws the feature-map sizes layer by layer, as the papers' figures do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from .nn import DynOPool2d, ShapeAdaptor, resizers

__all__ = ["shape_report", "ShapeReport", "ResizerRow", "FeatureMap"]


@dataclass
class ResizerRow:
    name: str
    kind: str
    scale: Tuple[float, float]  # output/input ratio (r_h, r_w) as set by the parameter
    in_size: Tuple[int, int]
    out_size: Tuple[int, int]


@dataclass
class FeatureMap:
    name: str
    channels: int
    size: Tuple[int, int]


@dataclass
class ShapeReport:
    input_shape: Tuple[int, ...]
    macs: int
    resizers: List[ResizerRow] = field(default_factory=list)
    feature_maps: List[FeatureMap] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"input {tuple(self.input_shape)}: {self.macs / 1e9:.4f} GMACs"]
        if self.resizers:
            lines.append(f"{'resizer':<28}{'kind':<22}{'scale (h, w)':<18}{'in':>12}{'out':>12}")
            for r in self.resizers:
                lines.append(
                    f"{r.name:<28}{r.kind:<22}{f'({r.scale[0]:.4f}, {r.scale[1]:.4f})':<18}"
                    f"{'×'.join(map(str, r.in_size)):>12}{'×'.join(map(str, r.out_size)):>12}"
                )
        else:
            lines.append("no learnable resizers")
        if self.feature_maps:
            sizes = ", ".join(f"{f.size[0]}×{f.size[1]}" for f in self.feature_maps)
            lines.append(f"feature maps after each convolution: {sizes}")
        return "\n".join(lines)

    def plot(self, path: Optional[str] = None, title: Optional[str] = None):
        """Feature-map height and width after each convolution; saved to ``path`` when given.

        Returns the matplotlib figure.
        """
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(self.feature_maps) + 2), 3.2))
        xs = range(len(self.feature_maps))
        ax.bar([x - 0.2 for x in xs], [f.size[0] for f in self.feature_maps], width=0.4, label="H")
        ax.bar([x + 0.2 for x in xs], [f.size[1] for f in self.feature_maps], width=0.4, label="W")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([f.name for f in self.feature_maps], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("feature-map size")
        ax.set_title(title or f"{self.macs / 1e9:.3f} GMACs")
        ax.legend()
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
            plt.close(fig)
        return fig


def shape_report(model: nn.Module, input_size: Sequence[int], *, device=None, dtype=None) -> ShapeReport:
    """The learned shape of ``model`` at an input of ``input_size``: (N, C, H, W) or (C, H, W).

    The dummy input is zeros on ``device`` (default: the model's) in ``dtype``
    (default: the model's floating dtype).
    """
    from torch.utils.flop_counter import FlopCounterMode

    shape = tuple(int(s) for s in input_size)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"shape_report: `input_size` must be (N, C, H, W) or (C, H, W) of positive sizes, got {input_size!r}")
    p = next(iter(model.parameters()), None)
    device = device if device is not None else (p.device if p is not None else "cpu")
    dtype = dtype if dtype is not None else (p.dtype if p is not None and p.is_floating_point() else torch.float32)
    report = ShapeReport(input_shape=shape, macs=0)
    names = {m: n for n, m in model.named_modules()}
    rows: List[ResizerRow] = []
    maps: List[FeatureMap] = []

    def on_resizer(m, inputs, output):
        x = inputs[-1]  # ShapeAdaptor: (x_low, x_full), sized from x_full
        if isinstance(m, DynOPool2d):
            kind, (rh, rw) = "DynOPool2d", m.ratio
        else:
            assert isinstance(m, ShapeAdaptor)
            kind = type(m).__name__
            rh = rw = m.scale()
        rows.append(ResizerRow(names.get(m, "?"), kind, (rh, rw), tuple(x.shape[-2:]), tuple(output.shape[-2:])))

    def on_conv(m, inputs, output):
        maps.append(FeatureMap(names.get(m, "?"), int(output.shape[1]), tuple(output.shape[-2:])))

    handles = [m.register_forward_hook(on_resizer) for m in resizers(model)]
    handles += [m.register_forward_hook(on_conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(shape, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    report.macs = int(counter.get_total_flops() // 2)
    report.resizers, report.feature_maps = rows, maps
    return report
