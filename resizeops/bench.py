"""Benchmarks of the resizeops ops: ``python -m resizeops bench [options]``.

Every provider of an op runs the same named :class:`Case` side by side:

* each backend of :func:`resizeops.backends` that is available for the device
  (the public op called with ``backend=name``; on the CPU the Triton
  interpreter is only run when named in ``--backends``: it is a debugging aid,
  thousands of times slower than anything else);
* ``eager-reference``: :mod:`resizeops.reference` called directly (plain
  PyTorch, the baseline of every ratio);
* ``compiled-reference``: ``torch.compile(reference fn, dynamic=False)``,
  compiled once per case, dtype and layout (``--no-compile`` skips it). Its
  compile time is excluded from the timings and reported as ``first_ms``;
* for the fused Shape Adaptor cell (``shape_adaptor_maxpool``) also
  ``maxpool+blend``: ``F.max_pool2d(x, 2)`` followed by the fused
  ``resize_blend`` on the default backend, the unfused alternative the fused
  cell must beat;
* ``cuda-lanes``, ``cuda-fused``, ``cuda-fused-lanes``, ``cuda-rows``,
  ``cuda-separable``, ``cuda-fused-separable``, ``triton-rows``, ``triton-w8`` and
  ``triton-rows-w8`` (``dynopool2d``
  only, and only when named in ``--backends``): the ``cuda`` backend with
  ``RESIZEOPS_CUDA_LANES=4`` (4 channels per thread), ``RESIZEOPS_CUDA_GRAD_X=fused``
  (the backward in one kernel), both (in channels_last the lanes form's forward and
  the fused backward finding its winners 4 channels per thread),
  ``RESIZEOPS_CUDA_FORWARD=rows`` (4 cells of a row per thread in the forward),
  ``RESIZEOPS_CUDA_FORWARD=separable`` (the forward per tile of cells, its vertical
  interpolations shared) or all of the separable forward, the fused backward and its
  separable winners (``RESIZEOPS_CUDA_FUSED_WINNERS=separable``); in channels_last
  the forwards fall back to the default and the fused backward takes blocks of 8
  channels with its winners by cells; and
  the ``triton`` backend
  with ``RESIZEOPS_TRITON_FORWARD=rows`` (the NCHW forward in 2-D tiles),
  ``RESIZEOPS_TRITON_WARPS=8`` (the forward with 8 warps per program) or both, the opt-in
  forms of docs/DESIGN.md, with the variable set around the forward and the backward.

Modes: ``fwd`` (inference: no autograd, inputs without grad) and ``fwd+bwd``
(x, x1, x2, alpha and the Shape Adaptor weights require grad; the backward of
a fixed random ``grad_out``).

Timing: on CUDA ``triton.testing.do_bench`` (p20/p50/p80) when triton imports,
else CUDA events; on the CPU ``time.perf_counter`` after one warm-up call, the
median of ``--repeats`` calls (default: up to 10 within ~0.5 s, at least 3).
``--quick`` is one timed call after one warm-up, for smoke tests.

Columns: ``ratio`` = eager-reference time / provider time (>1 is faster than
eager); ``frac_bw`` = ideal bytes / time / copy bandwidth, the copy bandwidth
measured in the same run with one large ``Tensor.copy_`` (ideal bytes: read
every input and write every output once, see :meth:`Case.ideal_bytes`);
``peak_MiB`` = ``torch.cuda.max_memory_allocated`` above the live inputs during
one call (CUDA only); ``extra_MiB`` = that peak less the bytes of the call's own
results (its output and, in ``fwd+bwd``, the inputs' gradients): the memory an
implementation needs beyond what it must return, the "peak extra memory" of
issue 3's target (CUDA only); ``max_err`` = max |provider − eager-reference| of the
forward output.

Results are appended to ``<out>/bench-<device>.csv`` (with timestamp, device
name, torch and resizeops versions) and plotted to ``<out>/bench-<device>.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import math
import os
import platform
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

__all__ = [
    "Case",
    "CASES",
    "MODES",
    "EAGER",
    "COMPILED",
    "POOL_THEN_BLEND",
    "DeployCase",
    "DEPLOY_CASES",
    "DEPLOY_PROVIDERS",
    "cases_for",
    "providers_for",
    "compiled_reference",
    "main",
]

MODES = ("fwd", "fwd+bwd")
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
OPS = ("dynopool2d", "resize_blend", "shape_adaptor_maxpool")
TIERS = ("cpu", "gpu")

Shape = Tuple[int, int, int, int]
Scale = Optional[Tuple[float, float]]

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,
    "fp64": torch.float64,
    "double": torch.float64,
}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _fmt_shape(shape: Sequence[int]) -> str:
    return "×".join(str(int(s)) for s in shape)


# =============================================================================
# Cases
# =============================================================================


@dataclass(frozen=True)
class Case:
    """One benchmark configuration of one op, shared by the CLI and ``benchmarks/``.

    dynopool2d: ``shape`` is x's (N, C, H, W), ``ratio`` = (r_h, r_w), so
    alpha = (1/r_h, 1/r_w); the output size is the op's own
    ``max(rnd(H/α_h), 2)`` and is passed as ``out_size`` (the cached size).

    resize_blend: ``shape`` / ``shape2`` are x1 / x2, ``size`` the output,
    ``align_corners`` and ``scales`` as in the op. With ``sigma`` set (Shape
    Adaptor) the weights are 0-d float32 tensors w1 = k(1−σ), w2 = kσ that
    require grad in fwd+bwd; otherwise they are the Python floats ``weights``
    (ELASTIC's w1 = w2 = 1).

    shape_adaptor_maxpool: ``shape`` is x, ``size`` the output, weights as above
    (the pooled branch is max_pool2d(x, 2), the full-resolution branch x).
    """

    name: str
    op: str
    tier: str
    shape: Shape
    description: str = ""
    ratio: Optional[Tuple[float, float]] = None
    shape2: Optional[Shape] = None
    size: Optional[Tuple[int, int]] = None
    align_corners: bool = True
    scales: Optional[Tuple[Scale, Scale]] = None
    sigma: Optional[float] = None
    k: float = 2.0
    weights: Tuple[float, float] = (1.0, 1.0)

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"Case {self.name!r}: op must be one of {OPS}, got {self.op!r}")
        if self.tier not in TIERS:
            raise ValueError(f"Case {self.name!r}: tier must be one of {TIERS}, got {self.tier!r}")
        if self.op == "dynopool2d" and self.ratio is None:
            raise ValueError(f"Case {self.name!r}: dynopool2d needs ratio=(r_h, r_w)")
        if self.op == "resize_blend" and (self.shape2 is None or self.size is None):
            raise ValueError(f"Case {self.name!r}: resize_blend needs shape2 and size")
        if self.op == "shape_adaptor_maxpool" and self.size is None:
            raise ValueError(f"Case {self.name!r}: shape_adaptor_maxpool needs size")

    # --- derived sizes ----------------------------------------------------------

    @property
    def alpha(self) -> Tuple[float, float]:
        """(α_h, α_w) = (1/r_h, 1/r_w) of a dynopool2d case."""
        assert self.ratio is not None
        return (1.0 / self.ratio[0], 1.0 / self.ratio[1])

    @property
    def out_size(self) -> Tuple[int, int]:
        """(Ho, Wo) of the op's output."""
        if self.op == "dynopool2d":
            from .ops import dynopool2d_output_size  # SPEC §2.1: max(rnd(H/α), 2)

            return tuple(dynopool2d_output_size(self.shape[2:], self.alpha))
        assert self.size is not None
        return (int(self.size[0]), int(self.size[1]))

    @property
    def out_shape(self) -> Shape:
        return (self.shape[0], self.shape[1], *self.out_size)

    def summary(self) -> str:
        """Shapes and parameters in one line, e.g. ``x 8×32×64×64 r=(0.5, 0.625) → 32×40``."""
        out = _fmt_shape(self.out_size)
        if self.op == "dynopool2d":
            return f"x {_fmt_shape(self.shape)} r={self.ratio} → {out}"
        if self.op == "shape_adaptor_maxpool":
            return f"x {_fmt_shape(self.shape)} (+ its 2×2 max-pool) → {out} ac={self.align_corners}"
        s = f"x1 {_fmt_shape(self.shape)} + x2 {_fmt_shape(self.shape2)} → {out} ac={self.align_corners}"
        if self.scales is not None:
            s += f" scales={self.scales}"
        return s

    # --- inputs and one call ----------------------------------------------------

    def make_inputs(
        self,
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
        requires_grad: bool = False,
        channels_last: bool = False,
        seed: int = 0,
    ) -> Dict[str, Any]:
        """The op's arguments as a dict (see :meth:`run`), deterministic for a seed.

        Feature maps are standard normal in ``dtype`` (channels_last when asked);
        ``alpha`` and the Shape Adaptor weights are float32 (parameters stay in
        float32 under mixed precision). With ``requires_grad`` those leaves require
        grad and ``grad_out`` holds a fixed random output gradient.
        """
        device = torch.device(device)
        # Generated on the device itself (the GPU cases hold up to 0.8 GB per input).
        gen = torch.Generator(device=device).manual_seed(seed)
        fmt = torch.channels_last if channels_last else torch.contiguous_format

        def feature(shape):
            t = torch.randn(shape, generator=gen, dtype=torch.float32, device=device).to(dtype)
            return t.contiguous(memory_format=fmt).requires_grad_(requires_grad)

        def scalar(v):
            return torch.tensor(float(v), dtype=torch.float32, device=device).requires_grad_(requires_grad)

        if self.op == "dynopool2d":
            inputs: Dict[str, Any] = {
                "x": feature(self.shape),
                "alpha": torch.tensor(self.alpha, dtype=torch.float32, device=device).requires_grad_(requires_grad),
                "out_size": self.out_size,
            }
        else:
            if self.sigma is not None:
                w1, w2 = scalar(self.k * (1.0 - self.sigma)), scalar(self.k * self.sigma)
            else:
                w1, w2 = float(self.weights[0]), float(self.weights[1])
        if self.op == "shape_adaptor_maxpool":
            inputs = {"x": feature(self.shape), "w1": w1, "w2": w2, "size": self.out_size,
                      "align_corners": self.align_corners}  # fmt: skip
        elif self.op == "resize_blend":
            inputs = {
                "x1": feature(self.shape),
                "x2": feature(self.shape2),
                "w1": w1,
                "w2": w2,
                "size": self.out_size,
                "align_corners": self.align_corners,
                "scales": self.scales,
            }
        if requires_grad:
            g = torch.randn(self.out_shape, generator=gen, dtype=torch.float32, device=device)
            inputs["grad_out"] = g.to(dtype).contiguous(memory_format=fmt)
        return inputs

    def run(self, inputs: Dict[str, Any], provider: Union[str, Callable] = EAGER) -> torch.Tensor:
        """The op's forward on ``inputs`` by ``provider``.

        ``provider``: a backend name (the public op with ``backend=name``),
        ``"eager-reference"``, ``"compiled-reference"``, ``"maxpool+blend"``
        (shape_adaptor_maxpool only), or a callable with the signature of the
        reference function.
        """
        import resizeops
        from resizeops import reference

        if self.op == "dynopool2d":
            args: tuple = (inputs["x"], inputs["alpha"], inputs["out_size"])
            public, ref = resizeops.dynopool2d, reference.dynopool2d
        elif self.op == "shape_adaptor_maxpool":
            args = tuple(inputs[k] for k in ("x", "w1", "w2", "size", "align_corners"))
            public, ref = resizeops.shape_adaptor_maxpool, reference.shape_adaptor_maxpool
            if provider == POOL_THEN_BLEND:
                x, w1, w2, size, ac = args
                return resizeops.resize_blend(torch.nn.functional.max_pool2d(x, 2), x, w1, w2, size, ac)
        else:
            args = tuple(inputs[k] for k in ("x1", "x2", "w1", "w2", "size", "align_corners", "scales"))
            public, ref = resizeops.resize_blend, reference.resize_blend
        if callable(provider):
            return provider(*args)
        if provider == EAGER:
            return ref(*args)
        if provider == COMPILED:
            return compiled_reference(self.op)(*args)
        if provider in VARIANTS:  # _measure sets its environment around the whole call
            return public(*args, backend=VARIANTS[provider][0])
        return public(*args, backend=provider)

    def grad_leaves(self, inputs: Dict[str, Any]) -> List[torch.Tensor]:
        """The tensors of ``inputs`` that require grad (their ``.grad`` is reset between calls)."""
        return [v for k, v in inputs.items() if isinstance(v, torch.Tensor) and v.requires_grad]

    def ideal_bytes(self, dtype: torch.dtype, mode: str) -> int:
        """Bytes a perfect fused kernel moves: each input read once, each output written once.

        dynopool2d fwd: |x| + |out|; fwd+bwd adds |grad_out| + |x| + |grad_x|.
        resize_blend fwd: |x1| + |x2| + |out|; fwd+bwd adds |grad_out| + |grad_x1| +
        |grad_x2|, and |x_k| again where w_k requires grad (dL/dw_k = Σ g·R(x_k)).
        shape_adaptor_maxpool fwd: |x| + |out| (the pooled branch never exists);
        fwd+bwd adds |grad_out| + |grad_x| + |x| (the backward's 2×2 winners and,
        with tensor weights, dL/dw).
        The parameters (alpha, w) are a few bytes and not counted.
        """
        e = torch.empty((), dtype=dtype).element_size()
        numel = math.prod
        out = numel(self.out_shape)
        if self.op == "dynopool2d":
            x = numel(self.shape)
            n = x + out
            if mode == "fwd+bwd":
                n += out + x + x
        elif self.op == "shape_adaptor_maxpool":
            x = numel(self.shape)
            n = x + out
            if mode == "fwd+bwd":
                n += out + x + x
        else:
            x1, x2 = numel(self.shape), numel(self.shape2)
            n = x1 + x2 + out
            if mode == "fwd+bwd":
                n += out + x1 + x2
                if self.sigma is not None:  # tensor weights: their gradient reads x1 and x2 again
                    n += x1 + x2
        return n * e


# The issues' cases (GPU tier) and CPU-sized versions of them (CPU tier).
_SA_SIGMA = 0.6  # Shape Adaptor σ; residual cells use k = 2: w1 = 2(1−σ), w2 = 2σ

CASES: Dict[str, Case] = {
    c.name: c
    for c in (
        # --- GPU tier ----------------------------------------------------------------
        Case("dynopool-cifar", "dynopool2d", "gpu", (128, 64, 32, 32), "DynOPool, CIFAR VGG layer", ratio=(0.5, 0.625)),
        Case("dynopool-imagenet", "dynopool2d", "gpu", (64, 64, 224, 224), "DynOPool, ImageNet first pool", ratio=(0.5, 0.625)),
        Case("dynopool-resnet", "dynopool2d", "gpu", (64, 256, 56, 56), "DynOPool, ResNet-50 stage 1", ratio=(0.5, 0.625)),
        Case(
            "blend-sa-cifar-vgg", "resize_blend", "gpu", (128, 64, 16, 16), "Shape Adaptor, CIFAR VGG (s=0.75)",
            shape2=(128, 64, 32, 32), size=(24, 24), align_corners=True, sigma=_SA_SIGMA,
        ),
        Case(
            "blend-sa-imagenet-vgg", "resize_blend", "gpu", (64, 64, 112, 112), "Shape Adaptor, ImageNet VGG (s=0.75)",
            shape2=(64, 64, 224, 224), size=(168, 168), align_corners=True, sigma=_SA_SIGMA,
        ),
        Case(
            "blend-sa-resnet50", "resize_blend", "gpu", (64, 256, 28, 28), "Shape Adaptor, ResNet-50 stage (s=0.75)",
            shape2=(64, 256, 56, 56), size=(42, 42), align_corners=True, sigma=_SA_SIGMA,
        ),
        Case(
            "blend-elastic", "resize_blend", "gpu", (64, 128, 28, 28), "ELASTIC merge (×2 up-sample + crop + sum)",
            shape2=(64, 128, 56, 56), size=(56, 56), align_corners=False, scales=((2.0, 2.0), None),
        ),
        Case(
            "sa-cell-cifar-vgg", "shape_adaptor_maxpool", "gpu", (128, 64, 32, 32),
            "Shape Adaptor fused max-pool cell, CIFAR VGG (s=0.75)", size=(24, 24), sigma=_SA_SIGMA, k=1.0,
        ),
        Case(
            "sa-cell-imagenet-vgg", "shape_adaptor_maxpool", "gpu", (64, 64, 224, 224),
            "Shape Adaptor fused max-pool cell, ImageNet VGG (s=0.75)", size=(168, 168), sigma=_SA_SIGMA, k=1.0,
        ),
        # --- CPU tier ----------------------------------------------------------------
        Case("dynopool-small", "dynopool2d", "cpu", (8, 32, 64, 64), "DynOPool, CPU-sized", ratio=(0.5, 0.625)),
        Case(
            "blend-sa-small", "resize_blend", "cpu", (8, 32, 32, 32), "Shape Adaptor, CPU-sized (s=0.75)",
            shape2=(8, 32, 64, 64), size=(48, 48), align_corners=True, sigma=_SA_SIGMA,
        ),
        Case(
            "blend-elastic-small", "resize_blend", "cpu", (8, 32, 16, 16), "ELASTIC merge, CPU-sized",
            shape2=(8, 32, 32, 32), size=(32, 32), align_corners=False, scales=((2.0, 2.0), None),
        ),
        Case(
            "sa-cell-small", "shape_adaptor_maxpool", "cpu", (8, 32, 64, 64),
            "Shape Adaptor fused max-pool cell, CPU-sized (s=0.75)", size=(48, 48), sigma=_SA_SIGMA, k=1.0,
        ),
    )
}


def cases_for(spec: Optional[str], device: Union[str, torch.device] = "cpu") -> List[Case]:
    """Cases named by ``spec``: a comma list of case names and/or tiers ("cpu", "gpu"), or "all".

    ``None`` / empty: the tier of the device (GPU tier on CUDA, CPU tier otherwise).
    """
    if not spec:
        tier = "gpu" if torch.device(device).type == "cuda" else "cpu"
        return [c for c in CASES.values() if c.tier == tier]
    out: List[Case] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item == "all":
            picked = list(CASES.values())
        elif item in TIERS:
            picked = [c for c in CASES.values() if c.tier == item]
        elif item in CASES:
            picked = [CASES[item]]
        else:
            raise ValueError(f"unknown case {item!r}; expected 'all', a tier ({', '.join(TIERS)}) or one of: {', '.join(CASES)}")
        out += [c for c in picked if c not in out]
    return out


# =============================================================================
# Deployment: a frozen model in PyTorch against its ONNX export in ONNX Runtime
# =============================================================================

#: Providers of a deployment case: the frozen model in PyTorch eager (the ops' fused
#: kernels), its ATen-only torch.export program (``resizeops.decompositions()``) and its
#: ``torch.onnx.export`` in ONNX Runtime's CPU provider.
DEPLOY_EAGER = "pytorch-eager"
DEPLOY_PROVIDERS = (DEPLOY_EAGER, "pytorch-aten", "onnxruntime")


@dataclass(frozen=True)
class DeployCase:
    """A frozen model and its input: inference latency of one forward per provider.

    The model is torchvision's ``vgg11`` features with a CIFAR head (global average
    pool, one linear layer), converted with ``convert(..., "dynopool")``; ``ratios``
    are its five DynOPool2d's learned r (α = 1/r), set before :func:`resizeops.freeze`
    in place of training.
    """

    name: str
    description: str
    batch: int
    size: int
    ratios: Tuple[float, ...]

    def build(self, seed: int = 0) -> Tuple[torch.nn.Module, torch.Tensor]:
        """(frozen model in eval mode, input of ``batch`` × 3 × ``size`` × ``size``)."""
        import torchvision

        import resizeops

        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        model = torchvision.models.vgg11(num_classes=10)
        model.avgpool, model.classifier = torch.nn.AdaptiveAvgPool2d(1), torch.nn.Linear(512, 10)
        model = resizeops.convert(model, "dynopool").eval()
        layers = resizeops.nn.resizers(model)
        if len(layers) != len(self.ratios):
            raise ValueError(f"{self.name}: {len(layers)} DynOPool2d layers, {len(self.ratios)} ratios")
        with torch.no_grad():
            for layer, r in zip(layers, self.ratios):
                layer.alpha.fill_(1.0 / r)
        return resizeops.freeze(model), torch.randn(self.batch, 3, self.size, self.size, generator=gen)

    def summary(self) -> str:
        return f"x {self.batch}×3×{self.size}×{self.size}, DynOPool r = {self.ratios}"

    def runner(self, provider: str, model: torch.nn.Module, x: torch.Tensor, workdir: str) -> Callable[[], torch.Tensor]:
        """A function running one forward of ``model`` on ``x`` by ``provider`` (exports first if needed).

        ONNX Runtime gets ``torch.get_num_threads()`` intra-op threads, as many as PyTorch uses.
        """
        import resizeops

        if provider == DEPLOY_EAGER:
            def run():
                with torch.no_grad():
                    return model(x)
            return run
        if provider == "pytorch-aten":
            aten = torch.export.export(model, (x,)).run_decompositions(resizeops.decompositions()).module()

            def run():
                with torch.no_grad():
                    return aten(x)
            return run
        if provider == "onnxruntime":
            import onnxruntime

            path = os.path.join(workdir, f"{self.name}.onnx")
            torch.onnx.export(model, (x,), path, verbose=False)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            feed = {session.get_inputs()[0].name: x.numpy()}
            return lambda: torch.from_numpy(session.run(None, feed)[0])
        raise ValueError(f"unknown deployment provider {provider!r}; expected one of {', '.join(DEPLOY_PROVIDERS)}")


DEPLOY_CASES: Dict[str, DeployCase] = {
    c.name: c
    for c in (
        DeployCase(
            "deploy-dynopool-vgg11", "DynOPool-VGG11, CIFAR-sized, learned r ≠ ½", batch=64, size=32,
            ratios=(0.6, 0.55, 0.6, 0.65, 0.6),
        ),
    )
}


# =============================================================================
# Providers
# =============================================================================

_COMPILED: Dict[str, Callable] = {}


def compiled_reference(op: str) -> Callable:
    """``torch.compile(resizeops.reference.<op>, dynamic=False)``, created once per op.

    Call :func:`reset_compiled` between cases so that each case compiles afresh
    (and dynamo's recompile limit is never reached, which would silently fall
    back to eager).
    """
    if op not in _COMPILED:
        from resizeops import reference

        _COMPILED[op] = torch.compile(getattr(reference, op), dynamic=False)
    return _COMPILED[op]


def reset_compiled() -> None:
    _COMPILED.clear()
    torch._dynamo.reset()


def providers_for(
    case: Case,
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


# =============================================================================
# Timing
# =============================================================================


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _quantiles(samples_ms: List[float]) -> Tuple[float, float, float]:
    """(p50, p20, p80) of the samples (linear interpolation)."""
    s = sorted(samples_ms)
    if len(s) == 1:
        return s[0], s[0], s[0]

    def q(p):
        pos = p * (len(s) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    return statistics.median(s), q(0.2), q(0.8)


def _time_host(fn: Callable, device: torch.device, repeats: Optional[int], budget_s: float = 0.5) -> Tuple[Tuple[float, float, float], int]:
    """perf_counter timing (synchronising CUDA around each call). Returns ((p50, p20, p80) ms, n).

    ``repeats`` None: up to 10 calls, stopping after ``budget_s`` once 3 are done.
    """
    samples: List[float] = []
    n_max = repeats if repeats else 10
    start = time.perf_counter()
    while len(samples) < n_max:
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - t0) * 1e3)
        if repeats is None and len(samples) >= 3 and time.perf_counter() - start > budget_s:
            break
    return _quantiles(samples), len(samples)


def _time_cuda_events(fn: Callable, repeats: int) -> Tuple[Tuple[float, float, float], int]:
    samples = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        samples.append(a.elapsed_time(b))
    return _quantiles(samples), len(samples)


def _time(fn: Callable, device: torch.device, repeats: Optional[int], grad_to_none: Sequence[torch.Tensor]):
    """((p50, p20, p80) ms, number of samples or -1 for do_bench's own count)."""
    if device.type == "cuda":
        if repeats is None:
            try:
                from triton.testing import do_bench
            except Exception:  # noqa: BLE001 - no usable triton: CUDA events instead
                do_bench = None
            if do_bench is not None:
                p50, p20, p80 = do_bench(fn, quantiles=[0.5, 0.2, 0.8], grad_to_none=list(grad_to_none))
                return (p50, p20, p80), -1
            repeats = 100
        return _time_cuda_events(fn, repeats)
    return _time_host(fn, device, repeats)


def copy_bandwidth(device: torch.device, quick: bool = False) -> float:
    """Bytes/s of ``dst.copy_(src)`` (read + write) for a buffer far larger than the caches."""
    nbytes = (256 << 20) if device.type == "cuda" else (8 << 20 if quick else 64 << 20)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up, page faults
    (p50, _, _), _ = _time(lambda: dst.copy_(src), device, 1 if quick else (None if device.type == "cuda" else 5), ())
    return 2 * nbytes / (p50 * 1e-3)


def _result_bytes(result: Any, leaves: Sequence[torch.Tensor]) -> int:
    """Bytes of what one call leaves to its caller: the tensors it returns and the leaves' ``.grad``.

    Each storage counts once (an output and a view of it are one allocation).
    """
    seen: Dict[Tuple[str, int], int] = {}

    def add(t: Any) -> None:
        if isinstance(t, torch.Tensor):
            st = t.untyped_storage()
            seen[(str(t.device), st.data_ptr())] = st.nbytes()
        elif isinstance(t, (tuple, list)):
            for u in t:
                add(u)

    add(result)
    for t in leaves:
        add(t.grad)
    return sum(seen.values())


def _peak_mib(
    fn: Callable, device: torch.device, leaves: Sequence[torch.Tensor]
) -> Tuple[Optional[float], Optional[float]]:
    """Peak CUDA memory of one call above what was allocated before it, and that peak less the call's
    results (:func:`_result_bytes`: its outputs and gradients), in MiB; (None, None) off CUDA."""
    if device.type != "cuda":
        return None, None
    for t in leaves:
        t.grad = None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    result = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    kept = _result_bytes(result, leaves)
    del result
    for t in leaves:
        t.grad = None
    return peak / 2**20, max(peak - kept, 0) / 2**20


# =============================================================================
# Results
# =============================================================================

CSV_FIELDS = [
    "timestamp", "device", "device_name", "torch", "resizeops", "case", "op", "shapes", "dtype", "layout",
    "mode", "provider", "ms_p50", "ms_p20", "ms_p80", "samples", "first_ms", "ratio_vs_eager",
    "ideal_bytes", "copy_gbps", "frac_copy_bw", "peak_mib", "extra_mib", "max_err",
    "error",
]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    proc = platform.processor() or platform.machine()
    return f"{proc} ({os.cpu_count()} CPUs, {torch.get_num_threads()} threads)"


def _resizeops_version() -> str:
    try:
        import resizeops

        return getattr(resizeops, "__version__", "")
    except Exception:  # noqa: BLE001
        return ""


def _fill_ratios(rows: List[Dict[str, Any]]) -> None:
    eager = {
        (r["case"], r["dtype"], r["layout"], r["mode"]): r["ms_p50"]
        for r in rows
        if r["provider"] == EAGER and r["ms_p50"] is not None
    }
    for r in rows:
        base = eager.get((r["case"], r["dtype"], r["layout"], r["mode"]))
        r["ratio_vs_eager"] = base / r["ms_p50"] if base and r["ms_p50"] else None


def _fmt(v, spec: str) -> str:
    return "" if v is None else format(v, spec)


def format_table(rows: List[Dict[str, Any]], bw_label: str = "frac_bw") -> str:
    """The results as an aligned text table."""
    head = ["case", "dtype", "layout", "mode", "provider", "ms(p50)", "ratio", bw_label, "peak_MiB", "extra_MiB",
            "max_err"]
    body = []
    for r in rows:
        if r["error"]:
            body.append([r["case"], r["dtype"], r["layout"], r["mode"], r["provider"], "error", "", "", "", "",
                         r["error"][:60]])
            continue
        body.append([
            r["case"], r["dtype"], r["layout"], r["mode"], r["provider"],
            _fmt(r["ms_p50"], ".3f"), _fmt(r["ratio_vs_eager"], ".2f"), _fmt(r["frac_copy_bw"], ".2f"),
            "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.1f}",
            "n/a" if r.get("extra_mib") is None else f"{r['extra_mib']:.1f}", _fmt(r["max_err"], ".1e"),
        ])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    numeric = {5, 6, 7, 8, 9, 10}
    lines = []
    for i, line in enumerate([head] + body):
        cells = [str(c).rjust(w) if j in numeric and i > 0 else str(c).ljust(w) for j, (c, w) in enumerate(zip(line, widths))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_csv(path: str, rows: List[Dict[str, Any]]) -> None:
    """Append ``rows`` to ``path``, writing the header when the file is new.

    A file written with other columns (an older resizeops) is first renamed to ``<name>.<n>.csv``, kept
    whole, so that no row lands under another column's header.
    """
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    if not new:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        if header != CSV_FIELDS:
            stem, n = os.path.splitext(path)[0], 1
            while os.path.exists(f"{stem}.{n}.csv"):
                n += 1
            os.replace(path, f"{stem}.{n}.csv")
            print(f"bench: {path} had other columns; kept as {stem}.{n}.csv", file=sys.stderr)
            new = True
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})


