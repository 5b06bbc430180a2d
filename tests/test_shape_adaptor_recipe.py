"""The Shape Adaptor recipe (docs/SEMANTICS.md, Shape Adaptor): the official numbers of adaptors and
initialisations, the memory penalty, the parameter sets and the alternating schedule."""

import math

import pytest
import torch
import torch.nn.functional as F

import resizeops
from resizeops import shape_adaptor as sa
from resizeops.nn import DynOPool2d, ShapeAdaptor, ShapeAdaptorMaxPool2d


def _official_init(input_dim, output_dim, num, r1=0.5, r2=1.0):
    # SA_init of the official code, written out (Eq. 5).
    if input_dim * r1**num > output_dim:
        return math.log(1e-4)
    p = (output_dim / input_dim) ** (1.0 / num)
    return math.log(-(p - r1) / (p - r2) + 1e-4)


def test_num_adaptors_as_the_official_code():
    assert sa.num_adaptors(32) == 4 and sa.num_adaptors(224) == 6  # int(log2(D / 2))
    assert sa.num_adaptors(64) == 5 and sa.num_adaptors(2) == 0
    assert sa.num_adaptors(81, last_dim=1, r1=1 / 3) == 4  # exact powers survive rounding
    with pytest.raises(ValueError, match="0 < r1 < 1"):
        sa.num_adaptors(32, r1=1.0)


def test_init_alpha_numbers_of_the_spec():
    a = sa.init_alpha(32, 8, 4)
    # −0.3466 = log(0.7071) without ε; the official +1e-4 inside the log makes it −0.34643.
    assert a == pytest.approx(-0.3466, abs=3e-4) and a == pytest.approx(math.log(0.5**0.5 + 1e-4), rel=1e-12)
    assert 0.5 + 0.5 / (1 + math.exp(-a)) == pytest.approx(0.7071, abs=1e-4)  # s = (8/32)^(1/4)
    b = sa.init_alpha(224, 8, 6)
    assert 0.5 + 0.5 / (1 + math.exp(-b)) == pytest.approx(0.5737, abs=3e-4)  # (8/224)^(1/6) = 0.57385
    assert sa.init_alpha(224, 2, 4) == math.log(1e-4)  # 224·0.5^4 = 14 > 2: smallest shape
    for args in [(32, 8, 4), (224, 8, 6), (96, 10, 5), (64, 8, 3, 0.25, 1.0)]:
        assert sa.init_alpha(*args) == pytest.approx(_official_init(*args), rel=1e-12)
    # Initialised this way, N adaptors take D_in to D_out (Eq. 4).
    layer = ShapeAdaptor(alpha_init=sa.init_alpha(32, 8, 4))
    assert 32 * layer.scale() ** 4 == pytest.approx(8, rel=1e-4)


def _chain(n, alpha_init, residual=False):
    return torch.nn.Sequential(*[ShapeAdaptorMaxPool2d(alpha_init=alpha_init, residual=residual) for _ in range(n)])


def test_memory_penalty_keeps_the_final_dimension_under_the_limit():
    model = _chain(4, 2.19)  # s ≈ 0.95 each: 32 -> ~26
    x = torch.randn(1, 2, 32, 32)
    assert model(x).shape[-1] == 24  # floor chain 30, 28, 26, 24
    d_true = sa.final_dim(model, 32)
    assert d_true == pytest.approx(32 * (0.5 + 0.5 * torch.sigmoid(torch.tensor(2.19)).item()) ** 4, rel=1e-6)
    assert sa.penalty(model, 32, None) == 1.0 and sa.penalty(model, 32, 64) == 1.0
    rho = sa.apply_penalty(model, 32, 16)
    assert rho == pytest.approx((16 / d_true) ** 0.25)
    assert all(m.rho == rho for m in sa.adaptors(model))
    # s(σ_p) = ρ·s(σ) (Eq. 7): the penalised chain lands on the limit, and the
    # floored sizes stay under it.
    assert sa.final_dim(model, 32, penalised=True) == pytest.approx(16, rel=1e-5)
    assert model(x).shape[-1] <= 16
    # The tracked dimension stays the un-penalised one (from the last forward).
    assert sa.final_dim(model, 32, last=True) == pytest.approx(d_true, rel=1e-6)
    assert sa.penalty(model, 32, 16) == pytest.approx(rho)
    # AutoSC keeps fixed down-sampling: two kept stride-2 layers count in D_true.
    assert sa.final_dim(model, 32, last=True, fixed_scale=0.25) == pytest.approx(d_true / 4, rel=1e-6)
    assert sa.penalty(model, 32, 4, fixed_scale=0.25) == pytest.approx((4 / (d_true / 4)) ** 0.25)


def test_parameter_sets_partition_the_model():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), ShapeAdaptorMaxPool2d(), DynOPool2d(0.5), torch.nn.Conv2d(4, 4, 1))
    shape = list(sa.shape_parameters(model))
    weight = list(sa.weight_parameters(model))
    assert [id(p) for p in shape] == [id(model[1].alpha), id(model[2].alpha)]
    assert len(weight) == 4 and not ({id(p) for p in shape} & {id(p) for p in weight})


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.sa1 = ShapeAdaptorMaxPool2d(alpha_init=0.0)
        self.sa2 = ShapeAdaptorMaxPool2d(alpha_init=0.0)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.sa2(self.sa1(torch.relu(self.conv(x)))).mean(dim=(2, 3)))


def test_alternating_optimizer_schedule():
    torch.manual_seed(0)
    model = _Tiny()
    wopt = torch.optim.SGD(sa.weight_parameters(model), lr=0.05)
    opt = sa.AlternatingOptimizer(model, wopt, every=3, input_dim=16, limit_dim=100)
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 3, (8,))
    calls = []

    def closure():
        calls.append(1)
        return F.cross_entropy(model(x), y)

    alphas, weights = [], []
    for _ in range(7):
        a0, w0 = model.sa1.alpha.item(), model.fc.weight.detach().clone()
        opt.step(closure)
        alphas.append(model.sa1.alpha.item() != a0)
        weights.append(not torch.equal(model.fc.weight, w0))
    assert alphas == [True, False, False, True, False, False, True]  # steps 0, 3, 6
    assert all(weights)
    assert len(calls) == 7 + 3  # a second forward on shape steps
    assert model.sa1.alpha.grad is None or float(model.sa1.alpha.grad.abs().sum()) == 0.0
    with pytest.raises(ValueError, match="`every`"):
        sa.AlternatingOptimizer(model, wopt, every=0)
    with pytest.raises(ValueError, match="both `input_dim` and `limit_dim`"):
        sa.AlternatingOptimizer(model, wopt, limit_dim=10)
    with pytest.raises(ValueError, match="no Shape Adaptor or DynOPool"):
        sa.AlternatingOptimizer(torch.nn.Linear(2, 2), wopt)


def test_default_shape_optimizer_is_the_official_one():
    model = _Tiny()
    opt = sa.AlternatingOptimizer(model, torch.optim.SGD(sa.weight_parameters(model), lr=0.1))
    g = opt.shape_optimizer.param_groups[0]
    assert isinstance(opt.shape_optimizer, torch.optim.SGD)
    assert (g["lr"], g["momentum"], g["nesterov"], g["weight_decay"]) == (0.1, 0.9, True, 0)
    assert resizeops.nn.resizers(model) == [model.sa1, model.sa2]
