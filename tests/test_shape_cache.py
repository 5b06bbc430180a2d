"""The layers' host copy of the values their output sizes depend on (README "Shapes
as state", docs/DESIGN.md): it follows every update — fused optimiser steps,
writes through ``.data``, buffers a size depends on — and a change it cannot see
without a device read never passes silently."""

import pytest
import torch
import torch.nn.functional as F

import resizeops
from resizeops.nn import DynOPool2d, ShapeAdaptor, ShapeAdaptorMaxPool2d, StaleShapeError

OPTIMIZERS = {
    "Adam": lambda p: torch.optim.Adam(p, lr=0.5, fused=True),
    "AdamW": lambda p: torch.optim.AdamW(p, lr=0.5, weight_decay=0.0, fused=True),
    "SGD": lambda p: torch.optim.SGD(p, lr=0.5, fused=True),
}


def _step(layer, optimizer, grad):
    """One fused optimiser step with a given gradient (fused steps do not bump α's version counter)."""
    opt = OPTIMIZERS[optimizer]([layer.alpha])
    version = layer.alpha._version
    layer.alpha.grad = torch.full_like(layer.alpha, grad)
    opt.step()
    assert layer.alpha._version == version  # the situation under test


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_fused_optimiser_steps_change_the_dynopool_size(optimizer):
    layer = DynOPool2d(0.5)
    x = torch.randn(1, 2, 20, 20)
    assert layer(x).shape[-2:] == (10, 10)
    _step(layer, optimizer, -1.0)  # α 2 → 2.5 (Adam's first step moves by lr)
    assert layer.alpha.detach().tolist() == pytest.approx([2.5, 2.5])
    assert layer(x).shape[-2:] == (8, 8)  # rnd(20 / 2.5)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_fused_optimiser_steps_change_the_shape_adaptor_size(optimizer):
    fused = ShapeAdaptorMaxPool2d(alpha_init=0.0)  # s = 0.75
    plain = ShapeAdaptor(alpha_init=0.0)
    x = torch.randn(1, 2, 20, 20)
    assert fused(x).shape[-2:] == (15, 15)
    assert plain(F.max_pool2d(x, 2), x).shape[-2:] == (15, 15)
    for layer in (fused, plain):
        for _ in range(40):  # α → about −20: s → 0.5
            _step(layer, optimizer, 1.0)
        assert layer.scale() == pytest.approx(0.5, abs=1e-6)
    assert fused(x).shape[-2:] == (10, 10)
    assert plain(F.max_pool2d(x, 2), x).shape[-2:] == (10, 10)


@pytest.mark.parametrize("write", ["copy_", "fill_"])
def test_writes_through_data_change_the_size(write):
    pool = DynOPool2d(0.5)
    cell = ShapeAdaptorMaxPool2d(alpha_init=0.0)
    x = torch.randn(1, 2, 20, 20)
    assert pool(x).shape[-2:] == (10, 10) and cell(x).shape[-2:] == (15, 15)
    if write == "copy_":
        pool.alpha.data.copy_(torch.tensor([4.0, 4.0]))
        cell.alpha.data.copy_(torch.tensor(-30.0))
    else:
        pool.alpha.data.fill_(4.0)
        cell.alpha.data.fill_(-30.0)
    assert pool(x).shape[-2:] == (5, 5)
    assert cell(x).shape[-2:] == (10, 10)


def test_refresh_shapes_reads_what_the_version_counter_does_not_show():
    model = torch.nn.Sequential(DynOPool2d(0.5), ShapeAdaptorMaxPool2d(alpha_init=0.0))
    model(torch.randn(1, 1, 40, 40))  # 20×20, then 15×15
    model[0].alpha.data.fill_(4.0)
    model[1].alpha.data.fill_(-30.0)
    assert resizeops.refresh_shapes(model) == 2  # both layers' sizes changed
    assert model[0].output_size((40, 40)) == (10, 10)
    assert model[1].output_size((10, 10)) == (5, 5)
    assert model(torch.randn(1, 1, 40, 40)).shape[-2:] == (5, 5)


