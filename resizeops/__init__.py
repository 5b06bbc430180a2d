"""resizeops: learnable resizing operators for CNNs (DynOPool, Shape Adaptor, ELASTIC).

Public API::

    resizeops.dynopool2d(x, alpha, out_size=None, min_size=2, *, backend=None)
    resizeops.resize_blend(x1, x2, w1, w2, size, align_corners=True, scales=None, *, backend=None)
    resizeops.shape_adaptor_maxpool(x, w1, w2, size, align_corners=True, *, backend=None)
    resizeops.nn.DynOPool2d / ShapeAdaptor / ShapeAdaptorMaxPool2d   # the layers
    resizeops.refresh_shapes(model), resizeops.freeze(model)         # shapes as state (docs/SEMANTICS.md)
    resizeops.shape_report(model, input_size)                       # learned sizes and MACs
    resizeops.convert(model, "dynopool")                            # learnable resizers in a network
    resizeops.convert(model, "shape_adaptor", input_dim=32, mode="standard" | "autosc" | "autotl", layout="keep")
    resizeops.rf.analyze(model, input_size=(224, 224))              # receptive fields, r_min / r_max
    resizeops.shape_adaptor / resizeops.dynopool                    # the training recipes
    resizeops.decompositions()                   # torch.export without resizeops ops (ONNX export needs nothing)
    resizeops.backends(device=None, op=None)     # which backends can run, and why not
    resizeops.use_backend(name)                  # context manager
    resizeops.info()                             # build / backend report (python -m resizeops info)

``import resizeops`` never fails because of the compiled extension: when it is
missing or was built for another torch, the ops run on the other backends and
``python -m resizeops info`` says why.
"""

from __future__ import annotations

__version__ = "0.1.0"

import sys

# The code lives in three sub-packages (docs/DESIGN.md, "Map of the code"): core/ (the ops
# and what runs them), models/ (layers, convert, recipes, shape report) and tools/
# (rf, bench, demo). The order matters: the extension loads first, the backends
# register last.
from .core import _extension  # noqa: F401  (loads the compiled kernels if it can; never raises)
from .core import reference
from .core import _dispatch
from .core._dispatch import backends, use_backend
from .core._validate import MAX_OUTPUT_NUMEL
from .core.ops import dynopool2d, dynopool2d_output_size, resize_blend, shape_adaptor_maxpool
from .core import export, ops
from .models import nn
from .models.nn import freeze, refresh_shapes
from .models.report import shape_report
from .models import report
from .models.convert import convert
from .core.export import decompositions
from .tools import rf
from .models import dynopool, shape_adaptor
from .tools import bench, demo
from .tools.bench import training as _bench_training
from .core import _cpu_backend, _cuda_backend, _triton_backend  # noqa: F401,E402  (register their kernels; never raise)

# The module paths from before the split into core/, models/ and tools/ stay
# importable (`import resizeops.nn`, `from resizeops.convert import ShapeAdaptorCell`,
# `from resizeops.bench import training`): each old name is the new module itself.
for _old, _module in {
    "ops": ops,
    "reference": reference,
    "export": export,
    "nn": nn,
    "convert": sys.modules["resizeops.models.convert"],  # resizeops.convert is the function
    "report": report,
    "dynopool": dynopool,
    "shape_adaptor": shape_adaptor,
    "rf": rf,
    "bench": bench,
    "demo": demo,
}.items():
    sys.modules["resizeops." + _old] = _module
# ...and so are rf's and bench's own modules (else `import resizeops.rf.cli` would load a second copy).
for _new in [name for name in sys.modules if name.startswith(("resizeops.tools.rf.", "resizeops.tools.bench."))]:
    sys.modules["resizeops." + _new[len("resizeops.tools.") :]] = sys.modules[_new]
del _old, _module, _new, _bench_training

__all__ = [
    "dynopool2d",
    "dynopool2d_output_size",
    "resize_blend",
    "shape_adaptor_maxpool",
    "nn",
    "freeze",
    "refresh_shapes",
    "shape_report",
    "convert",
    "decompositions",
    "rf",
    "dynopool",
    "shape_adaptor",
    "backends",
    "use_backend",
    "info",
    "reference",
    "MAX_OUTPUT_NUMEL",
    "__version__",
]

_extension.load()


def info() -> str:
    """A printable report: versions, the compiled extension's state, and every backend."""
    import platform

    import torch

    lines = [
        f"resizeops {__version__}",
        f"python {platform.python_version()}  torch {torch.__version__}  "
        f"(CUDA build: {torch.version.cuda or 'no'})  CUDA devices: {torch.cuda.device_count()}",
    ]
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        major, minor = torch.cuda.get_device_capability(i)
        lines.append(f"GPU {i}: {torch.cuda.get_device_name(i)} (compute capability {major}.{minor})")
    try:
        import triton

        lines.append(f"triton {triton.__version__}")
    except Exception as e:  # noqa: BLE001 - report whatever broke the import
        lines.append(f"triton not importable: {type(e).__name__}: {e}")
    lines.append("")
    lines.append("compiled extension:")
    lines += ["  " + s for s in _extension.describe()]
    lines.append("")
    lines.append("backends on this machine (any op, the device each one targets):")
    lines += ["  " + str(b) for b in backends()]
    lines.append("")
    for dev in (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]):
        lines.append(f"backends for {dev} tensors (fastest first; the first available one is the default):")
        for op in _dispatch.OPS:
            lines.append(f"  {op}:")
            for b in backends(dev, op=op):
                state = "available" if b.available else f"unavailable: {b.reason}"
                lines.append(f"    {b.name:<10} {state}")
    return "\n".join(lines)
