"""Deployment cases: a frozen model in PyTorch against its ONNX export in ONNX Runtime.

:data:`DEPLOY_CASES` holds the models (:class:`DeployCase`), :data:`DEPLOY_PROVIDERS`
the ways one forward runs; ``benchmarks/test_bench_deploy.py`` times them with
pytest-benchmark (results in ``docs/BENCHMARKS.md``, "Deploying").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import torch

#: Providers of a deployment case: the frozen model in PyTorch eager (the ops'
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