def write_plot(path: str, rows: List[Dict[str, Any]], title: str) -> None:
    """Grouped bars: speed-up over eager-reference per case/mode (one bar per provider)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["ratio_vs_eager"] is not None]
    multi = len({(r["dtype"], r["layout"]) for r in ok}) > 1
    groups: List[tuple] = []
    for r in ok:
        g = (r["case"], r["mode"], r["dtype"], r["layout"])
        if g not in groups:
            groups.append(g)
    providers: List[str] = []
    for r in ok:
        if r["provider"] not in providers:
            providers.append(r["provider"])
    value = {((r["case"], r["mode"], r["dtype"], r["layout"]), r["provider"]): r["ratio_vs_eager"] for r in ok}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2), 4.5))
    width = 0.8 / max(1, len(providers))
    for i, p in enumerate(providers):
        xs = [j + (i - (len(providers) - 1) / 2) * width for j in range(len(groups))]
        ys = [value.get((g, p), 0.0) for g in groups]
        ax.bar(xs, ys, width, label=p)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    labels = [f"{c}\n{m}" + (f"\n{d} {l}" if multi else "") for c, m, d, l in groups]
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
    ax.set_ylabel("speed-up vs eager-reference (>1 faster)")
    ax.set_title(title, fontsize=9)
    if providers:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# =============================================================================
# Running
# =============================================================================


def _parse_dtypes(spec: Optional[str], device: torch.device) -> List[torch.dtype]:
    if not spec:
        return [torch.float32, torch.bfloat16] if device.type == "cuda" else [torch.float32]
    out = []
    for s in spec.split(","):
        s = s.strip().lower().replace("torch.", "")
        if s not in _DTYPES:
            raise ValueError(f"--dtype: unknown dtype {s!r}; expected float32, float16, bfloat16 or float64")
        if _DTYPES[s] not in out:
            out.append(_DTYPES[s])
    return out


def _split(spec: Optional[str]) -> Optional[List[str]]:
    return None if spec is None else [s.strip() for s in spec.split(",") if s.strip()]


def _variant_env(provider: str):
    """The environment of a VARIANTS provider (restored afterwards); nothing for the others."""
    return env_settings(VARIANTS.get(provider, (None, {}))[1])


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


def _measure(case: Case, provider: str, mode: str, inputs: Dict[str, Any], device: torch.device, repeats, quick):
    """One (provider, mode) measurement: (quantiles, samples, first call ms, peak MiB, fwd output)."""
    with _variant_env(provider):
        return _measure_in_env(case, provider, mode, inputs, device, repeats, quick)


def _measure_in_env(case: Case, provider: str, mode: str, inputs: Dict[str, Any], device: torch.device, repeats, quick):
    leaves = case.grad_leaves(inputs)
    if mode == "fwd":
        def fn():
            with torch.no_grad():
                return case.run(inputs, provider)
    else:
        grad_out = inputs["grad_out"]

        def fn():
            for t in leaves:
                t.grad = None
            out = case.run(inputs, provider)
            out.backward(grad_out)
            return out

    _sync(device)
    t0 = time.perf_counter()
    out = fn()  # warm-up: compiles the compiled provider, autotunes, faults pages in
    _sync(device)
    first_ms = (time.perf_counter() - t0) * 1e3
    if mode != "fwd":
        out = None  # only the forward's output is compared; this one would stay allocated while timing
    if not quick and device.type != "cuda":
        fn()  # a second warm-up: the first call after compiling still pays one-off costs
    q, n = _time(fn, device, 1 if quick else repeats, leaves)
    peak, extra = _peak_mib(fn, device, leaves)
    for t in leaves:
        t.grad = None
    return q, n, first_ms, (peak, extra), out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m resizeops bench",
        description="Benchmark resizeops ops: every available backend vs the eager and compiled PyTorch reference.",
        epilog="Cases: " + ", ".join(f"{c.name} [{c.tier}]" for c in CASES.values()),
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    p.add_argument("--dtype", default=None, help="comma list, e.g. float32,bfloat16 (default: float32 on cpu, float32,bfloat16 on cuda)")
    p.add_argument("--cases", default=None, help="comma list of case names or tiers (cpu, gpu), or 'all' (default: the device's tier)")
    p.add_argument("--modes", default=",".join(MODES), help="comma list of fwd, fwd+bwd (default: both)")
    p.add_argument(
        "--backends", default=None,
        help=f"comma list of providers to run: backend names (cuda, triton, cpu, reference), {EAGER}, {COMPILED}, "
        "cuda-lanes, cuda-fused, cuda-fused-lanes, cuda-rows, cuda-separable, cuda-fused-separable, triton-rows, "
        "triton-w8, triton-rows-w8 (dynopool2d: opt-in "
        "forms of the cuda and triton backends) "
        "(default: every available backend + both references; the Triton interpreter on the CPU and the opt-in forms "
        "only when named)",
    )
    p.add_argument("--channels-last", action="store_true", help="feature maps in channels_last memory format")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (default: do_bench on CUDA; up to 10 / ~0.5 s on the CPU)")
    p.add_argument("--no-compile", action="store_true", help=f"skip {COMPILED} (torch.compile)")
    p.add_argument("--out", default="results", help="results folder (default: results/)")
    p.add_argument("--quick", action="store_true", help="one warm-up and one timed call per measurement (smoke test)")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m resizeops bench``: run, print a table, append to the CSV, plot. 0 on success."""
    args = build_parser().parse_args(None if argv is None else [str(a) for a in argv])
    if args.list:
        for c in CASES.values():
            print(f"{c.name:<24} [{c.tier}] {c.op:<13} {c.summary()}  ({c.description})")
        return 0
    try:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is visible")
        dtypes = _parse_dtypes(args.dtype, device)
        cases = cases_for(args.cases, device)
        modes = _split(args.modes) or list(MODES)
        for m in modes:
            if m not in MODES:
                raise ValueError(f"--modes: unknown mode {m!r}; expected {', '.join(MODES)}")
        if args.repeats is not None and args.repeats < 1:
            raise ValueError("--repeats must be >= 1")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    wanted = _split(args.backends)
    layout = "NHWC" if args.channels_last else "NCHW"

    notes: List[str] = []
    plan = []
    for case in cases:
        provs = providers_for(case, device, wanted, compile=not args.no_compile, notes=notes,
                              channels_last=args.channels_last)
        plan.append((case, provs))
    for n in dict.fromkeys(notes):
        print(n, file=sys.stderr)
    total = sum(len(p) for _, p in plan) * len(dtypes) * len(modes)
    if total == 0:
        print("error: nothing to run (check --backends / --cases)", file=sys.stderr)
        return 2

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency of the benchmarks
        tqdm = None

    t_start = time.perf_counter()
    bw = copy_bandwidth(device, quick=args.quick)
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    common = {
        "timestamp": stamp,
        "device": device.type,
        "device_name": _device_name(device),
        "torch": torch.__version__,
        "resizeops": _resizeops_version(),
        "copy_gbps": round(bw / 1e9, 3),
    }
    rows: List[Dict[str, Any]] = []
    bar = tqdm(total=total, desc="bench", unit="run", file=sys.stderr, dynamic_ncols=True) if tqdm else None
    # Ctrl-C or a SIGTERM (e.g. from `timeout`) stops the run but keeps what was measured.
    interrupted = False
    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for case, provs in plan:
            for dtype in dtypes:
                if COMPILED in provs:
                    reset_compiled()  # one fresh compilation per case / dtype / layout
                by_mode = {
                    m: case.make_inputs(device, dtype, requires_grad=(m == "fwd+bwd"), channels_last=args.channels_last)
                    for m in modes
                }
                expected = None
                for provider in provs:
                    for mode in modes:
                        if bar is not None:
                            bar.set_postfix_str(f"{case.name} {_dtype_name(dtype)} {provider} {mode}", refresh=False)
                        row = dict(common)
                        row.update(
                            case=case.name, op=case.op, shapes=case.summary(), dtype=_dtype_name(dtype), layout=layout,
                            mode=mode, provider=provider, ms_p50=None, ms_p20=None, ms_p80=None, samples=None,
                            first_ms=None, ratio_vs_eager=None, ideal_bytes=case.ideal_bytes(dtype, mode),
                            frac_copy_bw=None, peak_mib=None, extra_mib=None, max_err=None, error="",
                        )
                        try:
                            (p50, p20, p80), n, first, (peak, extra), out = _measure(
                                case, provider, mode, by_mode[mode], device, args.repeats, args.quick
                            )
                            row.update(ms_p50=p50, ms_p20=p20, ms_p80=p80, samples=n, first_ms=round(first, 3), peak_mib=peak,
                                       extra_mib=extra)
                            row["frac_copy_bw"] = row["ideal_bytes"] / (p50 * 1e-3) / bw if p50 > 0 else None
                            if mode == "fwd" and out is not None:
                                if expected is None:
                                    with torch.no_grad():
                                        expected = case.run(by_mode["fwd"], EAGER).double()
                                row["max_err"] = (out.double() - expected).abs().max().item() if out.numel() else 0.0
                        except Exception as e:  # noqa: BLE001 - one failing provider must not stop the others
                            row["error"] = f"{type(e).__name__}: {e}".replace("\n", " ")
                        rows.append(row)
                        if bar is not None:
                            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    if interrupted:
        print(f"interrupted: keeping the {len(rows)} of {total} measurements done", file=sys.stderr)
    elapsed = time.perf_counter() - t_start
    _fill_ratios(rows)

    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, f"bench-{device.type}.csv")
    png_path = os.path.join(args.out, f"bench-{device.type}.png")
    write_csv(csv_path, rows)
    if not args.no_plot:
        write_plot(png_path, rows, f"resizeops {common['resizeops']} on {common['device_name']}, torch {torch.__version__}")

    print(
        f"resizeops {common['resizeops']} bench on {device} ({common['device_name']}), torch {torch.__version__}; "
        f"copy bandwidth {bw / 1e9:.1f} GB/s; {elapsed:.1f} s"
    )
    print("ratio = eager-reference ms / provider ms (>1 faster); frac_bw = ideal bytes / ms / copy bandwidth"
          + ("; peak_MiB, extra_MiB: CUDA only" if device.type != "cuda" else ""))
    print(format_table(rows))
    print(f"results appended to {csv_path}" + ("" if args.no_plot else f"; plot {png_path}"))
    errors = [r for r in rows if r["error"]]
    for r in errors:
        print(f"error: {r['case']} {r['dtype']} {r['mode']} {r['provider']}: {r['error']}", file=sys.stderr)
    if interrupted:
        return 130
    return 1 if errors else 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