class _RhoBuffer(ShapeAdaptorMaxPool2d):
    """An adaptor whose penalty ρ is a buffer (in the state_dict)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        del self.rho
        self.register_buffer("rho", torch.tensor(1.0))


@pytest.mark.parametrize("write", ["in place", ".data", "load_state_dict"])
def test_a_buffer_the_size_depends_on_is_watched(write):
    layer = _RhoBuffer(alpha_init=0.0)
    x = torch.randn(1, 1, 20, 20)
    assert layer(x).shape[-2:] == (15, 15)
    if write == "in place":
        layer.rho.fill_(0.8)
    elif write == ".data":
        layer.rho.data.fill_(0.8)
    else:
        layer.load_state_dict({"alpha": layer.alpha.detach().clone(), "rho": torch.tensor(0.8)})
    assert layer(x).shape[-2:] == (12, 12)  # s(σ_p) = 0.8 · 0.75 = 0.6


def test_an_optimiser_step_refreshes_the_whole_model_with_one_read(monkeypatch):
    model = torch.nn.Sequential(DynOPool2d(0.5), DynOPool2d(0.5), ShapeAdaptorMaxPool2d(alpha_init=0.0))
    model(torch.randn(1, 1, 64, 64))
    opt = torch.optim.Adam(model.parameters(), lr=0.5, fused=True)
    for m in model:
        m.alpha.grad = torch.full_like(m.alpha, -1.0)
    reads = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: reads.append(1) or original(t))
    opt.step()
    assert len(reads) == 1  # one batched read of every layer the step moved
    assert model[0].output_size((64, 64)) == (26, 26)  # 64 / 2.5 = 25.6 → 26
    assert len(reads) == 1


def test_a_frozen_model_never_reads_alpha_again():
    frozen = resizeops.freeze(torch.nn.Sequential(DynOPool2d(0.5)))
    x = torch.randn(1, 1, 20, 20)
    frozen[0].alpha.data.fill_(4.0)
    assert frozen(x).shape[-2:] == (10, 10)
    assert resizeops.refresh_shapes(frozen) == 0


def test_loading_a_state_dict_is_read_at_once():
    layer = DynOPool2d(0.5)
    layer(torch.randn(1, 1, 20, 20))
    layer.load_state_dict({"alpha": torch.tensor([4.0, 4.0])})
    assert layer._host.values == (4.0, 4.0)  # read by the load, not at the next forward
    assert layer._host.sizes[(20, 20)] == (5, 5)


# --- compiled training: a change the layers cannot see is reported, not silent -------------


def test_a_value_changed_behind_a_compiled_model_is_reported():
    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), DynOPool2d(0.5))
    compiled = torch.compile(model, backend="aot_eager")
    x = torch.randn(1, 1, 20, 20)
    assert compiled(x).shape[-2:] == (10, 10)
    resizeops.refresh_shapes(model)  # nothing stale: no error
    with torch.no_grad():
        model[1].alpha.clamp_(min=4.0)  # in place, outside an optimiser step, not refreshed
    compiled(x)  # the compiled graph cannot look at α on the host: it runs with the old size
    with pytest.raises(StaleShapeError, match=r"DynOPool2d '1'.*refresh_shapes"):
        resizeops.refresh_shapes(model)
    assert compiled(x).shape[-2:] == (5, 5)  # refreshed by that read: the right size again
    resizeops.refresh_shapes(model)  # and nothing to report any more


# --- off the CPU (emulated: values not compared on the host, as for a GPU) ------------------


@pytest.fixture
def values_unreadable(monkeypatch):
    """The CPU treated as a device whose values a host check cannot read without a sync."""
    monkeypatch.setattr(resizeops.nn, "_VALUES_READABLE", ())


def test_off_the_cpu_fused_steps_and_in_place_writes_are_seen(values_unreadable):
    layer = DynOPool2d(0.5)
    x = torch.randn(1, 1, 20, 20)
    assert layer(x).shape[-2:] == (10, 10)
    _step(layer, "Adam", -1.0)  # no version bump: the optimiser hook reads
    assert layer(x).shape[-2:] == (8, 8)
    with torch.no_grad():
        layer.alpha.fill_(4.0)  # bumps the version: the forward sees it
    assert layer(x).shape[-2:] == (5, 5)
    resizeops.refresh_shapes(layer)  # nothing out of date: no error


def test_off_the_cpu_a_write_through_data_is_reported_at_the_next_read(values_unreadable):
    layer = DynOPool2d(0.5)
    x = torch.randn(1, 1, 20, 20)
    assert layer(x).shape[-2:] == (10, 10)
    layer.alpha.data.fill_(4.0)  # invisible without a device read: the documented case
    assert layer(x).shape[-2:] == (10, 10)  # the old size, but recorded on the device...
    with pytest.raises(StaleShapeError, match="DynOPool2d"):
        resizeops.refresh_shapes(torch.nn.Sequential(layer))  # ...and reported by the next read
    assert layer(x).shape[-2:] == (5, 5)
    layer.alpha.data.fill_(2.0)
    resizeops.refresh_shapes(layer)  # refresh_shapes before the forward: nothing to report
    assert layer(x).shape[-2:] == (10, 10)


def test_off_the_cpu_an_optimiser_step_reports_a_stale_forward(values_unreadable):
    layer = DynOPool2d(0.5)
    x = torch.randn(1, 1, 20, 20)
    layer(x)
    opt = torch.optim.SGD([layer.alpha], lr=0.1)
    layer.alpha.data.clamp_(min=4.0)  # the manual-clamp idiom through .data
    layer(x).sum().backward()
    with pytest.raises(StaleShapeError, match="refresh_shapes"):
        opt.step()


@pytest.mark.parametrize("cpu_values", [True, False], ids=["cpu", "off-the-cpu"])
def test_an_autosc_adaptor_follows_the_earlier_adaptors(cpu_values, monkeypatch):
    # Under AutoSC's global rule an adaptor's size is a running product over the earlier
    # adaptors' scales: a fused step that moves only the first adaptor's α must move the
    # second one's size too (the hook and the key watch the earlier adaptors' α and ρ).
    if not cpu_values:
        monkeypatch.setattr(resizeops.nn, "_VALUES_READABLE", ())
    first = ShapeAdaptorMaxPool2d(alpha_init=2.19).use_global_size(32)
    second = ShapeAdaptorMaxPool2d(alpha_init=2.19).use_global_size(32, previous=[first])
    model = torch.nn.Sequential(first, second)
    x = torch.randn(1, 1, 32, 32)
    s0 = 0.5 + 0.5 * torch.sigmoid(torch.tensor(2.19)).item()
    assert model(x).shape[-2:] == (round(32 * s0 * s0),) * 2  # 30 → 29 (a local floor of 30·s: 28)
    _step(first, "SGD", 40.0)  # only the first α moves: s1 → 0.5 + 0.5·sigmoid(−17.8) ≈ 0.5
    s1 = first.scale()
    assert model(x).shape[-2:] == (round(32 * s1 * s0),) * 2  # 15: the product, not 16·0.95 of its input
    first.rho = 0.5  # a ρ buffer of an earlier adaptor moves the later size too (its own size: 8)
    assert model(x).shape[-2:] == (round(32 * (0.5 * s1) * s0),) * 2
