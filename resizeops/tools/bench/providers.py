"""Who runs a case: the providers, side by side on the same inputs.

:func:`providers_for` lists them for a case and a device:

* each backend of :func:`resizeops.backends` that is available for the device
  (the public op called with ``backend=name``; on the CPU the Triton
  interpreter is only run when named: it is a debugging aid, thousands of
  times slower than anything else);
* ``maxpool+blend`` (:data:`POOL_THEN_BLEND`, ``shape_adaptor_maxpool`` only):
  ``F.max_pool2d(x, 2)`` followed by the fused ``resize_blend`` on the default
  backend, the unfused alternative the fused cell must beat;
* the :data:`VARIANTS` (``dynopool2d`` only, and only when named): a backend
  run with environment settings that select one of its opt-in kernel forms
  (``docs/DESIGN.md``), set around the forward and the backward
  (:func:`env_settings`); those of :data:`NCHW_ONLY` are skipped in
  channels_last, where they would time the default again;
* ``eager-reference`` (:data:`EAGER`): :mod:`resizeops.reference` called
  directly (plain PyTorch, the baseline of every ratio);
* ``compiled-reference`` (:data:`COMPILED`): ``torch.compile(reference fn,
  dynamic=False)``, compiled once per case, dtype and layout (its compile time
  is reported as ``first_ms``, not timed).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Union

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .cases import Case

EAGER = "eager-reference"
COMPILED = "compiled-reference"
POOL_THEN_BLEND = "maxpool+blend"
# A backend run under environment settings (provider -> (backend, {variable: value})).
VARIANTS = {
    "cuda-lanes": ("cuda", {"RESIZEOPS_CUDA_LANES": "4"}),
    "triton-rows": ("triton", {"RESIZEOPS_TRITON_FORWARD": "rows"}),
    "triton-w8": ("triton", {"RESIZEOPS_TRITON_WARPS": "8"}),
    "triton-rows-w8": ("triton", {"RESIZEOPS_TRITON_FORWARD": "rows", "RESIZEOPS_TRITON_WARPS": "8"}),
    "cuda-fused": ("cuda", {"RESIZEOPS_CUDA_GRAD_X": "fused"}),
    "cuda-fused-lanes": ("cuda", {"RESIZEOPS_CUDA_GRAD_X": "fused", "RESIZEOPS_CUDA_LANES": "4"}),
    "cuda-rows": ("cuda", {"RESIZEOPS_CUDA_FORWARD": "rows"}),
    "cuda-separable": ("cuda", {"RESIZEOPS_CUDA_FORWARD": "separable"}),
    "cuda-fused-separable": (
        "cuda",
        {
            "RESIZEOPS_CUDA_FORWARD": "separable",
            "RESIZEOPS_CUDA_GRAD_X": "fused",
            "RESIZEOPS_CUDA_FUSED_WINNERS": "separable",
        },
    ),
}
# Variants whose forms exist for NCHW only: in channels_last they would time the
# default again, so a channels_last run skips them (with a note).
NCHW_ONLY = ("cuda-rows", "cuda-separable", "cuda-fused-separable", "triton-rows", "triton-rows-w8")

_COMPILED: Dict[str, Callable] = {}


def compiled_reference(op: str) -> Callable:
    """``torch.compile(resizeops.reference.<op>, dynamic=False)``, created once per op.

    Call :func:`reset_compiled` between cases so that each case compiles afresh
    (and dynamo's recompile limit is never reached, which would silently fall
    back to eager).
    """
    if op not in _COMPILED:
        from resizeops.core import reference

        _COMPILED[op] = torch.compile(getattr(reference, op), dynamic=False)
    return _COMPILED[op]


def reset_compiled() -> None:
    _COMPILED.clear()
    torch._dynamo.reset()


def providers_for(
    case: "Case",
    device: Union[str, torch.device] = "cpu",
    wanted: Optional[Sequence[str]] = None,
    compile: bool = True,
    notes: Optional[List[str]] = None,
    channels_last: bool = False,
) -> List[str]:
    """Provider names for ``case`` on ``device``: available backends, then eager, then compiled.

    ``wanted``: keep only these names (backend names, ``eager-reference``,
    ``compiled-reference``); a wanted backend that cannot run is skipped and its
    reason appended to ``notes``, and so is a wanted NCHW-only variant
    (:data:`NCHW_ONLY`) when ``channels_last``.
    """
    import resizeops

    device = torch.device(device)
    wanted_set = None if wanted is None else set(wanted)
    names: List[str] = []
    listing = resizeops.backends(device, op=case.op)
    available = {b.name for b in listing if b.available}
    for b in listing:
        asked = wanted_set is not None and b.name in wanted_set
        if wanted_set is not None and not asked:
            continue
        if not b.available:
            if asked and notes is not None:
                notes.append(f"{case.op}: backend {b.name!r} skipped: {b.reason}")
            continue
        if b.name == "triton" and device.type == "cpu" and not asked:
            continue  # the Triton interpreter: only when asked for by name
        names.append(b.name)
    if case.op == "shape_adaptor_maxpool" and (wanted_set is None or POOL_THEN_BLEND in wanted_set):
        names.append(POOL_THEN_BLEND)
    for variant, (backend, _) in VARIANTS.items():
        if wanted_set is not None and variant in wanted_set and case.op == "dynopool2d":
            if channels_last and variant in NCHW_ONLY:
                if notes is not None:
                    notes.append(f"{case.op}: {variant!r} skipped: NCHW only (in channels_last it is the default)")
            elif backend in available:
                names.append(variant)
            elif notes is not None:
                notes.append(f"{case.op}: {variant!r} skipped: backend {backend!r} is not available")
    if wanted_set is None or EAGER in wanted_set:
        names.append(EAGER)
    if compile and (wanted_set is None or COMPILED in wanted_set):
        names.append(COMPILED)
    return names


@contextlib.contextmanager
def env_settings(settings: Dict[str, str]):
    """Environment variables set for a block and restored after it (the opt-in forms' switches)."""
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _variant_env(provider: str):
    """The environment of a VARIANTS provider (restored afterwards); nothing for the others."""
    return env_settings(VARIANTS.get(provider, (None, {}))[1])
