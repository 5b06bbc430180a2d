"""The named benchmark cases of the ops: :class:`Case`, :data:`CASES`, :func:`cases_for`.

A case is one op at one configuration: its shapes and parameters, how to make
its inputs (:meth:`Case.make_inputs`), how one provider runs it
(:meth:`Case.run`) and the bytes an ideal kernel moves (:meth:`Case.ideal_bytes`,
the numerator of ``frac_bw``). Two tiers: ``gpu``, the sizes of the DynOPool,
Shape Adaptor and ELASTIC kernel targets (``docs/BENCHMARKS.md``), and ``cpu``,
CPU-sized versions of them. ``python -m resizeops bench`` and the
pytest-benchmark suite in ``benchmarks/`` run the same cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from .providers import COMPILED, EAGER, POOL_THEN_BLEND, compiled_reference

#: the benchmark modes: inference (no autograd, inputs without grad), and forward plus the
#: backward of a fixed random ``grad_out`` (x, x1, x2, alpha and the Shape Adaptor weights require grad)
MODES = ("fwd", "fwd+bwd")
OPS = ("dynopool2d", "resize_blend", "shape_adaptor_maxpool")
TIERS = ("cpu", "gpu")

Shape = Tuple[int, int, int, int]
Scale = Optional[Tuple[float, float]]


def _fmt_shape(shape: Sequence[int]) -> str:
    return "×".join(str(int(s)) for s in shape)


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
            from resizeops.core.ops import dynopool2d_output_size  # max(rnd(H/α), 2): docs/SEMANTICS.md, DynOPool

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

        ``provider``: a backend or variant name (the public op with
        ``backend=name``; a variant of :data:`resizeops.core.kernel_forms.VARIANTS`
        is its backend running its kernel forms), ``"eager-reference"``,
        ``"compiled-reference"``, ``"maxpool+blend"`` (shape_adaptor_maxpool
        only), or a callable with the signature of the reference function.
        """
        import resizeops
        from resizeops.core import reference

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
        return public(*args, backend=provider)

    def grad_leaves(self, inputs: Dict[str, Any]) -> List[torch.Tensor]:
        """The tensors of ``inputs`` that require grad (their ``.grad`` is reset between calls)."""
        return [v for k, v in inputs.items() if isinstance(v, torch.Tensor) and v.requires_grad]

    def ideal_bytes(self, dtype: torch.dtype, mode: str) -> int:
        """Bytes a perfect kernel moves: each input read once, each output written once.

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


# GPU tier: the sizes of the DynOPool, Shape Adaptor and ELASTIC kernel targets; CPU tier: CPU-sized versions.
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
            "Shape Adaptor max-pool op, CIFAR VGG (s=0.75)", size=(24, 24), sigma=_SA_SIGMA, k=1.0,
        ),
        Case(
            "sa-cell-imagenet-vgg", "shape_adaptor_maxpool", "gpu", (64, 64, 224, 224),
            "Shape Adaptor max-pool op, ImageNet VGG (s=0.75)", size=(168, 168), sigma=_SA_SIGMA, k=1.0,
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
            "Shape Adaptor max-pool op, CPU-sized (s=0.75)", size=(48, 48), sigma=_SA_SIGMA, k=1.0,
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
