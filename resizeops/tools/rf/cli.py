"""``python -m resizeops rf MODEL ...``: models by name (:func:`load_model`) and the command line (:func:`main`)."""

from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from .analysis import analyze


def load_model(spec: str) -> Tuple[nn.Module, str]:
    """``torchvision:NAME``, ``timm:NAME`` or ``module.path:factory`` → (model, name).

    torchvision and timm models are built with ``weights=None`` / ``pretrained=False``
    on the meta device (no weight initialisation: the analysis needs none).
    """
    if ":" not in spec:
        raise ValueError(f"rf: model must be torchvision:NAME, timm:NAME or module.path:factory, got {spec!r}")
    source, _, obj = spec.partition(":")
    if source == "torchvision":
        import torchvision

        if obj not in torchvision.models.list_models():
            raise ValueError(f"rf: unknown torchvision model {obj!r} (see torchvision.models.list_models())")
        try:
            with torch.device("meta"):
                return torchvision.models.get_model(obj, weights=None), obj
        except Exception:  # noqa: BLE001 - a model whose construction needs real tensors (RegNet)
            return torchvision.models.get_model(obj, weights=None), obj
    if source == "timm":
        try:
            import timm
        except ImportError:
            raise ValueError("rf: timm models need timm installed (pip install timm)") from None
        if obj not in timm.list_models():
            raise ValueError(f"rf: unknown timm model {obj!r}")
        try:
            with torch.device("meta"):
                return timm.create_model(obj, pretrained=False), obj
        except Exception:  # noqa: BLE001 - a model whose construction needs real tensors
            return timm.create_model(obj, pretrained=False), obj
    try:
        module = importlib.import_module(source)
    except ImportError as e:
        raise ValueError(f"rf: cannot import {source!r}: {e}") from None
    factory = module
    for part in obj.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"rf: {source!r} has no attribute {obj!r}")
        factory = getattr(factory, part)
    model = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
    if not isinstance(model, nn.Module):
        raise ValueError(f"rf: {spec!r} gave a {type(model).__name__}, not a torch.nn.Module")
    return model, obj


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m resizeops rf MODEL [--input H [W]] [--ignore-dilation] [--filter-inf] [--all] [--in-channels C]
    [--plot PATH]``."""
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m resizeops rf",
        description="Receptive-field analysis (docs/SEMANTICS.md, Receptive fields): r_min / r_max per layer, the "
        "minimal and maximal feasible input resolution, unproductive layers.",
    )
    p.add_argument("model", help="torchvision:NAME, timm:NAME or module.path:factory (a callable returning an nn.Module)")
    p.add_argument("--input", nargs="+", type=int, default=[224], metavar="H [W]", help="input size (default 224)")
    p.add_argument("--ignore-dilation", action="store_true", help="count dilated kernels undilated (rfa-toolbox)")
    p.add_argument("--filter-inf", action="store_true", help="leave out infinite paths (global pooling/context)")
    p.add_argument("--all", action="store_true", help="list every node (norms, activations, reshapes too)")
    p.add_argument("--in-channels", type=int, default=None, help="channels of the input (default: the first conv's)")
    p.add_argument("--plot", metavar="PATH", help="save the r_min / r_max plot here")
    a = p.parse_args(argv)
    if len(a.input) > 2:
        p.error("--input takes H or H W")
    try:
        model, name = load_model(a.model)
        report = analyze(model, tuple(a.input) if len(a.input) == 2 else a.input[0], a.ignore_dilation,
                         filter_inf=a.filter_inf, in_channels=a.in_channels, name=name)  # fmt: skip
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report.table(all_rows=a.all))
    print()
    print(report.summary())
    if a.plot:
        report.plot(a.plot)
        print(f"plot: {a.plot}")
    return 0
