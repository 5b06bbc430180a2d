"""Loads the compiled extension ``resizeops._C`` and says whether it is usable.

``load()`` never raises: ``import resizeops`` must work without the extension
(a pure-Python install under pip's build isolation, a machine without a
compiler) and after a torch upgrade that broke it (its C++ ABI is tied to the
exact torch release it was compiled against). In those cases the CPU / CUDA
backends report ``ExtensionStatus.reason`` and the other backends run.

The kernels are ops in ``torch.ops.resizeops_ext``; importing ``resizeops._C``
registers them. ``torch.ops.resizeops_ext.build_info()`` tells what the
library was built against, e.g.
``"torch=2.14.1;cuda=13.0;cuda_kernels=1;cuda_arch=sm_80,compute_80;debug=0"``
(cuda_arch: the GPU targets it holds; :mod:`resizeops.core._cuda_arch`).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import threading
from typing import Dict, List, Optional, Tuple

from . import _cuda_arch

__all__ = ["ExtensionStatus", "load", "describe", "parse_build_info", "REBUILD_HINT"]

MODULE = "resizeops._C"
REBUILD_HINT = (
    "rebuild it against the installed torch: pip install --no-build-isolation -e . "
    "(in the resizeops source tree; `pip install --no-build-isolation .` for a regular install)"
)


@dataclasses.dataclass(frozen=True)
class ExtensionStatus:
    """What ``load()`` found.

    loaded: the extension is imported and was built for the running torch:
        its ops in ``torch.ops.resizeops_ext`` may be called.
    reason: why it is not usable; empty when ``loaded``.
    path: the shared library's file, when it could be imported.
    torch_built: torch release it was compiled against ("2.14.1"), if known.
    cuda_built: CUDA toolkit version of its CUDA kernels ("13.0"); None for a
        CPU-only build (or when unknown).
    has_cuda_kernels: it contains CUDA kernels (a CUDA build).
    cuda_arch: the GPU targets of those kernels (("sm_80", "compute_80"): SASS
        and PTX; :mod:`resizeops.core._cuda_arch` says which GPUs they run on); None
        for a CPU-only build or when not recorded.
    debug: it was built with DEBUG=1.
    build_info: the raw ``build_info()`` string, if it could be read.
    """

    loaded: bool
    reason: str = ""
    path: Optional[str] = None
    torch_built: Optional[str] = None
    cuda_built: Optional[str] = None
    has_cuda_kernels: bool = False
    cuda_arch: Optional[Tuple[str, ...]] = None
    debug: bool = False
    build_info: Optional[str] = None


def parse_build_info(info: str) -> Dict[str, str]:
    """``"torch=2.14.1;cuda=13.0"`` -> ``{"torch": "2.14.1", "cuda": "13.0"}``."""
    fields = {}
    for item in info.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _release(version: str) -> str:
    """major.minor.patch of a torch version: "2.14.1+cu130" -> "2.14.1", "2.7.0.dev2025+cu126" -> "2.7.0"."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    if not m:
        return version
    return f"{m.group(1)}.{m.group(2)}.{m.group(3) or 0}"


def _recorded_targets(text: Optional[str]) -> Optional[Tuple[str, ...]]:
    """build_info's cuda_arch field as targets; None when absent or unreadable (then not checked)."""
    try:
        return _cuda_arch.parse_targets(text)
    except ValueError:
        return None


def _load_uncached() -> ExtensionStatus:
    """Import the extension and check it; never raises. ``load()`` caches this."""
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any failure means "not usable", with its text
        return ExtensionStatus(False, f"torch cannot be imported ({type(e).__name__}: {e})")

    try:
        module = importlib.import_module(MODULE)
    except (ImportError, OSError) as e:
        if isinstance(e, ModuleNotFoundError) and e.name == MODULE:
            what = (
                f"{MODULE} is not installed (resizeops was installed without its compiled "
                "extension, e.g. under pip's build isolation where torch is not importable)"
            )
        else:
            what = f"{MODULE} failed to load ({type(e).__name__}: {e})"
            if "undefined symbol" in str(e):
                what += "; an undefined symbol usually means it was built for another torch release"
        return ExtensionStatus(False, f"{what}; {REBUILD_HINT}")
    except Exception as e:  # noqa: BLE001 - e.g. a failing op registration at load time
        return ExtensionStatus(False, f"{MODULE} failed to load ({type(e).__name__}: {e}); {REBUILD_HINT}")

    path = getattr(module, "__file__", None)
    try:
        info = str(torch.ops.resizeops_ext.build_info())
    except Exception as e:  # noqa: BLE001
        return ExtensionStatus(
            False,
            f"{MODULE} was imported from {path} but torch.ops.resizeops_ext.build_info failed "
            f"({type(e).__name__}: {e}); {REBUILD_HINT}",
            path=path,
        )

    fields = parse_build_info(info)
    torch_built = fields.get("torch")
    cuda = fields.get("cuda")
    cuda_built = None if cuda in (None, "", "none") else cuda
    status = dict(
        path=path,
        torch_built=torch_built,
        cuda_built=cuda_built,
        has_cuda_kernels=fields.get("cuda_kernels") == "1",
        cuda_arch=_recorded_targets(fields.get("cuda_arch")),
        debug=fields.get("debug") == "1",
        build_info=info,
    )
    running = _release(torch.__version__)
    if torch_built is None or _release(torch_built) != running:
        return ExtensionStatus(
            False,
            f"{MODULE} was built for torch {torch_built or '(unknown)'}, running torch {running}; "
            f"{REBUILD_HINT}",
            **status,
        )
    _register_fake_kernels(torch)
    return ExtensionStatus(True, "", **status)


