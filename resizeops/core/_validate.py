"""Argument checks (docs/SEMANTICS.md, Bad input), run by the public ops before any kernel.

Every check raises a ``TypeError`` (wrong kind of thing) or ``ValueError`` (right
kind, wrong value) whose message names the argument, what was expected and what
was given. The checks only read metadata (shape, dtype, device), so they trace
under ``torch.compile``; the one exception, ``alpha``'s values, is read only when
the output size must be computed from it anyway (``out_size=None``).
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Tuple

import torch

#: Largest output, in elements, an op will allocate (2**33 elements: 32 GiB in
#: float32). A scale that asks for more is an input error, not an OOM
#: (docs/SEMANTICS.md, Bad input). Change it with
#: ``resizeops.MAX_OUTPUT_NUMEL = ...`` if you really mean it.
MAX_OUTPUT_NUMEL = 2**33

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _fmt_shape(shape) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def feature_map(op: str, name: str, x) -> None:
    """A 4-D floating (N, C, H, W) tensor with H, W ≥ 1."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: `{name}` must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{op}: `{name}` must be 4-D (N, C, H, W), got a {x.dim()}-D tensor of shape {_fmt_shape(x.shape)}"
        )
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{op}: `{name}` must be float16, bfloat16, float32 or float64, got {x.dtype}"
        )
    static_spatial_size(op, name, x.shape[2:])
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(
            f"{op}: `{name}` must have H ≥ 1 and W ≥ 1 to be resampled, got shape {_fmt_shape(x.shape)}"
        )


def static_spatial_size(op: str, name: str, size: Sequence) -> None:
    """Under ``torch.export`` (``torch.onnx.export`` included) ``size`` = (H, W) must be static.

    The output sizes are plain integers computed on the host from H, W and the
    learned scales that ``resizeops.freeze`` baked in (rounded: ``rnd(H/α)``,
    ``floor(D·s)``), so an exported program holds them as constants. A symbolic H or W
    means the caller asked for a dynamic one; left alone, export would report a
    "specialized to a constant" violation (or the ONNX exporter quietly drop the
    dynamism). The batch dimension may be dynamic.
    """
    if not torch.compiler.is_exporting():
        return
    dynamic = [axis for axis, v in zip("HW", size) if isinstance(v, torch.SymInt)]
    if dynamic:
        raise ValueError(
            f"{op}: `{name}` has a dynamic {' and '.join(dynamic)} under torch.export: "
            f"resizeops layers cannot be exported with a dynamic height or width, because their output sizes "
            f"are fixed by resizeops.freeze (rounded from the learned scales for each input size); export with "
            f"a static H and W (only the batch dimension may be dynamic, e.g. dynamic_shapes=({{0: Dim('batch')}},))"
        )


def same_device(op: str, name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.device != ref.device:
        raise ValueError(
            f"{op}: `{name}` is on {t.device} but `{ref_name}` is on {ref.device}; move them to one device"
        )


def alpha_tensor(op: str, alpha, x: torch.Tensor) -> None:
    """``alpha``: a floating tensor of shape (2,) on ``x``'s device (values checked separately)."""
    if not isinstance(alpha, torch.Tensor):
        raise TypeError(
            f"{op}: `alpha` must be a floating tensor of shape (2,) = (alpha_h, alpha_w), got {type(alpha).__name__}"
        )
    if tuple(alpha.shape) != (2,):
        raise ValueError(
            f"{op}: `alpha` must have shape (2,) = (alpha_h, alpha_w), got shape {_fmt_shape(alpha.shape)}"
        )
    if alpha.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: `alpha` must be a floating tensor, got dtype {alpha.dtype}")
    same_device(op, "alpha", alpha, "x", x)


def alpha_readable(op: str, alpha: torch.Tensor) -> None:
    """The output size is computed from ``alpha``'s values, which a meta tensor does not have."""
    if alpha.device.type == "meta":
        raise ValueError(
            f"{op}: `alpha` is on the meta device, so its values cannot be read to compute the output size; "
            f"pass `out_size` (e.g. dynopool2d_output_size((H, W), alpha_values)) to run on meta tensors"
        )


def alpha_sequence(op: str, alpha) -> Tuple[float, float]:
    """Two real numbers (α_h, α_w): a sequence of numbers or a (2,) tensor on the host."""
    if isinstance(alpha, torch.Tensor):
        if tuple(alpha.shape) != (2,):
            raise ValueError(f"{op}: `alpha` must hold two values (alpha_h, alpha_w), got shape {_fmt_shape(alpha.shape)}")
        alpha_readable(op, alpha)
        return tuple(float(v) for v in alpha.detach().tolist())
    if isinstance(alpha, (str, bytes)) or not isinstance(alpha, Sequence) or len(alpha) != 2:
        raise TypeError(f"{op}: `alpha` must be two numbers (alpha_h, alpha_w), got {alpha!r}")
    out = []
    for v in alpha:
        if isinstance(v, torch.Tensor) and v.numel() == 1 and v.device.type != "meta":
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{op}: `alpha` must be two numbers (alpha_h, alpha_w), got {alpha!r}")
        out.append(_as_float(op, "alpha", v))
    return out[0], out[1]


def _as_float(op: str, name: str, v) -> float:
    """float(v) for a real number; a Python int beyond float64's range is a ValueError naming it."""
    try:
        return float(v)
    except OverflowError:
        shown = repr(v) if len(repr(v)) <= 24 else f"{repr(v)[:12]}… ({len(str(abs(int(v))))} digits)"
        raise ValueError(f"{op}: `{name}` = {shown} does not fit a float64 (magnitude over 1.8e308)") from None


def alpha_values(op: str, values: Sequence[float]) -> None:
    """``alpha`` must be finite and > 0 (it is 1/r, DynOPool Eq. 6)."""
    for axis, v in zip("hw", values):
        if not math.isfinite(v) or v <= 0:
            raise ValueError(
                f"{op}: `alpha` must be finite and > 0 (alpha = 1/r), got alpha_{axis} = {v!r} "
                f"(alpha = ({values[0]!r}, {values[1]!r}))"
            )


def _is_int(v) -> bool:
    return isinstance(v, (numbers.Integral, torch.SymInt)) and not isinstance(v, bool)


def size_pair(op: str, name: str, size) -> Tuple[int, int]:
    """Two positive integers (a torch.Size, tuple or list)."""
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence):  # torch.Size is a tuple
        raise TypeError(f"{op}: `{name}` must be a pair of ints (H, W), got {type(size).__name__}")
    if len(size) != 2:
        raise ValueError(f"{op}: `{name}` must be a pair of ints (H, W), got {len(size)} entries: {tuple(size)!r}")
    if torch.jit.is_tracing():  # a shape read under torch.jit.trace (the TorchScript ONNX exporter) holds 0-d tensors
        size = [int(v) if isinstance(v, torch.Tensor) and v.dim() == 0 and not v.is_floating_point() else v for v in size]
    for v in size:
        if not _is_int(v):
            raise TypeError(f"{op}: `{name}` must be a pair of ints (H, W), got {tuple(size)!r}")
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"{op}: `{name}` entries must be ≥ 1, got {tuple(int(v) for v in size)!r}")
    return size[0], size[1]


