"""The Shape Adaptor training recipe (Liu et al., ECCV 2020 §3.2; docs/SEMANTICS.md, Shape Adaptor).

* :func:`num_adaptors` and :func:`init_alpha`: how many adaptors and their
  initial raw α (Eq. 3–5, as the official code computes them);
* :func:`penalty` / :func:`apply_penalty`: the memory constraint ρ (Eq. 6–8);
* :func:`shape_parameters` / :func:`weight_parameters`: the two parameter sets;
* :class:`AlternatingOptimizer`: the schedule of Algorithm 1 — a shape step
  every ``every`` steps with its own optimiser, on the same batch, before the
  weight step.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch
from torch import nn

from .nn import ShapeAdaptor, refresh_shapes, resizers

__all__ = [
    "num_adaptors",
    "init_alpha",
    "adaptors",
    "fixed_scale_of",
    "final_dim",
    "penalty",
    "set_penalty",
    "apply_penalty",
    "shape_parameters",
    "weight_parameters",
    "AlternatingOptimizer",
]

EPS = 1e-4  # Eq. 5's ε: keeps α finite at the bounds of the search space


def num_adaptors(input_dim: float, last_dim: float = 2, r1: float = 0.5) -> int:
    """N = floor(log_{1/r1}(D_in / D_last)) (Eq. 3 as the official code computes it: 4 for 32, 6 for 224).

    The paper writes a ceiling; the official code truncates (``int(log2(D_in / 2))``),
    and its published numbers of adaptors are the truncated ones.
    """
    if not (input_dim > 0 and last_dim > 0 and 0 < r1 < 1):
        raise ValueError(f"num_adaptors: need input_dim > 0, last_dim > 0 and 0 < r1 < 1, got {input_dim}, {last_dim}, {r1}")
    # A relative nudge so that exact powers (log_2 16 = 4) are not lost to rounding.
    return max(int(math.floor(math.log(input_dim / last_dim) / math.log(1.0 / r1) + 1e-9)), 0)


def init_alpha(input_dim: float, output_dim: float, num: int, r1: float = 0.5, r2: float = 1.0) -> float:
    """The raw α (before the sigmoid) with D_in·s(σ(α))^N = D_out (Eq. 4–5).

    ρ0 = (D_out / D_in)^(1/N); α = log(−(ρ0 − r1)/(ρ0 − r2) + 1e-4), or log(1e-4)
    (the smallest shape) when D_in·r1^N > D_out. 32 → 8 with N = 4 gives
    −0.3466 (s = 0.7071); 224 → 8 with N = 6 gives s = 0.5737.
    """
    if num < 1:
        raise ValueError(f"init_alpha: `num` must be ≥ 1, got {num}")
    if not (0 < r1 < r2):
        raise ValueError(f"init_alpha: need 0 < r1 < r2, got r1={r1}, r2={r2}")
    if input_dim * r1**num > output_dim:
        return math.log(EPS)
    rho0 = (output_dim / input_dim) ** (1.0 / num)
    return math.log(-(rho0 - r1) / (rho0 - r2) + EPS)


def adaptors(model: nn.Module) -> List[ShapeAdaptor]:
    """The Shape Adaptor layers of ``model``, in module order."""
    return [m for m in resizers(model) if isinstance(m, ShapeAdaptor)]


def fixed_scale_of(model: nn.Module) -> float:
    """The product of the fixed down-sampling a converted model keeps (AutoSC), as ``convert`` recorded it.

    Read from the adaptors' ``fixed_total`` buffer (the global size rule); 1 when the
    model's adaptors do all the resizing (standard, AutoTL, or adaptors placed by
    hand). With different factors per axis, the larger (the axis the memory limit
    binds first).
    """
    totals = {tuple(m.fixed_total.tolist()) for m in adaptors(model) if m.size_rule == "global"}
    if len(totals) > 1:
        raise ValueError(f"fixed_scale_of: the model's adaptors record different fixed down-sampling {sorted(totals)}")
    return max(totals.pop()) if totals else 1.0


def final_dim(
    model: nn.Module,
    input_dim: float,
    penalised: bool = False,
    last: bool = False,
    fixed_scale: Optional[float] = None,
) -> float:
    """D_in · F · Π s(σ_i) over the model's adaptors (the un-penalised σ unless ``penalised``).

    With ``last``, each adaptor's value from its last forward (its current one if it
    has not run): the dimension the memory constraint tracks, "from the previous
    step" as the official code tracks it. F (``fixed_scale``): the
    product of the model's fixed resizing factors; default what ``convert``
    recorded in the adaptors (AutoSC keeps the human-designed down-sampling, 0.5
    per kept stride-2 layer: see :func:`fixed_scale_of`), 1 when
    only adaptors resize.
    """
    f = fixed_scale_of(model) if fixed_scale is None else float(fixed_scale)
    d = float(input_dim) * f
    for m in adaptors(model):
        s = m.last_scale(penalised) if last else None
        d *= s if s is not None else m.scale(penalised)
    return d


def penalty(
    model: nn.Module, input_dim: float, limit_dim: Optional[float], fixed_scale: Optional[float] = None
) -> float:
    """ρ = (D_limit / D_true)^(1/N) when D_true exceeds D_limit, else 1 (Eq. 8).

    D_true = :func:`final_dim` (un-penalised, from the adaptors' last forward,
    times the fixed down-sampling). As the paper's Eq. 8, D_true is always the
    un-penalised product; the official VGG AutoSC code restarts it from the
    penalised running size at every kept max-pool (``current_dim_true =
    current_dim * 0.5``), which we do not follow (see docs/DESIGN.md).
    """
    n = len(adaptors(model))
    if limit_dim is None or n == 0:
        return 1.0
    d_true = final_dim(model, input_dim, last=True, fixed_scale=fixed_scale)
    if d_true <= limit_dim:
        return 1.0
    return (limit_dim / d_true) ** (1.0 / n)


def set_penalty(model: nn.Module, rho: float) -> None:
    """Set ρ on every adaptor of ``model`` (their ``rho`` buffers) and refresh the cached sizes."""
    for m in adaptors(model):
        m.set_rho(rho)
    refresh_shapes(model)


def apply_penalty(
    model: nn.Module, input_dim: float, limit_dim: Optional[float], fixed_scale: Optional[float] = None
) -> float:
    """Set ρ (:func:`penalty`) on every adaptor of ``model`` and return it.

    Refreshes the adaptors' cached sizes with one host read (ρ is part of them).
    """
    rho = penalty(model, input_dim, limit_dim, fixed_scale)
    set_penalty(model, rho)
    return rho


def shape_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The learnable resizers' α (Shape Adaptor and DynOPool layers)."""
    for m in resizers(model):
        yield m.alpha


