"""Who runs a case: the providers, side by side on the same inputs.

:func:`providers_for` lists them for a case and a device:

* each backend of :func:`resizeops.backends` that is available for the device
  (the public op called with ``backend=name``; on the CPU the Triton
  interpreter is only run when named: it is a debugging aid, thousands of
  times slower than anything else);
* ``maxpool+blend`` (:data:`POOL_THEN_BLEND`, ``shape_adaptor_maxpool`` only):
  ``F.max_pool2d(x, 2)`` followed by ``resize_blend`` on the default
  backend, the two-op alternative shape_adaptor_maxpool must beat;
* the variants of :data:`resizeops.core.kernel_forms.VARIANTS` (only when
  named, and only for the ops in their ``ops``): a backend running other kernel
  forms, called like a backend, ``backend=<variant name>``; the NCHW-only ones
  (:data:`NCHW_ONLY`) are skipped in channels_last, where they would time the
  default again;
* ``eager-reference`` (:data:`EAGER`): :mod:`resizeops.reference` called
  directly (plain PyTorch, the baseline of every ratio);
* ``compiled-reference`` (:data:`COMPILED`): ``torch.compile(reference fn,
  dynamic=False)``, compiled once per case, dtype and layout (its compile time
  is reported as ``first_ms``, not timed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Union

import torch

from resizeops.core.kernel_forms import VARIANTS  # name -> Variant: run as providers when named

if TYPE_CHECKING:  # pragma: no cover
    from .cases import Case

EAGER = "eager-reference"
COMPILED = "compiled-reference"
POOL_THEN_BLEND = "maxpool+blend"
#: the variants that differ from the defaults for NCHW outputs only: in channels_last
#: they would time the default again, so a channels_last run skips them (with a note)
NCHW_ONLY = tuple(name for name, v in VARIANTS.items() if v.nchw_only)

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

    ``wanted``: keep only these names (backend names, variant names,
    ``eager-reference``, ``compiled-reference``); the variants run only when
    named here. A wanted backend or variant that cannot run is skipped and its
    reason appended to ``notes``, and so is a wanted NCHW-only variant when
    ``channels_last``.
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
    if wanted_set is not None:
        reasons = {b.name: b.reason for b in listing}
        for name, variant in VARIANTS.items():
            if name not in wanted_set or case.op not in variant.ops:
                continue
            if channels_last and variant.nchw_only:
                if notes is not None:
                    notes.append(f"{case.op}: {name!r} skipped: NCHW only (in channels_last it is the default)")
            elif variant.backend in available:
                names.append(name)
            elif notes is not None:
                why = f" ({reasons[variant.backend]})" if reasons.get(variant.backend) else ""
                notes.append(f"{case.op}: {name!r} skipped: backend {variant.backend!r} is not available{why}")
    if wanted_set is None or EAGER in wanted_set:
        names.append(EAGER)
    if compile and (wanted_set is None or COMPILED in wanted_set):
        names.append(COMPILED)
    return names
