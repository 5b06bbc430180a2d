"""The DynOPool recipe (docs/SEMANTICS.md, DynOPool recipe): the GMACs loss of Eq. 7 and the α
learning-rate groups."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from resizeops.dynopool import GMACsLoss, param_groups
from resizeops.nn import DynOPool2d


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.p1 = DynOPool2d(0.5)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.p2 = DynOPool2d((0.5, 0.75))
        self.c3 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        x = self.p1(torch.relu(self.c1(x)))
        x = self.p2(torch.relu(self.c2(x)))
        x = torch.relu(self.c3(x))
        return self.fc(x.mean(dim=(2, 3)))


def test_gmacs_counts_and_dependencies():
    torch.manual_seed(0)
    model = _Net()
    x = torch.randn(2, 3, 32, 32)
    loss = GMACsLoss(model, x)
    with FlopCounterMode(display=False) as fc:
        model(x)
    assert loss.initial_gmacs == pytest.approx(fc.get_total_flops() / 2 / 1e9)
    by_name = {name: (g, size, params) for name, g, size, params in loss.layers}
    assert set(by_name) == {"c1", "c2", "c3", "fc"}
    assert by_name["c1"][2] == () and by_name["fc"][2] == ()  # before any pool; after global pooling
    assert by_name["c2"][2] == (model.p1.alpha,)
    assert by_name["c3"][2] == (model.p1.alpha, model.p2.alpha)
    assert by_name["c3"][1] == (8, 12)
    assert by_name["c1"][0] == pytest.approx(2 * 8 * 3 * 9 * 32 * 32 / 1e9)
    assert float(loss().detach()) == pytest.approx(loss.initial_gmacs)


def test_gmacs_loss_follows_the_sizes_and_has_a_gradient_in_alpha():
    torch.manual_seed(0)
    model = _Net()
    x = torch.randn(2, 3, 32, 32)
    loss_fn = GMACsLoss(model, x)
    g = {name: gm for name, gm, _, _ in loss_fn.layers}
    with torch.no_grad():
        model.p1.alpha.copy_(torch.tensor([1.0, 1.0]))  # r = 1: no down-sampling in p1
    model(x)
    want = g["c1"] + 4 * g["c2"] + 4 * g["c3"] + g["fc"]
    loss = loss_fn()
    assert float(loss.detach()) == pytest.approx(want, rel=1e-6) == loss_fn.current_gmacs()
    g1, g2 = torch.autograd.grad(loss, (model.p1.alpha, model.p2.alpha))
    # Larger α (smaller maps) lowers the cost: negative gradients; the multiplicative
    # surrogate's derivative −term/α on each axis of every pool a layer depends on.
    assert torch.all(g1 < 0) and torch.all(g2 < 0)
    assert g1.tolist() == pytest.approx([-(4 * g["c2"] + 4 * g["c3"]) / 1.0] * 2, rel=1e-6)
    assert g2.tolist() == pytest.approx([-4 * g["c3"] / 2.0, -4 * g["c3"] / (1 / 0.75)], rel=1e-6)
    loss_fn.remove()
    with torch.no_grad():
        model.p1.alpha.copy_(torch.tensor([2.0, 2.0]))
    model(x)
    assert float(loss_fn().detach()) == pytest.approx(want, rel=1e-6)  # hooks removed: no longer follows


def test_param_groups():
    model = _Net()
    groups = param_groups(model, lr=0.1)
    assert [p is q for p, q in zip(groups[1]["params"], (model.p1.alpha, model.p2.alpha))] == [True, True]
    assert groups[1]["lr"] == pytest.approx(0.01) and groups[1]["weight_decay"] == 0.0
    assert len(groups[0]["params"]) == 8
    opt = torch.optim.SGD(groups, lr=0.1, weight_decay=5e-4)
    assert opt.param_groups[1]["weight_decay"] == 0.0
    assert param_groups(model, lr=0.1, alpha_lr=0.003)[1]["lr"] == 0.003