def weight_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Every parameter of ``model`` that is not a resizer's α."""
    shape = {id(p) for p in shape_parameters(model)}
    for p in model.parameters():
        if id(p) not in shape:
            yield p


class AlternatingOptimizer:
    """Algorithm 1 of the Shape Adaptor paper: shape steps every ``every`` steps, weight steps always.

    Each :meth:`step` takes a ``closure`` that runs the forward on the current batch
    and returns the loss. On every ``every``-th call (the first included) it first
    runs a shape step on that batch (forward, backward, ``shape_optimizer.step()``),
    then always a weight step (forward again with the updated shapes, backward,
    ``weight_optimizer.step()``). Gradients are zeroed after each. With
    ``limit_dim``, ρ is recomputed before each forward (:func:`apply_penalty`),
    except in the first step, which runs with ρ = 1 as the official loop does
    (its D_true comes from a previous forward, and there is none yet); the cached
    sizes are refreshed after each step (one host read).

    Checkpoints: :meth:`state_dict` holds the step count and both optimisers'
    states; with ``model.state_dict()`` (ρ is a buffer of every adaptor) it
    resumes training exactly where it stopped.

    Args:
        model: the network.
        weight_optimizer: over :func:`weight_parameters`.
        shape_optimizer: over :func:`shape_parameters`; default SGD(lr=0.1,
            momentum=0.9, nesterov=True), the official choice.
        every: α_s (20 on small data sets, 1500 on ImageNet).
        input_dim, limit_dim: the memory constraint (both or neither).
        fixed_scale: the model's fixed resizing factors (see :func:`final_dim`);
            default what ``convert`` recorded (AutoSC), else 1.
    """

    def __init__(
        self,
        model: nn.Module,
        weight_optimizer: torch.optim.Optimizer,
        shape_optimizer: Optional[torch.optim.Optimizer] = None,
        every: int = 20,
        input_dim: Optional[float] = None,
        limit_dim: Optional[float] = None,
        fixed_scale: Optional[float] = None,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"AlternatingOptimizer: `every` must be an integer ≥ 1, got {every!r}")
        if (input_dim is None) != (limit_dim is None):
            raise ValueError("AlternatingOptimizer: give both `input_dim` and `limit_dim` for the memory constraint, or neither")
        self.model = model
        self.weight_optimizer = weight_optimizer
        if shape_optimizer is None:
            params = list(shape_parameters(model))
            if not params:
                raise ValueError("AlternatingOptimizer: `model` has no Shape Adaptor or DynOPool layers")
            shape_optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)
        self.shape_optimizer = shape_optimizer
        self.every = every
        self.input_dim, self.limit_dim = input_dim, limit_dim
        self.fixed_scale = fixed_scale_of(model) if fixed_scale is None else float(fixed_scale)
        self.steps = 0
        self.rho = 1.0

    def _prepare(self) -> None:
        if self.limit_dim is None:
            return
        if self.steps == 0:
            self.rho = 1.0
            set_penalty(self.model, 1.0)
        else:
            self.rho = apply_penalty(self.model, self.input_dim, self.limit_dim, self.fixed_scale)

    def _zero(self) -> None:
        self.weight_optimizer.zero_grad()
        self.shape_optimizer.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """One training step on one batch; returns the weight step's loss."""
        if self.steps % self.every == 0:
            self._prepare()
            closure().backward()
            self.shape_optimizer.step()
            self._zero()
            refresh_shapes(self.model)
        self._prepare()
        loss = closure()
        loss.backward()
        self.weight_optimizer.step()
        self._zero()
        self.steps += 1
        return loss.detach()

    def state_dict(self) -> Dict[str, Any]:
        """The schedule's state (steps taken, the last ρ) and both optimisers' ``state_dict``."""
        return {
            "steps": self.steps,
            "rho": self.rho,
            "weight_optimizer": self.weight_optimizer.state_dict(),
            "shape_optimizer": self.shape_optimizer.state_dict(),
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the optimisers' states included)."""
        missing = {"steps", "rho", "weight_optimizer", "shape_optimizer"} - set(state_dict)
        if missing:
            raise ValueError(f"AlternatingOptimizer.load_state_dict: `state_dict` lacks {sorted(missing)}")
        steps = state_dict["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"AlternatingOptimizer.load_state_dict: `steps` must be an integer ≥ 0, got {steps!r}")
        self.weight_optimizer.load_state_dict(state_dict["weight_optimizer"])
        self.shape_optimizer.load_state_dict(state_dict["shape_optimizer"])
        self.steps = steps
        self.rho = float(state_dict["rho"])
