"""Training under ``torch.compile``: ``python -m resizeops bench-train [options]``.

Trains a converted network (default: torchvision's ``vgg11`` with
``resizeops.convert(..., "dynopool")``, 32×32 inputs, batch 32) for ``--steps``
optimiser steps from the same initial weights and batches:

* ``compile``: ``torch.compile(model)``;
* ``compile-dynamic``: ``torch.compile(model, dynamic=True)``;

each next to an ``eager`` twin, one step of each in turn, so that both are timed
under the same load of the machine (the eager row shown is the first mode's
twin). Two scenarios: ``fixed``, α trained with the weights' learning rate (it
moves every step; the output sizes stay), and ``moving``, α with ``--alpha-lr``
(sizes change during the run).

Reported per run: ``graphs`` (dynamo's compiled graphs, ``unique_graphs``),
``recompiles`` (compilations of a frame that was compiled before: dynamo's
compilation metrics with a recompile reason), ``breaks`` (graph breaks, all
reasons), ``limit`` (whether dynamo hit its recompile limit and ran frames
eagerly from then on), ``configs`` (distinct combinations of the resizers'
output sizes the run went through, followed along the VGG's chain),
``first_s`` (the first step, compilation included), ``step_ms`` (median of the later steps), ``speedup`` (the twin's
``step_ms`` / this run's), ``loss0_diff`` and ``loss_diff`` (|loss − the twin's
loss| at the first step, and its maximum over the steps: the runs train the
same model; later steps drift apart by rounding, as any compiled training).

The classifier: ``--head cifar`` (default) replaces torchvision's
``AdaptiveAvgPool2d(7) → 4096 → 4096`` classifier (102M weights, made for
224×224 inputs) by global average pooling and ``Linear(512, classes)``, the
CIFAR VGG of the Shape Adaptor and DynOPool code; ``--head torchvision`` keeps
it (about 5 s per eager step on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime
import logging
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

MODES = ("eager", "compile", "compile-dynamic")
SCENARIOS = ("fixed", "moving")
METHODS = ("dynopool", "shape_adaptor")
FIELDS = [
    "timestamp", "device", "torch", "model", "method", "scenario", "mode", "steps", "batch", "size",
    "graphs", "recompiles", "breaks", "limit", "configs", "first_s", "step_ms", "speedup", "loss_diff", "loss0_diff",
]  # fmt: skip


def build_model(name: str, method: str, classes: int, size: int, head: str) -> nn.Module:
    """``resizeops.convert(torchvision.models.<name>(num_classes=classes), method)``."""
    import torchvision

    import resizeops

    model = getattr(torchvision.models, name)(num_classes=classes)
    if head == "cifar":
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        width = next(m.out_channels for m in reversed(list(model.features)) if isinstance(m, nn.Conv2d))
        model.classifier = nn.Linear(width, classes)
    options: Dict[str, Any] = {"input_dim": size} if method == "shape_adaptor" else {}
    return resizeops.convert(model, method, **options)


def size_config(model: nn.Module, size: int) -> tuple:
    """The resizers' current output sizes, followed from the input size along a VGG's chain
    (each resizer's input is the previous one's output: a VGG's convolutions keep sizes)."""
    import resizeops

    out, cur = [], (size, size)
    for m in resizeops.nn.resizers(model):
        table = getattr(getattr(m, "_host", None), "sizes", None)
        cur = table.get(cur) if table else None
        if cur is None:
            return ()  # not known from the tables (a version without them)
        out.append(cur)
    return tuple(out)


class _LimitWatch(logging.Handler):
    """Counts dynamo's "hit config.recompile_limit" warnings (frames then run eagerly)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.hits = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "recompile_limit" in record.getMessage() or "cache_size_limit" in record.getMessage():
            self.hits += 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Run:
    """One model being trained: its optimiser, what it runs (the model or its compiled form), its record."""

    def __init__(self, model: nn.Module, mode: str, alpha_lr: Optional[float], lr: float) -> None:
        import resizeops

        alphas = [m.alpha for m in resizeops.nn.resizers(model)]
        ids = {id(a) for a in alphas}
        weights = [p for p in model.parameters() if id(p) not in ids]
        groups = [{"params": weights}, {"params": alphas, "lr": lr if alpha_lr is None else alpha_lr}]
        self.model, self.mode = model, mode
        self.opt = torch.optim.Adam(groups, lr=lr)
        self.run = model if mode == "eager" else torch.compile(model, dynamic=(mode == "compile-dynamic") or None)
        self.times: List[float] = []
        self.losses: List[float] = []
        self.configs: set = set()

    def step(self, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
        _sync(device)
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(self.run(x), y)
        self.configs.add(size_config(self.model, x.shape[-1]))  # the sizes this forward used (host ints: µs)
        loss.backward()
        self.opt.step()
        _sync(device)
        self.times.append(time.perf_counter() - t0)
        self.losses.append(float(loss.detach()))

    def record(self) -> Dict[str, Any]:
        return {
            "configs": len(self.configs),
            "first_s": self.times[0],
            "step_ms": statistics.median(self.times[1:]) * 1e3 if len(self.times) > 1 else float("nan"),
            "losses": self.losses,
        }


def train(
    model: nn.Module,
    mode: str,
    steps: int,
    batches: Sequence[tuple],
    alpha_lr: Optional[float],
    lr: float = 1e-3,
    device: torch.device = torch.device("cpu"),
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Train a copy of ``model`` with ``mode`` and an eager copy in lockstep (one step each, in turn,
    so that both see the same load of the machine): (eager record, ``mode``'s record).

    Adam, α in its own group with ``alpha_lr`` when given.
    """
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch._dynamo.utils.clear_compilation_metrics()
    eager = _Run(copy.deepcopy(model), "eager", alpha_lr, lr)
    other = _Run(copy.deepcopy(model), mode, alpha_lr, lr) if mode != "eager" else None
    watch = _LimitWatch()
    dynamo_log = logging.getLogger("torch._dynamo")
    dynamo_log.addHandler(watch)
    try:
        for step in range(steps):
            x, y = batches[step % len(batches)]
            eager.step(x, y, device)
            if other is not None:
                other.step(x, y, device)
    finally:
        dynamo_log.removeHandler(watch)
    metrics = torch._dynamo.utils.get_compilation_metrics()
    dynamo = {
        "graphs": int(counters["stats"].get("unique_graphs", 0)),
        "recompiles": sum(1 for m in metrics if m.recompile_reason),
        "breaks": int(sum(counters["graph_break"].values())),
        "limit": watch.hits > 0,
    }
    base = {"graphs": 0, "recompiles": 0, "breaks": 0, "limit": False, **eager.record()}
    return base, ({**dynamo, **other.record()} if other is not None else base)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m resizeops bench-train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="vgg11", help="a torchvision VGG (default vgg11)")
    p.add_argument("--method", default="dynopool", help=f"{', '.join(METHODS)} or all (default dynopool)")
    p.add_argument("--scenarios", default="fixed,moving", help="fixed, moving (default both)")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)}")
    p.add_argument("--steps", type=int, default=12, help="optimiser steps per run (default 12)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32, help="input resolution (default 32)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--head", choices=("cifar", "torchvision"), default="cifar")
    p.add_argument("--alpha-lr", type=float, default=0.05, help="α's learning rate in the `moving` scenario")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="append the rows to <out>/bench-train-<device>.csv")
    p.add_argument("--quick", action="store_true", help="3 steps of a batch of 4 (smoke test)")
    return p