def _register_fake_kernels(torch) -> None:
    """Shape-only kernels of the extension's ops, so torch.compile and opcheck can trace them.
    (``forms``, the kernel forms, never changes a result's shape.)"""

    @torch.library.register_fake("resizeops_ext::query_coords")
    def _(size_hat, out_size, in_size):
        return size_hat.new_empty((2 * out_size, 2))

    if not hasattr(torch.ops.resizeops_ext, "dynopool2d_forward"):
        return
    fmt = {True: torch.channels_last, False: torch.contiguous_format}

    @torch.library.register_fake("resizeops_ext::dynopool2d_forward")
    def _(x, out_h, out_w, channels_last, forms):
        shape = (x.shape[0], x.shape[1], out_h, out_w)
        return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt[channels_last])

    @torch.library.register_fake("resizeops_ext::dynopool2d_backward")
    def _(grad_out, x, out_h, out_w, channels_last, need_x, need_size, forms):
        shape = tuple(x.shape) if need_x else (0,)
        grad_x = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt[channels_last and need_x])
        return grad_x, x.new_empty((2,), dtype=torch.float64)

    if not hasattr(torch.ops.resizeops_ext, "resize_blend_forward"):
        return

    @torch.library.register_fake("resizeops_ext::resize_blend_forward")
    def _(x1, x2, w1, w2, size, align_corners, scale1, scale2, channels_last, forms):
        shape = (x1.shape[0], x1.shape[1], size[0], size[1])
        return torch.empty(shape, dtype=x1.dtype, device=x1.device, memory_format=fmt[channels_last])

    @torch.library.register_fake("resizeops_ext::resize_blend_backward")
    def _(grad_out, x1, x2, w1, w2, size, align_corners, scale1, scale2, nx1, nx2, nw1, nw2, cl1, cl2, forms):
        def gx(x, need, cl):
            shape = tuple(x.shape) if need else (0,)
            return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt[cl and need])

        return gx(x1, nx1, cl1), gx(x2, nx2, cl2), w1.new_empty(()), w2.new_empty(())

    if not hasattr(torch.ops.resizeops_ext, "shape_adaptor_maxpool_forward"):
        return

    @torch.library.register_fake("resizeops_ext::shape_adaptor_maxpool_forward")
    def _(x, w1, w2, size, align_corners, channels_last, forms):
        shape = (x.shape[0], x.shape[1], size[0], size[1])
        return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt[channels_last])

    @torch.library.register_fake("resizeops_ext::shape_adaptor_maxpool_backward")
    def _(grad_out, x, w1, w2, size, align_corners, need_x, need_w1, need_w2, channels_last, forms):
        shape = tuple(x.shape) if need_x else (0,)
        grad_x = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt[channels_last and need_x])
        return grad_x, w1.new_empty(()), w2.new_empty(())


_lock = threading.Lock()
_status: Optional[ExtensionStatus] = None


def load() -> ExtensionStatus:
    """Load ``resizeops._C`` once and return its status (cached; never raises)."""
    global _status
    if _status is None:
        with _lock:
            if _status is None:
                try:
                    _status = _load_uncached()
                except Exception as e:  # noqa: BLE001 - the promise is: never raises
                    _status = ExtensionStatus(False, f"unexpected error ({type(e).__name__}: {e}); {REBUILD_HINT}")
    return _status


def describe() -> List[str]:
    """Lines about the extension for ``python -m resizeops info``."""
    s = load()
    lines = [f"status      : {'loaded' if s.loaded else 'NOT usable'}"]
    if s.reason:
        lines.append(f"reason      : {s.reason}")
    if s.path:
        lines.append(f"library     : {s.path}")
    if s.build_info is not None:
        cuda = f"CUDA {s.cuda_built} kernels" if s.has_cuda_kernels else "CPU kernels only (no CUDA)"
        lines.append(
            f"built for   : torch {s.torch_built or '?'}, {cuda}" + (", DEBUG build" if s.debug else "")
        )
        if s.has_cuda_kernels:
            arch = _cuda_arch.describe_targets(s.cuda_arch) if s.cuda_arch else "not recorded in this build"
            lines.append(f"GPU code    : {arch}")
    try:
        import torch

        lines.append(f"running     : torch {torch.__version__}")
    except Exception:  # noqa: BLE001
        pass
    return lines
