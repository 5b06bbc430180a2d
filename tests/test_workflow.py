"""The whole workflow, end to end: take a torchvision model, convert it, train it with the
recipe, freeze and export it, and see its learned shape (the several-process step is
tests/test_ddp.py)."""

import pytest
import torch
import torch.nn.functional as F

import resizeops
from resizeops import dynopool as dp
from resizeops import shape_adaptor as sa

torchvision = pytest.importorskip("torchvision")


def _export_matches(model, x):
    frozen = resizeops.freeze(model).eval()
    want = frozen(x)
    ep = torch.export.export(frozen, (x,))
    torch.testing.assert_close(ep.module()(x), want, rtol=1e-4, atol=1e-5)
    compiled = torch.compile(frozen, fullgraph=True)
    torch.testing.assert_close(compiled(x), want, rtol=1e-4, atol=1e-4)
    return frozen


def test_dynopool_resnet18_convert_train_freeze_export_report():
    torch.manual_seed(0)
    model = resizeops.convert(torchvision.models.resnet18(num_classes=5), "dynopool")
    x, y = torch.randn(4, 3, 40, 40), torch.randint(0, 5, (4,))
    opt = torch.optim.SGD(dp.param_groups(model, lr=0.05, alpha_lr=0.05), lr=0.05, momentum=0.9)
    gmacs = dp.GMACsLoss(model, x[:1])
    before = [m.ratio for m in resizeops.nn.resizers(model)]
    for _ in range(3):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + 0.5 * gmacs() / gmacs.initial_gmacs
        loss.backward()
        opt.step()
        resizeops.refresh_shapes(model)
    after = [m.ratio for m in resizeops.nn.resizers(model)]
    assert after != before  # the shapes learned
    frozen = _export_matches(model.eval(), x)
    report = resizeops.shape_report(frozen, (3, 40, 40))
    # Five DynOPool2d; the three of the strided stages are shared by two call sites each.
    assert len(report.resizers) == 8 and len({id(m) for m in resizeops.nn.resizers(frozen)}) == 5
    assert [r.scale for r in report.resizers[:2]] == [pytest.approx(a) for a in after[:2]]


def test_shape_adaptor_vgg_convert_train_freeze_export_report():
    torch.manual_seed(0)
    model = torchvision.models.vgg11(num_classes=5)
    model.classifier = torch.nn.Linear(512 * 7 * 7, 5)  # small: the test is about the shape path
    model = resizeops.convert(model, "shape_adaptor", input_dim=32)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,))
    wopt = torch.optim.SGD(sa.weight_parameters(model), lr=0.01)
    step = sa.AlternatingOptimizer(model, wopt, every=2, input_dim=32, limit_dim=12)
    alphas = [m.alpha.item() for m in sa.adaptors(model)]
    for _ in range(3):
        step.step(lambda: F.cross_entropy(model(x), y))
    assert [m.alpha.item() for m in sa.adaptors(model)] != alphas
    frozen = _export_matches(model.eval(), x)
    report = resizeops.shape_report(frozen, (3, 32, 32))
    assert len(report.resizers) == sa.num_adaptors(32) == 4
    assert report.feature_maps[-1].size[0] <= 12  # the memory constraint holds
