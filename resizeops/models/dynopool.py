"""The DynOPool training recipe (Jang et al., CVPR 2022 §4.3–4.4; docs/SEMANTICS.md, DynOPool recipe).

* :class:`GMACsLoss` — the computational-cost loss of Eq. 7,
  ``L = Σ_ℓ (H_ℓ W_ℓ)/(H⁰_ℓ W⁰_ℓ) · GMACs⁰_ℓ``, per-layer MACs counted once at
  construction by ``torch.utils.flop_counter``; add ``λ·L`` to the task loss (Eq. 8).
* :func:`param_groups` — optimiser groups with a lower learning rate for α (§5.1).

Decision (the feature-map sizes must be differentiable in α through DynOPool's
surrogate; the paper is silent on layers behind several DynOPools): the value of
each ratio is the layer's actual current feature-map size over its initial one;
its gradient is that of the multiplicative surrogate ``Π_k sg(α_k)/α_k`` over
the DynOPool layers ``k`` the layer's output depends on (found once, from the
autograd graph of the construction forward), per axis, for the layers whose size
depends on them at all (found by a second construction forward with every α
halved: a layer behind global pooling, or a linear layer on pooled features,
keeps its size and gets no α gradient). For the layer right behind one DynOPool
this is DynOPool's own straight-through derivative, ``dĤ/dα = −H/α² ≈ −Ĥ/α``;
behind several, each α gets the share its ratio has in the size.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

import torch
from torch import nn

from .nn import DynOPool2d, resizers

__all__ = ["GMACsLoss", "param_groups"]


def _alpha_leaves(roots: Iterable, alpha_ids: FrozenSet[int], memo: Dict) -> FrozenSet[int]:
    """The ids of the DynOPool α parameters reachable from autograd nodes ``roots``."""
    out = set()
    for root in roots:
        if root is None:
            continue
        # Iterative post-order DFS with a memo shared across calls.
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if node in memo:
                continue
            if done:
                found = set()
                var = getattr(node, "variable", None)
                if var is not None and id(var) in alpha_ids:
                    found.add(id(var))
                for nxt, _ in node.next_functions:
                    if nxt is not None:
                        found |= memo[nxt]
                memo[node] = frozenset(found)
                continue
            stack.append((node, True))
            for nxt, _ in node.next_functions:
                if nxt is not None and nxt not in memo:
                    stack.append((nxt, False))
        out |= memo[root]
    return frozenset(out)


class GMACsLoss(nn.Module):
    """DynOPool's GMACs loss (Eq. 7) for ``model`` at the input ``example_input``.

    Construction runs the model once on ``example_input`` (grad enabled, in the
    current train/eval mode) to count each layer's MACs (``torch.utils.flop_counter``:
    convolutions, linear layers, matmuls; FLOPs / 2) and its initial output size,
    and registers forward hooks that record each layer's output size at every
    later forward. ``loss()`` (or calling the module) returns the loss of the last
    forward, in GMACs, differentiable in the DynOPool α. Call :meth:`remove` to
    detach the hooks.
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor) -> None:
        super().__init__()
        from torch.utils.flop_counter import FlopCounterMode

        self._model = [model]  # not a submodule: the loss must not own the model's parameters
        pools = [m for m in resizers(model) if isinstance(m, DynOPool2d)]
        alphas = {id(m.alpha): m.alpha for m in pools}
        root = type(model).__name__
        leaves = [(name, m) for name, m in model.named_modules() if name and not any(True for _ in m.children())]
        sizes: Dict[str, Tuple[int, int]] = {}
        outputs: Dict[str, torch.Tensor] = {}

        def recorder(name: str, keep: bool):
            def hook(module, inputs, output):
                if isinstance(output, torch.Tensor):
                    sizes[name] = tuple(output.shape[-2:]) if output.dim() >= 3 else (1, 1)
                    if keep:
                        outputs[name] = output

            return hook

        handles = [m.register_forward_hook(recorder(name, True)) for name, m in leaves]
        try:
            with torch.enable_grad(), FlopCounterMode(display=False) as counter:
                model(example_input)
        finally:
            for h in handles:
                h.remove()
        flops = counter.get_flop_counts()
        # Which layers' sizes depend on the pools at all: every α halved (r doubled).
        moved: Dict[str, Tuple[int, int]] = {}
        if pools:
            probe = [m.register_forward_hook(recorder(name, False)) for name, m in leaves]
            saved = [m.alpha.detach().clone() for m in pools]
            first = dict(sizes)
            try:
                with torch.no_grad():
                    for m in pools:
                        m.alpha.mul_(0.5)
                    model(example_input)
                    moved = {n: s for n, s in sizes.items() if s != first.get(n)}
            finally:
                with torch.no_grad():
                    for m, a in zip(pools, saved):
                        m.alpha.copy_(a)
                for h in probe:
                    h.remove()
                sizes.clear()
                sizes.update(first)
        memo: Dict = {}
        self.layers: List[Tuple[str, float, Tuple[int, int], Tuple[nn.Parameter, ...]]] = []
        for name, m in leaves:
            total = sum(flops.get(f"{root}.{name}", {}).values())
            if total <= 0 or name not in sizes:
                continue
            out = outputs.get(name)
            deps: FrozenSet[int] = frozenset()
            if out is not None and name in moved:
                deps = _alpha_leaves([out.grad_fn], frozenset(alphas), memo)
            params = tuple(alphas[i] for i in alphas if i in deps)  # model order
            self.layers.append((name, total / 2 / 1e9, sizes[name], params))
        self._sizes = sizes
        self._initial = {name: s for name, _, s, _ in self.layers}
        self._handles = [m.register_forward_hook(recorder(name, False)) for name, m in leaves if name in self._initial]

    @property
    def initial_gmacs(self) -> float:
        """Σ_ℓ GMACs⁰_ℓ: the model's MACs at construction (in GMACs)."""
        return sum(g for _, g, _, _ in self.layers)

    def current_gmacs(self) -> float:
        """The value of the loss at the last forward, as a float (no graph)."""
        return float(sum(g * self._ratio(name) for name, g, _, _ in self.layers))

    def _ratio(self, name: str) -> float:
        h, w = self._sizes[name]
        h0, w0 = self._initial[name]
        return (h * w) / (h0 * w0)

    def loss(self) -> torch.Tensor:
        """Σ_ℓ (H_ℓ W_ℓ)/(H⁰_ℓ W⁰_ℓ) · GMACs⁰_ℓ at the last forward, differentiable in α."""
        device = next((p.device for p in self._model[0].parameters()), torch.device("cpu"))
        total = torch.zeros((), device=device)
        for name, g, _, params in self.layers:
            term = torch.tensor(self._ratio(name) * g, device=device)
            for a in params:
                surrogate = a.detach() / a  # value 1, d/dα = −1/α per axis
                term = term * surrogate[0] * surrogate[1]
            total = total + term
        return total

    def forward(self) -> torch.Tensor:  # type: ignore[override]
        return self.loss()

    def remove(self) -> None:
        """Detach the forward hooks from the model."""
        for h in self._handles:
            h.remove()
        self._handles = []


def param_groups(model: nn.Module, lr: float, alpha_lr: Optional[float] = None, alpha_lr_scale: float = 0.1) -> List[dict]:
    """Two optimiser groups: the weights at ``lr``, every resizer's α at ``alpha_lr``
    (default ``lr · alpha_lr_scale``) and no weight decay (DynOPool §5.1: α learns
    more slowly than the weights)."""
    shape_ids = {id(m.alpha) for m in resizers(model)}
    weights = [p for p in model.parameters() if id(p) not in shape_ids]
    alphas = [m.alpha for m in resizers(model)]
    return [
        {"params": weights, "lr": lr},
        {"params": alphas, "lr": lr * alpha_lr_scale if alpha_lr is None else alpha_lr, "weight_decay": 0.0},
    ]
