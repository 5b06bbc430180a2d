"""Backend registry and selection (docs/SEMANTICS.md, Backends).

Four backends, fastest first: ``cuda`` (the compiled extension's CUDA kernels),
``triton``, ``cpu`` (the extension's C++ kernels) and ``reference`` (pure
PyTorch, always available). Each backend states why it cannot run an op on a
device (xformers' ``not_supported_reasons`` pattern); kernels plug in per op with
:func:`register_kernel`.

Selection order for one call: the op's ``backend=`` argument, then the innermost
:func:`use_backend` context, then the ``RESIZEOPS_BACKEND`` environment variable,
then the fastest backend that can run the op on the tensors' device. A backend
that was asked for and cannot run is an error naming the reason; there is no
silent fallback.

Kernel forms: a backend's kernels run their measured default forms. The named
variants of :data:`resizeops.core.kernel_forms.VARIANTS` (``"cuda-lanes"``, ...)
are accepted wherever a backend name is, and run that backend with other forms
(:meth:`Kernels.with_forms`): the one way to choose a kernel form.

Determinism: when ``torch.are_deterministic_algorithms_enabled()``, the backward
pass skips (under automatic selection) backends whose backward is not
deterministic on that device. A backend asked for by name whose backward is not
deterministic raises instead, like torch's own non-deterministic ops, or warns
and runs under ``torch.use_deterministic_algorithms(True, warn_only=True)``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Union

import torch

from .kernel_forms import VARIANTS, KernelForms

ENV_VAR = "RESIZEOPS_BACKEND"
OPS = ("dynopool2d", "resize_blend", "shape_adaptor_maxpool")


@dataclass
class Kernels:
    """One backend's implementation of one op.

    ``forward``/``backward`` take the op's arguments (see :mod:`resizeops.core.ops`);
    ``deterministic_backward(device) -> bool`` says whether ``backward`` gives
    bit-identical results run to run on that device. The kernels of a backend
    with kernel forms (cuda, triton) also take ``forms=`` (a
    :class:`~resizeops.core.kernel_forms.KernelForms`).
    """

    forward: Callable
    backward: Callable
    deterministic_backward: Callable[[torch.device], bool] = lambda device: True

    def with_forms(self, forms: KernelForms) -> "Kernels":
        """These kernels running ``forms`` instead of the defaults."""
        return Kernels(
            functools.partial(self.forward, forms=forms),
            functools.partial(self.backward, forms=forms),
            self.deterministic_backward,
        )


@dataclass
class Backend:
    name: str
    #: ``(device) -> reason or None``: why this backend cannot run on the device at all.
    device_reason: Callable[[torch.device], Optional[str]]
    kernels: Dict[str, Kernels] = field(default_factory=dict)

    def not_supported_reason(self, op: str, device: torch.device) -> Optional[str]:
        reason = self.device_reason(device)
        if reason:
            return reason
        if op not in self.kernels:
            return f"no {self.name} kernel for {op} yet"
        return None


@dataclass(frozen=True)
class BackendInfo:
    """What :func:`resizeops.backends` reports for one backend."""

    name: str
    available: bool
    reason: str
    ops: tuple

    def __str__(self) -> str:
        state = "available" if self.available else f"unavailable: {self.reason}"
        return f"{self.name:<10} {state}" + (f"  (ops: {', '.join(self.ops)})" if self.ops else "")


# --- device-level availability ------------------------------------------------


def _extension_reason() -> Optional[str]:
    from . import _extension

    status = _extension.load()
    return None if status.loaded else f"compiled extension not loaded: {status.reason}"


def _cuda_reason(device: torch.device) -> Optional[str]:
    if device.type != "cuda":
        return f"runs on CUDA tensors only, got a {device.type} tensor"
    reason = _extension_reason()
    if reason:
        return reason
    from . import _extension

    status = _extension.load()
    if not status.has_cuda_kernels:
        return "the extension was built without CUDA (CPU-only build); reinstall with nvcc and a CUDA build of torch"
    if not torch.cuda.is_available():
        return "no CUDA device is visible"
    return _cuda_arch_reason(status.cuda_arch, device)


#: compute capability and name of each GPU, by device index (they do not change in a process)
_GPUS: Dict[int, tuple] = {}


def _gpu(index: int) -> tuple:
    if index not in _GPUS:
        _GPUS[index] = (tuple(torch.cuda.get_device_capability(index)), torch.cuda.get_device_name(index))
    return _GPUS[index]


def _cuda_arch_reason(targets: Optional[tuple], device: torch.device) -> Optional[str]:
    """Why the extension's GPU code cannot run on the device's GPU (None: it can, or it is not recorded)."""
    if not targets:
        return None
    from . import _cuda_arch

    index = device.index if device.index is not None else torch.cuda.current_device()
    capability, name = _gpu(index)
    return _cuda_arch.not_runnable_reason(targets, capability, f"GPU {index} ({name})")


def _triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _triton_reason(device: torch.device) -> Optional[str]:
    try:
        import triton  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        return f"triton cannot be imported ({type(e).__name__}: {e})"
    if device.type == "cuda":
        return None if torch.cuda.is_available() else "no CUDA device is visible"
    if device.type == "cpu":
        return None if _triton_interpret() else "CPU tensors need TRITON_INTERPRET=1 (the Triton interpreter)"
    return f"does not run on {device.type} tensors"


def _cpu_reason(device: torch.device) -> Optional[str]:
    if device.type != "cpu":
        return f"runs on CPU tensors only, got a {device.type} tensor"
    return _extension_reason()


def _reference_reason(device: torch.device) -> Optional[str]:
    return None


_BACKENDS: Dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("cuda", _cuda_reason),
        Backend("triton", _triton_reason),
        Backend("cpu", _cpu_reason),
        Backend("reference", _reference_reason),
    )
}
#: Preference order of automatic selection: fastest first.
ORDER = ("cuda", "triton", "cpu", "reference")


def register_kernel(
    backend: str,
    op: str,
    forward: Callable,
    backward: Callable,
    deterministic_backward: Union[bool, Callable[[torch.device], bool]] = True,
) -> None:
    """Plug one backend's kernels for one op into the dispatcher."""
    if backend not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {ORDER}")
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
    det = deterministic_backward if callable(deterministic_backward) else (lambda d, v=bool(deterministic_backward): v)
    _BACKENDS[backend].kernels[op] = Kernels(forward, backward, det)