def positive_int(op: str, name: str, v) -> int:
    if not _is_int(v):
        raise TypeError(f"{op}: `{name}` must be an int, got {type(v).__name__}")
    if v < 1:
        raise ValueError(f"{op}: `{name}` must be ≥ 1, got {v}")
    return v


def _sci(count: int) -> str:
    """An element count in scientific notation, also beyond float64's range."""
    digits = len(str(count))
    return f"{count:.3e}" if digits < 300 else f"{str(count)[0]}.{str(count)[1:4]}e+{digits - 1}"


def output_numel(op: str, name: str, n: int, c: int, ho, wo, given) -> None:
    """Refuse outputs over :data:`MAX_OUTPUT_NUMEL` (an empty batch still counts one image).

    A symbolic batch (``torch.export`` with a dynamic batch dimension) counts one image:
    reading its value would specialise it to the example's batch size.
    """
    if isinstance(n, torch.SymInt):
        n = 1
    numel = max(int(n) * int(c), 1) * int(ho) * int(wo)
    import resizeops  # the limit is user-settable on the package

    limit = getattr(resizeops, "MAX_OUTPUT_NUMEL", MAX_OUTPUT_NUMEL)
    if numel > limit:
        raise ValueError(
            f"{op}: `{name}`={given} asks for an output of {int(n)}×{int(c)}×{int(ho)}×{int(wo)} = {_sci(numel)} elements, "
            f"more than resizeops.MAX_OUTPUT_NUMEL = {limit:.3e}"
        )


def weight(op: str, name: str, w, x: torch.Tensor, x_name: str = "x1") -> None:
    """A Python real number or a 0-d floating tensor on ``x``'s device."""
    if isinstance(w, torch.Tensor):
        if w.dim() != 0:
            raise ValueError(f"{op}: `{name}` must be a 0-d tensor or a float, got shape {_fmt_shape(w.shape)}")
        if w.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{op}: `{name}` must be a floating 0-d tensor or a float, got dtype {w.dtype}")
        same_device(op, name, w, x_name, x)
    elif isinstance(w, bool) or not isinstance(w, numbers.Real):
        raise TypeError(f"{op}: `{name}` must be a float or a 0-d floating tensor, got {type(w).__name__}")
    else:
        _as_float(op, name, w)


def scale_pair(op: str, name: str, s) -> Optional[Tuple[float, float]]:
    if s is None:
        return None
    if isinstance(s, numbers.Real) and not isinstance(s, bool):
        s = (s, s)
    if isinstance(s, (str, bytes)) or not isinstance(s, Sequence) or len(s) != 2:
        raise TypeError(f"{op}: `{name}` must be None, a float or a pair of floats (sh, sw), got {s!r}")
    out = []
    for v in s:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{op}: `{name}` must hold floats, got {s!r}")
        v = _as_float(op, name, v)
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"{op}: `{name}` entries must be finite and > 0, got {tuple(s)!r}")
        out.append(v)
    return out[0], out[1]
