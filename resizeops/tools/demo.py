"""``python -m resizeops demo``: one small network trained three ways on the CPU.

Data: scikit-learn's handwritten digits (1,797 8×8 images, shipped with the
package: no download), up-sampled and stretched vertically to 48×24 as in
DynOPool §3.1's toy experiments (the content is elongated: the best feature maps
are not square), split 75/25 with a fixed seed.

Network: a VGG-style stack of four 3×3 conv + BN + ReLU layers (16, 32, 64, 64
channels), global average pooling and a linear classifier, with its three
resizing layers done three ways:

* ``human``: 2×2 max-pooling after the first three convolutions;
* ``dynopool``: the same network through ``resizeops.convert(model, "dynopool")``,
  α at a tenth of the weights' learning rate, plus λ·GMACs loss (Eq. 7–8);
* ``shape-adaptor``: the pools removed and N = num_adaptors(48) Shape Adaptor
  max-pool cells after the first convolutions, initialised with
  ``init_alpha(48, 8, N)`` and trained with the alternating schedule (Algorithm 1).

Prints test accuracy, MACs and the learned feature-map sizes of each and saves
a plot of the feature maps (``<out>/demo.png``). It reports what it measures,
whatever that is: on this small data set the three usually land within a few
points of each other, and the learned shapes are the interesting part.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

import resizeops
from resizeops.models import dynopool as dp_recipe
from resizeops.models import shape_adaptor as sa_recipe
from resizeops.models.nn import ShapeAdaptorMaxPool2d

SIZE = (48, 24)  # (H, W): the 8×8 digits up-sampled ×6 vertically, ×3 horizontally
WIDTHS = (16, 32, 64, 64)


def load_digits(seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): the digits at SIZE, normalised, 75/25 split."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError as e:  # pragma: no cover - exercised only without scikit-learn
        raise SystemExit("python -m resizeops demo needs scikit-learn (pip install scikit-learn)") from e
    d = _load()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=SIZE, mode="bilinear", align_corners=False)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_train = int(0.75 * len(y))
    tr, te = perm[:n_train], perm[n_train:]
    return x[tr], y[tr], x[te], y[te]


def _conv(cin: int, cout: int) -> List[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallVGG(nn.Module):
    def __init__(self, features: nn.Sequential, classes: int = 10) -> None:
        super().__init__()
        self.features = features
        self.fc = nn.Linear(WIDTHS[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def human() -> SmallVGG:
    layers: List[nn.Module] = []
    cin = 1
    for i, c in enumerate(WIDTHS):
        layers += _conv(cin, c)
        if i < len(WIDTHS) - 1:
            layers.append(nn.MaxPool2d(2))
        cin = c
    return SmallVGG(nn.Sequential(*layers))


def shape_adaptor(input_dim: int = SIZE[0], output_dim: int = 8) -> SmallVGG:
    """No pools; N adaptor cells spread over the conv layers but the last (the official placement)."""
    n = sa_recipe.num_adaptors(input_dim)
    alpha = sa_recipe.init_alpha(input_dim, output_dim, n)
    slots = len(WIDTHS) - 1
    at = {int(i * slots / n) for i in range(n)} if n <= slots else set(range(slots))
    layers: List[nn.Module] = []
    cin = 1
    for i, c in enumerate(WIDTHS):
        layers += _conv(cin, c)
        if i in at:
            layers.append(ShapeAdaptorMaxPool2d(alpha_init=alpha))
        cin = c
    return SmallVGG(nn.Sequential(*layers))


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    model.train()
    return acc


def _cosine(optimizers, t: int, total: int) -> None:
    """Cosine learning-rate decay to 0 over ``total`` steps, every group relative to its initial rate."""
    f = 0.5 * (1 + math.cos(math.pi * min(t, total) / max(total, 1)))
    for opt in optimizers:
        for g in opt.param_groups:
            g.setdefault("initial_lr", g["lr"])
            g["lr"] = g["initial_lr"] * f


def train(kind: str, data, epochs: int, batch: int, seed: int, lam: float, bar=None, max_steps: Optional[int] = None):
    """Train one variant (SGD with Nesterov momentum and a cosine schedule, as the
    papers' recipes); returns (model, test accuracy, seconds)."""
    torch.manual_seed(seed)
    x_tr, y_tr, x_te, y_te = data
    if kind == "human":
        model = human()
    elif kind == "dynopool":
        model = resizeops.convert(human(), "dynopool")
    else:
        model = shape_adaptor()
    lr = 0.05
    gmacs = None
    if kind == "shape-adaptor":
        wopt = torch.optim.SGD(sa_recipe.weight_parameters(model), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
        alt = sa_recipe.AlternatingOptimizer(model, wopt, every=5)
    else:
        groups = dp_recipe.param_groups(model, lr=lr) if kind == "dynopool" else [{"params": list(model.parameters())}]
        opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
        if kind == "dynopool":
            gmacs = dp_recipe.GMACsLoss(model, x_tr[:2])
    t0 = time.perf_counter()
    steps = 0
    total = max_steps or epochs * ((len(y_tr) + batch - 1) // batch)
    optimizers = [wopt, alt.shape_optimizer] if kind == "shape-adaptor" else [opt]
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(y_tr), generator=g)
        for k in range(0, len(perm), batch):
            idx = perm[k : k + batch]
            xb, yb = x_tr[idx], y_tr[idx]
            _cosine(optimizers, steps, total)
            if kind == "shape-adaptor":
                loss = alt.step(lambda: F.cross_entropy(model(xb), yb))
            else:
                opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                if gmacs is not None:
                    loss = loss + lam * gmacs() / gmacs.initial_gmacs
                loss.backward()
                opt.step()
                resizeops.refresh_shapes(model)
            steps += 1
            if bar is not None:
                bar.set_postfix_str(f"{kind} loss {float(loss.detach()):.3f}", refresh=False)
                bar.update(1)
            if max_steps is not None and steps >= max_steps:
                break
        if max_steps is not None and steps >= max_steps:
            break
    if gmacs is not None:
        gmacs.remove()
    return model, _evaluate(model, x_te, y_te), time.perf_counter() - t0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m resizeops demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=8, help="training epochs per variant (default 8)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lam", type=float, default=0.1, help="DynOPool's GMACs-loss weight λ, on GMACs relative to the start")
    p.add_argument("--out", default="results", help="folder of the plot (default results/)")
    p.add_argument("--quick", action="store_true", help="a few steps per variant (smoke test)")
    args = p.parse_args(None if argv is None else list(argv))
    from tqdm import tqdm

    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = load_digits(args.seed)
    kinds = ("human", "dynopool", "shape-adaptor")
    per_epoch = (len(data[1]) + args.batch - 1) // args.batch
    max_steps = 3 if args.quick else None
    total = len(kinds) * (max_steps or args.epochs * per_epoch)
    results: Dict[str, Tuple[nn.Module, float, float]] = {}
    with tqdm(total=total, desc="demo", unit="step") as bar:
        for kind in kinds:
            results[kind] = train(kind, data, 1 if args.quick else args.epochs, args.batch, args.seed, args.lam, bar, max_steps)
    print(f"digits at {SIZE[0]}×{SIZE[1]} (stretched vertically), {len(data[1])} train / {len(data[3])} test images, "
          f"{args.epochs if not args.quick else 'quick'} epochs, seed {args.seed}")  # fmt: skip
    print(f"{'model':<15}{'test acc':>9}{'MMACs':>9}{'train s':>9}   feature maps after each conv; learned scales")
    reports = {}
    for kind, (model, acc, secs) in results.items():
        rep = resizeops.shape_report(model, (1, 1, *SIZE))
        reports[kind] = rep
        maps = " ".join(f"{f.size[0]}×{f.size[1]}" for f in rep.feature_maps)
        scales = ", ".join(f"{r.scale[0]:.2f}×{r.scale[1]:.2f}" for r in rep.resizers) or "-"
        print(f"{kind:<15}{acc:>9.3f}{rep.macs / 1e6:>9.2f}{secs:>9.1f}   {maps}; {scales}")
    try:
        path = _plot(reports, args.out)
        print(f"plot: {path}")
    except Exception as e:  # noqa: BLE001 - the numbers above are the result; a plot failure is reported
        print(f"no plot: {type(e).__name__}: {e}")
    return 0


def _plot(reports, out: str) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    fig, axes = plt.subplots(1, len(reports), figsize=(3.2 * len(reports), 3.0), sharey=True)
    for ax, (kind, rep) in zip(axes, reports.items()):
        xs = range(len(rep.feature_maps))
        ax.bar([x - 0.2 for x in xs], [f.size[0] for f in rep.feature_maps], width=0.4, label="H")
        ax.bar([x + 0.2 for x in xs], [f.size[1] for f in rep.feature_maps], width=0.4, label="W")
        ax.set_title(f"{kind}\n{rep.macs / 1e6:.2f} MMACs", fontsize=9)
        ax.set_xlabel("conv layer")
    axes[0].set_ylabel("feature-map size")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, "demo.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