def get_backend(name: str) -> Backend:
    return _BACKENDS[name]


# --- the user's choice ----------------------------------------------------------

# A plain module-level stack (not thread-local) so that torch.compile can read it
# while tracing; the context manager is process-wide, like torch.backends flags.
_STACK: List[Optional[str]] = []


def check_name(name: Optional[str], where: str) -> Optional[str]:
    """Normalise a backend name; ``None``/``"auto"`` mean automatic selection."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise TypeError(f"{where} must be a backend name (str) or None, got {type(name).__name__}")
    name = name.strip().lower()
    if name in ("", "auto"):
        return None
    if name not in _BACKENDS and name not in VARIANTS:
        raise ValueError(f"{where}={name!r} is not a backend; expected one of {', '.join(ORDER)} or 'auto'")
    return name


@contextlib.contextmanager
def use_backend(name: Optional[str]) -> Iterator[None]:
    """Run the resizeops ops in this block on backend ``name`` (``None``/"auto": automatic).

    A ``backend=`` argument to an op still wins. Entering with an unknown name is a
    ``ValueError``; a known backend that cannot run an op raises when the op runs.
    The setting is process-wide (not per thread).
    """
    _STACK.append(check_name(name, "use_backend(name)"))
    try:
        yield
    finally:
        _STACK.pop()


def requested(backend: Optional[str]) -> Optional[str]:
    """The backend asked for by argument or context manager (read at call time)."""
    if backend is not None:
        return check_name(backend, "backend")
    return _STACK[-1] if _STACK else None


def _env_requested() -> Optional[str]:
    return check_name(os.environ.get(ENV_VAR), ENV_VAR)


def select(op: str, device: torch.device, backend: Optional[str], for_backward: bool = False) -> Kernels:
    """The kernels that run ``op`` on ``device``.

    ``backend`` is what the call asked for (argument or context manager, from
    :func:`requested`); if None, ``RESIZEOPS_BACKEND`` is read, then automatic.
    """
    name = backend if backend is not None else _env_requested()
    deterministic = for_backward and torch.are_deterministic_algorithms_enabled()
    if name is not None:
        variant = VARIANTS.get(name)
        b = _BACKENDS[variant.backend if variant else name]
        reason = b.not_supported_reason(op, device)
        if reason:
            raise RuntimeError(f"resizeops.{op}: backend {name!r} was requested but cannot run here: {reason}")
        k = b.kernels[op]
        if variant is not None and op in variant.ops:
            k = k.with_forms(variant.forms)
        if deterministic and not k.deterministic_backward(device):
            msg = (
                f"resizeops.{op}: the backward of backend {name!r} on {device.type} is not deterministic, but "
                f"torch.use_deterministic_algorithms(True) is set; choose another backend or leave the choice to resizeops"
            )
            if not torch.is_deterministic_algorithms_warn_only_enabled():
                raise RuntimeError(msg)
            warnings.warn(msg, stacklevel=3)
        return k
    reasons = []
    fallback = None
    for bname in ORDER:
        b = _BACKENDS[bname]
        reason = b.not_supported_reason(op, device)
        if reason is None and deterministic and not b.kernels[op].deterministic_backward(device):
            fallback = fallback or b.kernels[op]
            reason = "its backward is not deterministic"
        if reason is None:
            return b.kernels[op]
        reasons.append(f"{bname}: {reason}")
    if fallback is not None and torch.is_deterministic_algorithms_warn_only_enabled():
        warnings.warn(
            f"resizeops.{op}: no backend has a deterministic backward on {device.type}; running a non-deterministic one",
            stacklevel=3,
        )
        return fallback
    raise RuntimeError(f"resizeops.{op}: no backend can run on {device}:\n  " + "\n  ".join(reasons))


def backends(device: Union[str, torch.device, None] = None, op: Optional[str] = None) -> List[BackendInfo]:
    """Each backend, fastest first, with whether it can run here and if not why.

    ``device``: report for tensors on that device (default: CUDA when a GPU is
    visible for the ``cuda``/``triton`` backends, the CPU for the others).
    ``op``: report for one op (default: available if it implements any op).
    """
    if op is not None and op not in OPS:
        raise ValueError(f"backends(op={op!r}): expected one of {OPS}")
    out = []
    for name in ORDER:
        b = _BACKENDS[name]
        if device is not None:
            dev = torch.device(device)
        elif name == "cuda" or (name == "triton" and torch.cuda.is_available()):
            dev = torch.device("cuda")
        else:
            dev = torch.device("cpu")
        ops = tuple(o for o in OPS if o in b.kernels)
        reason = b.device_reason(dev)
        if reason is None:
            wanted = (op,) if op else OPS
            missing = [o for o in wanted if o not in b.kernels]
            if len(missing) == len(wanted):
                reason = f"no {name} kernel for {', '.join(missing)} yet"
        out.append(BackendInfo(name, reason is None, reason or "", ops))
    return out