def _format(rows: List[Dict[str, Any]]) -> str:
    cols = ["method", "scenario", "mode", "graphs", "recompiles", "breaks", "limit", "configs", "first_s",
            "step_ms", "speedup", "loss0_diff", "loss_diff"]  # fmt: skip
    fmt = {"first_s": "{:.1f}", "step_ms": "{:.1f}", "speedup": "{:.2f}", "loss_diff": "{:.1e}", "loss0_diff": "{:.1e}"}
    table = [cols] + [[fmt.get(c, "{}").format(r[c]) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in table)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m resizeops bench-train``: run, print a table, append to the CSV. 0 on success."""
    args = build_parser().parse_args(None if argv is None else [str(a) for a in argv])
    methods = list(METHODS) if args.method == "all" else args.method.split(",")
    scenarios = args.scenarios.split(",")
    modes = args.modes.split(",")
    for name, got, valid in (("--method", methods, METHODS), ("--scenarios", scenarios, SCENARIOS), ("--modes", modes, MODES)):
        bad = [v for v in got if v not in valid]
        if bad:
            print(f"error: {name}: unknown {bad}; expected {', '.join(valid)}", file=sys.stderr)
            return 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device is visible", file=sys.stderr)
        return 2
    steps, batch = (3, 4) if args.quick else (args.steps, args.batch)
    if steps < 2:
        print("error: --steps must be ≥ 2", file=sys.stderr)
        return 2
    gen = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(batch, 3, args.size, args.size, generator=gen).to(device),
            torch.randint(0, args.classes, (batch,), generator=gen).to(device),
        )
        for _ in range(4)
    ]
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    rows: List[Dict[str, Any]] = []
    for method in methods:
        torch.manual_seed(0)
        base = build_model(args.model, method, args.classes, args.size, args.head).to(device)
        for scenario in scenarios:
            alpha_lr = None if scenario == "fixed" else args.alpha_lr
            for mode in modes:
                if mode == "eager" and len(modes) > 1:
                    continue  # the twin of every compiled run
                eager, res = train(base, mode, steps, batches, alpha_lr, device=device)
                common = {
                    "timestamp": stamp, "device": device.type, "torch": torch.__version__, "model": args.model,
                    "method": method, "scenario": scenario, "steps": steps, "batch": batch, "size": args.size,
                }  # fmt: skip
                first = mode == next(m for m in modes if m != "eager" or len(modes) == 1)
                pair = ([("eager", eager)] if first else []) + ([(mode, res)] if mode != "eager" else [])
                for name, r in pair:
                    row = {**common, "mode": name, **{k: v for k, v in r.items() if k != "losses"}}
                    row["speedup"] = eager["step_ms"] / r["step_ms"]
                    row["loss_diff"] = max(abs(a - b) for a, b in zip(r["losses"], eager["losses"]))
                    row["loss0_diff"] = abs(r["losses"][0] - eager["losses"][0])
                    rows.append(row)
                    print(_format(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(f"{args.model} ({args.head} head), {args.size}×{args.size}, batch {batch}, {steps} steps, {device.type}, "
          f"torch {torch.__version__}")  # fmt: skip
    print(_format(rows))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, f"bench-train-{device.type}.csv")
        new = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
