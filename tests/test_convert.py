"""resizeops.convert: torchvision and timm models and user models get learnable
resizers (DynOPool, Shape Adaptor in its three modes), run forward and backward, and have
the intended number of resizers where the official code puts them; what cannot be
converted is refused with a message naming it."""

import math
import re

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import resizeops
from resizeops.convert import ShapeAdaptorCell, ShapeAdaptorInvertedResidual, ShapeAdaptorResidualBlock, convert
from resizeops.nn import DynOPool2d, ShapeAdaptor, ShapeAdaptorMaxPool2d
from resizeops.shape_adaptor import adaptors, init_alpha, num_adaptors
from small_models import small_vgg_layers

torchvision = pytest.importorskip("torchvision")

# What a Shape Adaptor adds to a state_dict: α, ρ and the AutoSC size plan.
ADAPTOR_STATE = ("alpha", "rho", "input_dim", "fixed_scale", "fixed_total")


def _unique_resizers(model):
    return list({id(m): m for m in resizeops.nn.resizers(model)}.values())


# (model, number of learnable resizers DynOPool must give: every strided layer, shared where they meet)
DYNOPOOL_MODELS = [
    ("vgg16", 5),  # five max-pools
    ("resnet50", 5),  # stem conv, stem max-pool, and the three strided stages (main path + shortcut share one)
    ("mobilenet_v2", 5),  # stem conv and four stride-2 depthwise convolutions
    ("efficientnet_b0", 5),
]


@pytest.mark.parametrize("name,n", DYNOPOOL_MODELS)
def test_dynopool_converts_torchvision_models(name, n):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=7)
    converted = resizeops.convert(model, "dynopool")
    assert not resizeops.nn.resizers(model)  # a copy: the original is untouched
    pools = _unique_resizers(converted)
    assert len(pools) == n and all(isinstance(p, DynOPool2d) for p in pools)
    assert all(p.ratio == pytest.approx((0.5, 0.5)) for p in pools)
    x = torch.randn(2, 3, 48, 40)
    out = converted(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.alpha.grad is not None and torch.isfinite(p.alpha.grad).all() for p in pools)
    # Initialised at r = 1/stride, the feature maps have the original sizes.
    with torch.no_grad():
        assert converted.eval()(x).shape == model.eval()(x).shape


def test_dynopool_keeps_the_weights_and_shares_residual_resizers():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3)
    converted = convert(model, "dynopool")
    block = converted.layer2[0]
    main, shortcut = block.conv1, block.downsample[0]
    assert isinstance(main, torch.nn.Sequential) and main[0].stride == (1, 1)
    assert torch.equal(main[0].weight, model.layer2[0].conv1.weight)
    assert main[1] is shortcut[1]  # one DynOPool2d (one α) for both paths of the block
    with torch.no_grad():
        main[1].alpha.fill_(1.5)  # r = 2/3: both paths still agree
    assert converted(torch.randn(1, 3, 37, 41)).shape == (1, 3)


def test_dynopool_user_model_exclude_and_refusals():
    seq = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.AvgPool2d(2),
        torch.nn.AdaptiveAvgPool2d(1),  # global pooling stays
    )
    converted = convert(seq, "dynopool", exclude=["4"])
    assert len(_unique_resizers(converted)) == 2
    assert isinstance(converted[4], torch.nn.AvgPool2d) and isinstance(converted[5], torch.nn.AdaptiveAvgPool2d)
    assert converted(torch.randn(1, 3, 32, 32)).shape == (1, 8, 1, 1)
    # A ceil-mode pool converts: DynOPool's rnd(H/2) is its size for every H (a ResNet-D shortcut's).
    ceil = convert(torch.nn.Sequential(torch.nn.MaxPool2d(2, ceil_mode=True)), "dynopool")
    assert ceil(torch.randn(1, 3, 7, 9)).shape == (1, 3, 4, 5)
    # What cannot be converted is refused, every layer named at once, with the `exclude` that keeps them.
    dilated = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.MaxPool2d(2, dilation=2), torch.nn.ReLU(),
                                  torch.nn.MaxPool2d(3, stride=2, dilation=2))  # fmt: skip
    with pytest.raises(ValueError, match=r"cannot convert `1` \(MaxPool2d.*dilation.*; `3` \(MaxPool2d.*dilation.*"
                                         r"exclude=\['1', '3'\]"):  # fmt: skip
        convert(dilated, "dynopool")
    with pytest.raises(ValueError, match="no strided pooling layer"):
        convert(dilated, "dynopool", exclude=["1", "3"])
    with pytest.raises(ValueError, match="cannot convert `1` \\(ConvTranspose2d"):
        convert(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.ConvTranspose2d(1, 1, 2, stride=2)), "dynopool")
    with pytest.raises(ValueError, match=r"`exclude` names \['nope'\], which are not modules"):
        convert(seq, "dynopool", exclude=["nope"])
    with pytest.raises(TypeError, match="`exclude` must be a list of module names"):
        convert(seq, "dynopool", exclude="4")
    with pytest.raises(ValueError, match="`input_size` must be"):
        convert(seq, "dynopool", input_size=(3, 0, 32))
    with pytest.raises(ValueError, match="`min_size` must be an integer ≥ 1, got 0"):
        convert(seq, "dynopool", min_size=0)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['input_dim'\]"):
        convert(seq, "dynopool", input_dim=32)
    with pytest.raises(ValueError, match="no strided pooling layer"):
        convert(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)), "dynopool")
    with pytest.raises(ValueError, match="`method`"):
        convert(seq, "nope")
    with pytest.raises(TypeError, match="`model`"):
        convert("vgg", "dynopool")


class _Mismatched(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.MaxPool2d(2)
        self.b = torch.nn.Conv2d(1, 1, 1, stride=4)

    def forward(self, x):
        return self.a(x) + torch.nn.functional.interpolate(self.b(x), scale_factor=2.0)


def test_dynopool_refuses_tied_layers_of_different_strides():
    with pytest.raises(ValueError, match="must keep one output size"):
        convert(_Mismatched(), "dynopool")


class _TwoResolutions(nn.Module):
    """HRNet's fuse in small: a strided branch brought back to full resolution and added to it."""

    def __init__(self, to_size: bool):
        super().__init__()
        self.to_size = to_size
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2.0)

    def forward(self, x):
        x = self.stem(x)
        low = self.down(x)
        # The fixed ×2 is exact only while `down` halves; resizing to the partner's size always is.
        back = F.interpolate(low, size=x.shape[-2:]) if self.to_size else self.up(low)
        return x + back


def _scale_every_alpha(model, factor):
    with torch.no_grad():
        for p in _unique_resizers(model):
            p.alpha.mul_(factor)
    resizeops.refresh_shapes(model)


def test_dynopool_refuses_a_fixed_upsampling_merged_with_a_moving_size():
    with pytest.raises(ValueError) as e:
        convert(_TwoResolutions(to_size=False), "dynopool")
    text = str(e.value)
    # The merge, the fixed up-sampling on the way and the learnable layers involved are named.
    assert "`add` in the forward of _TwoResolutions" in text and "`up` (Upsample(scale_factor=2.0" in text
    assert "`down`" in text and "with every α ×1.1" in text
    # Sizing the branch to its partner works whatever the scales: accepted, and it survives them moving.
    model = convert(_TwoResolutions(to_size=True), "dynopool")
    _scale_every_alpha(model, 1.1)
    out = model(torch.randn(2, 3, 45, 50))
    out.sum().backward()
    assert out.shape == (2, 4, 20, 23)


class _LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                                      nn.ReLU(), nn.MaxPool2d(2))  # fmt: skip
        self.fc = nn.Linear(16 * 5 * 5, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


def test_dynopool_refuses_layers_whose_size_a_fixed_layer_needs():
    with pytest.raises(ValueError, match=r"does not run on a probe input of 2×1×224×224.*pass input_size"):
        convert(_LeNet(), "dynopool")
    with pytest.raises(ValueError) as e:
        convert(_LeNet(), "dynopool", input_size=(1, 32, 32))
    text = str(e.value)
    # The flattened map feeds a fixed Linear: neither pool may move; both named.
    assert "`fc` (Linear(in_features=400" in text and "`features.5`" in text and "`features.2`" in text
    assert text.endswith("none of its strided layers can become learnable")


class _Untraceable(nn.Module):
    def __init__(self, residual: bool):
        super().__init__()
        self.residual = residual
        self.main = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.short = nn.Conv2d(3, 4, 1, stride=2)

    def forward(self, x):
        if x.shape[-1] > 10_000:  # shape-dependent control flow: torch.fx cannot trace it
            x = x[..., ::2]
        out = self.main(x)
        return out + self.short(x) if self.residual else out


def test_dynopool_model_fx_cannot_trace_is_probed_as_a_whole():
    with pytest.warns(UserWarning, match="torch.fx could not trace _Untraceable.*not shared"):
        model = convert(_Untraceable(residual=False), "dynopool")
    _scale_every_alpha(model, 1.1)
    assert model(torch.randn(1, 3, 33, 33)).shape == (1, 4, 15, 15)
    # Unshared, the residual's two paths would disagree as soon as their scales move: refused, and an
    # in-place conversion leaves the model as it was.
    net = _Untraceable(residual=True)
    with pytest.raises(ValueError, match=r"fx cannot trace _Untraceable.*fails when the scales move.*`main`, `short`"):
        convert(net, "dynopool", inplace=True)
    assert isinstance(net.main, nn.Conv2d) and net.main.stride == (2, 2) and not _unique_resizers(net)


def test_dynopool_fx_leaves_what_it_cannot_trace_whole():
    class Gate(nn.Module):  # untraceable, but keeps the size: kept whole, the rest is traced
        def forward(self, x):
            return x if x.shape[-1] > 10_000 else x * 1.0

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.gate = nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(3, 4, 1, stride=2), Gate()

        def forward(self, x):
            return self.gate(self.a(x)) + self.b(x)

    model = convert(Net(), "dynopool")
    assert model.a[1] is model.b[1]  # the paths still share their scale
    _scale_every_alpha(model, 1.3)
    assert model(torch.randn(1, 3, 31, 31)).shape == (1, 4, 12, 12)


# =============================================================================
# Shape Adaptor
# =============================================================================


# Where the official code (lorenmt/shape-adaptor model_list.py) puts the adaptors, as module names of
# the converted torchvision model. VGG: features.k.1 is the adaptor after the ReLU features.k (ReLUs of
# conv 1..13 are at 1 3 6 8 11 13 15 18 20 22 25 27 29, max-pools at 4 9 16 23 30).
SA_PLACEMENT = {
    ("vgg16", "standard", 32): ["features.1.1", "features.8.1", "features.15.1", "features.22.1"],  # conv 1 4 7 10
    ("vgg16", "standard", 224): ["features.1.1", "features.6.1", "features.11.1", "features.15.1", "features.20.1",
                                 "features.25.1"],  # conv 1 3 5 7 9 11
    ("vgg16", "autosc", 32): ["features.1.1", "features.18.1"],  # conv 1 8: 8 candidates (no ReLU before a pool)
    ("vgg16", "autosc", 64): ["features.1.1", "features.11.1", "features.18.1", "features.25.1"],  # 4 from 64 on
    ("vgg16", "autosc", 224): ["features.1.1", "features.11.1", "features.18.1", "features.25.1"],  # conv 1 5 8 11
    ("vgg16", "autotl", 32): ["features.4", "features.9", "features.16", "features.23", "features.30"],
    ("resnet50", "standard", 32): ["maxpool", "layer2.0.adaptor", "layer3.0.adaptor", "layer3.4.adaptor"],
    ("resnet50", "standard", 224): ["maxpool", "layer1.1.adaptor", "layer2.1.adaptor", "layer3.0.adaptor",
                                    "layer3.2.adaptor", "layer3.5.adaptor"],
    ("resnet50", "autosc", 32): ["layer1.1.adaptor", "layer3.2.adaptor"],  # gap (16 − 3 − 1) / 2 = 6
    ("resnet50", "autosc", 64): ["layer1.1.adaptor", "layer3.2.adaptor"],  # ResNet: 2 up to 64 included
    ("resnet50", "autosc", 224): ["layer1.1.adaptor", "layer2.2.adaptor", "layer3.2.adaptor", "layer3.5.adaptor"],
    ("resnet50", "autotl", 32): ["maxpool.0", "maxpool.1", "layer2.0.adaptor", "layer3.0.adaptor", "layer4.0.adaptor"],
    ("mobilenet_v2", "standard", 32): ["features.0.3", "features.4.adaptor", "features.9.adaptor", "features.13.adaptor"],
    ("mobilenet_v2", "standard", 224): ["features.0.3", "features.3.adaptor", "features.6.adaptor", "features.9.adaptor",
                                        "features.12.adaptor", "features.15.adaptor"],
    ("mobilenet_v2", "autosc", 32): ["features.3.adaptor", "features.9.adaptor", "features.13.adaptor"],
    ("mobilenet_v2", "autosc", 64): ["features.3.adaptor", "features.8.adaptor", "features.11.adaptor",
                                     "features.15.adaptor"],
    ("mobilenet_v2", "autosc", 224): ["features.3.adaptor", "features.8.adaptor", "features.11.adaptor",
                                      "features.15.adaptor"],
    ("mobilenet_v2", "autotl", 32): ["features.0.3", "features.2.adaptor", "features.4.adaptor", "features.7.adaptor",
                                     "features.14.adaptor"],
}  # fmt: skip
SA_ALPHA = {"autosc": 2.19, "autotl": -2.19}

_TV = {}


def _tv_model(name):
    """One torchvision model per name for the module (conversions copy it; the tests check it stays untouched)."""
    if name not in _TV:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(num_classes=5)
        if name == "vgg16":
            model.classifier = nn.Linear(512 * 7 * 7, 5)  # 120M fewer parameters; conversion touches `features` only
        _TV[name] = model
    return _TV[name]


def _names(model):
    return [n for n, m in model.named_modules() if isinstance(m, ShapeAdaptor)]


def _feature_size(model, x):
    sizes = []
    mod = model.layer4 if hasattr(model, "layer4") else model.features
    h = mod.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
    try:
        out = model(x)
    finally:
        h.remove()
    return out, sizes[0]


@pytest.mark.parametrize("name,mode,dim", sorted(SA_PLACEMENT))
def test_shape_adaptor_placement_is_the_official_one(name, mode, dim):
    model = _tv_model(name)
    converted = convert(model, "shape_adaptor", input_dim=dim, mode=mode)
    assert _names(converted) == SA_PLACEMENT[name, mode, dim]
    alpha = SA_ALPHA.get(mode) or init_alpha(dim, 8, len(SA_PLACEMENT[name, mode, dim]))
    assert all(a.alpha.item() == pytest.approx(alpha, abs=1e-6) for a in adaptors(converted))
    if mode == "standard":
        assert len(adaptors(converted)) == num_adaptors(dim)  # Eq. 3: 4 at 32, 6 at 224
        assert not any(isinstance(m, nn.MaxPool2d) for m in converted.modules())  # all human down-sampling gone
        # Strides are gone, but for the 1×1 stride-2 shortcuts that are residual cells' low branches.
        convs = [m for m in converted.modules() if isinstance(m, nn.Conv2d)]
        assert all(m.stride == (1, 1) or (m.kernel_size == (1, 1) and m.stride == (2, 2)) for m in convs)


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "mobilenet_v2"])
@pytest.mark.parametrize("mode", ["standard", "autosc", "autotl"])
def test_shape_adaptor_converts_torchvision_models(name, mode):
    model = _tv_model(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    text = repr(model)
    converted = convert(model, "shape_adaptor", input_dim=32, mode=mode)
    # The original is untouched.
    assert repr(model) == text and not _names(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # Every kept weight keeps its name and value; new are only the adaptors' α and buffers
    # (ρ; AutoSC's size rule) and new shortcut projections.
    after = converted.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    adaptor_keys = tuple("." + k for k in ADAPTOR_STATE)
    assert all(k.endswith(adaptor_keys) or ".downsample." in k for k in set(after) - set(before))
    n = len(SA_PLACEMENT[name, mode, 32])
    sas = adaptors(converted)
    assert len(sas) == n
    x = torch.randn(2, 3, 32, 32)
    out, size = _feature_size(converted, x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert all(a.alpha.grad is not None and torch.isfinite(a.alpha.grad) for a in sas)
    if mode == "standard":
        # Eq. 4: D_in·s^N = D_out = 8, up to the floor at each adaptor (32 → 22 → 15 → 10 → 7).
        d, s = 32, sas[0].scale()
        for _ in range(n):
            d = max(math.floor(d * s), 1)
        assert size == (d, d) == (7, 7)
    else:
        assert size == (1, 1)  # the human network's 1×1 at 32 (AutoSC's ceil-mode pools keep it ≥ 1)


def test_shape_adaptor_mobilenet_v2_standard_at_64_non_square():
    model = _tv_model("mobilenet_v2")
    converted = convert(model, "shape_adaptor", input_dim=64)
    sas = adaptors(converted)
    assert len(sas) == num_adaptors(64) == 5
    assert sas[0].scale() == pytest.approx((8 / 64) ** (1 / 5), abs=1e-4)
    out, size = _feature_size(converted, torch.randn(2, 3, 64, 64))
    assert size == (7, 7)  # 64 → 42 → 27 → 17 → 11 → 7
    out.sum().backward()
    assert all(torch.isfinite(a.alpha.grad) for a in sas)
    # H ≠ W: s applies to each axis.
    _, size = _feature_size(converted, torch.randn(2, 3, 64, 48))
    assert size == (7, 5)  # 48 → 31 → 20 → 13 → 8 → 5


def test_shape_adaptor_resnet_cells_reuse_the_shortcut():
    model = _tv_model("resnet50")
    converted = convert(model, "shape_adaptor", input_dim=32)
    assert converted.conv1.stride == (1, 1) and isinstance(converted.maxpool, ShapeAdaptorMaxPool2d)
    cell = converted.layer2[0]  # a stage's first block: its own shortcut is the low branch, at stride 2
    assert isinstance(cell, ShapeAdaptorResidualBlock) and cell.adaptor.residual and cell.adaptor.k == 2
    assert cell.conv2.stride == (1, 1) and cell.downsample[0].stride == (2, 2)
    assert cell.conv2 is not model.layer2[0].conv2 and torch.equal(cell.downsample[0].weight,
                                                                    model.layer2[0].downsample[0].weight)
    new = converted.layer3[4]  # an inner block: a new 1×1 stride-2 projection
    assert isinstance(new, ShapeAdaptorResidualBlock) and model.layer3[4].downsample is None
    assert new.downsample[0].stride == (2, 2) and new.downsample[0].kernel_size == (1, 1)
    plain = converted.layer4[0]  # no adaptor: loses its stride, keeps a stride-1 projection
    assert plain.conv2.stride == (1, 1) and plain.downsample[0].stride == (1, 1)
    tl = convert(model, "shape_adaptor", input_dim=224, mode="autotl")
    assert tl.conv1.stride == (1, 1) and all(isinstance(m, ShapeAdaptorMaxPool2d) for m in tl.maxpool)
    assert tl.layer2[0].downsample[0].stride == (2, 2) and tl.layer2[1].conv2.stride == (1, 1)
    sc = convert(model, "shape_adaptor", input_dim=32, mode="autosc")
    assert sc.conv1.stride == (2, 2) and isinstance(sc.maxpool, nn.MaxPool2d)  # human down-sampling kept
    assert sc.layer2[0].conv2.stride == (2, 2) and sc.layer3[2].downsample[0].stride == (2, 2)


def test_shape_adaptor_autosc_pools_in_ceil_mode():
    sc = convert(_tv_model("vgg16"), "shape_adaptor", input_dim=32, mode="autosc")
    cell = sc.features[1][1]
    assert isinstance(cell, ShapeAdaptorCell) and cell.low.ceil_mode and cell.scale() == pytest.approx(0.9497, abs=1e-4)
    assert all(m.ceil_mode for m in sc.features if isinstance(m, nn.MaxPool2d))
    mb = convert(_tv_model("mobilenet_v2"), "shape_adaptor", input_dim=32, mode="autosc")
    assert isinstance(mb.features[3], ShapeAdaptorInvertedResidual) and mb.features[3].adaptor.low.ceil_mode
    tl = convert(_tv_model("vgg16"), "shape_adaptor", input_dim=224, mode="autotl")
    assert all(isinstance(tl.features[i], ShapeAdaptorMaxPool2d) for i in (4, 9, 16, 23, 30))


def _user_vgg():
    return nn.Sequential(*small_vgg_layers(), nn.AdaptiveAvgPool2d(1))


@pytest.mark.parametrize("mode,n", [("standard", 4), ("autosc", 2), ("autotl", 3)])
def test_shape_adaptor_user_models(mode, n):
    torch.manual_seed(0)
    seq = _user_vgg()
    converted = convert(seq, "shape_adaptor", input_dim=32, mode=mode)
    assert len(adaptors(converted)) == n
    out = converted(torch.randn(2, 3, 32, 40))
    assert out.shape == (2, 16, 1, 1)
    out.sum().backward()
    if mode == "standard":  # candidates: the ReLUs of conv 1..5 (5 positions); gap 5/4 → conv 1 2 3 4
        assert _names(converted) == ["2.1", "5.1", "9.1", "12.1"]
        assert isinstance(converted[6], nn.Identity) and converted[7].stride == (1, 1)
    if mode == "autosc":  # not before a pool, not a strided conv's: conv 1 and 5 (of 1, 5)
        assert _names(converted) == ["2.1", "16.1"] and converted[7].stride == (2, 2)
    if mode == "autotl":  # the max-pool (ShapeAdaptorMaxPool2d), the avg-pool (a cell around it), the strided conv
        assert isinstance(converted[6], ShapeAdaptorMaxPool2d) and isinstance(converted[13], ShapeAdaptorCell)
        assert isinstance(converted[9][1], ShapeAdaptorMaxPool2d) and converted[7].stride == (1, 1)
    # A user ResNet of torchvision blocks.
    from torchvision.models.resnet import BasicBlock, ResNet

    res = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=3)  # resnet18
    conv = convert(res, "shape_adaptor", input_dim=32, mode=mode)
    assert _names(conv) == {
        "standard": ["maxpool", "layer1.1.adaptor", "layer2.1.adaptor", "layer3.1.adaptor"],  # 8 candidates, gap 2
        "autosc": ["layer1.1.adaptor", "layer3.1.adaptor"],  # 3 candidates, official gap (8 − 3 − 1) / 2 = 2
        "autotl": ["maxpool.0", "maxpool.1", "layer2.0.adaptor", "layer3.0.adaptor", "layer4.0.adaptor"],
    }[mode]
    out = conv(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 3)


def test_shape_adaptor_converted_model_trains_and_freezes():
    torch.manual_seed(0)
    model = convert(_user_vgg(), "shape_adaptor", input_dim=32)
    x = torch.randn(4, 3, 32, 32)
    opt = resizeops.shape_adaptor.AlternatingOptimizer(
        model, torch.optim.SGD(resizeops.shape_adaptor.weight_parameters(model), lr=0.01), every=1,
        input_dim=32, limit_dim=16)  # fmt: skip
    before = [a.alpha.item() for a in adaptors(model)]
    opt.step(lambda: model(x).square().mean())
    assert [a.alpha.item() for a in adaptors(model)] != before
    frozen = resizeops.freeze(model)
    assert frozen(x).shape == (4, 16, 1, 1)


def test_shape_adaptor_num_inplace_and_default_clamp():
    seq = _user_vgg()
    same = convert(seq, "shape_adaptor", input_dim=32, num=2, output_dim=16, inplace=True)
    assert same is seq and len(adaptors(seq)) == 2
    assert adaptors(seq)[0].alpha.item() == pytest.approx(init_alpha(32, 16, 2))
    small = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    with pytest.warns(UserWarning, match="default of 4 adaptors exceeds the 2 positions"):
        conv = convert(small, "shape_adaptor", input_dim=32)
    assert len(adaptors(conv)) == 2 and adaptors(conv)[0].alpha.item() == pytest.approx(init_alpha(32, 8, 2))
    # New shortcut projections follow the model's dtype and train/eval mode.
    from torchvision.models.resnet import BasicBlock, ResNet

    res = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=3).double().eval()
    conv = convert(res, "shape_adaptor", input_dim=32)
    assert conv.layer1[1].downsample[0].weight.dtype == torch.float64 and not conv.layer1[1].downsample[1].training
    assert conv(torch.randn(2, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64


def test_shape_adaptor_refusals():
    seq = _user_vgg()
    with pytest.raises(ValueError, match="`input_dim`.*required"):
        convert(seq, "shape_adaptor")
    with pytest.raises(ValueError, match="`mode` must be one of"):
        convert(seq, "shape_adaptor", input_dim=32, mode="auto")
    with pytest.raises(ValueError, match="`num`.*≥ 1, got 0"):
        convert(seq, "shape_adaptor", input_dim=32, num=0)
    with pytest.raises(TypeError, match="`num`"):
        convert(seq, "shape_adaptor", input_dim=32, num=2.5)
    with pytest.raises(TypeError, match="`input_dim`"):
        convert(seq, "shape_adaptor", input_dim="32")
    with pytest.raises(ValueError, match="`input_dim`"):
        convert(seq, "shape_adaptor", input_dim=-1)
    with pytest.raises(ValueError, match="`input_dim`=3 leaves no room"):
        convert(seq, "shape_adaptor", input_dim=3)
    with pytest.raises(ValueError, match="`r1` < `r2`"):
        convert(seq, "shape_adaptor", input_dim=32, r1=1.0, r2=0.5)
    with pytest.raises(TypeError, match="unknown option.*'exclude'"):
        convert(seq, "shape_adaptor", input_dim=32, exclude=["0"])
    with pytest.raises(ValueError, match="`num`=6 adaptors, but the VGG has only 5 positions"):
        convert(seq, "shape_adaptor", input_dim=32, num=6)
    with pytest.raises(ValueError, match="autotl.*3 down-sampling layers; `num`=2"):
        convert(seq, "shape_adaptor", input_dim=32, mode="autotl", num=2)
    branchy = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), _Branches(), nn.MaxPool2d(2))
    with pytest.raises(ValueError, match=r"cannot convert Sequential: `2` \(_Branches\) merges its paths otherwise "
                                         r"than by a residual add.*supported are VGG-like stacks"):  # fmt: skip
        convert(branchy, "shape_adaptor", input_dim=32)
    with pytest.raises(ValueError, match=r"cannot convert Sequential: .*`1` \(GELU\)"):
        convert(nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU()), "shape_adaptor", input_dim=32)
    with pytest.raises(ValueError, match="cannot convert Linear"):
        convert(nn.Linear(2, 2), "shape_adaptor", input_dim=32)
    # Converting twice, or a DynOPool network.
    once = convert(seq, "shape_adaptor", input_dim=32)
    with pytest.raises(ValueError, match=r"already holds learnable resizers \(`2.1`\)"):
        convert(once, "shape_adaptor", input_dim=32)
    with pytest.raises(ValueError, match=r"already holds learnable resizers \(`0.1`\)"):  # a DynOPool2d
        convert(convert(nn.Sequential(nn.Conv2d(3, 4, 3, stride=2)), "dynopool"), "shape_adaptor", input_dim=32)
    from torchvision.models.resnet import BasicBlock, ResNet

    res = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=3)
    res.layer2[0] = nn.Sequential(*res.layer2[0].children())
    with pytest.raises(ValueError, match=r"`layer2.0` \(Sequential\) sits between residual blocks but is none"):
        convert(res, "shape_adaptor", input_dim=32)
    with pytest.raises(ValueError, match="no position for an adaptor .every block but a stage's first and the last"):
        convert(ResNet(BasicBlock, [1, 1, 1, 1]), "shape_adaptor", input_dim=32, mode="autosc")
    with pytest.raises(ValueError, match=r"`features.5` \(Sequential\) sits between inverted-residual blocks but"):
        mb = torchvision.models.mobilenet_v2(num_classes=3)
        mb.features[5] = nn.Sequential(nn.Conv2d(32, 32, 3, stride=2, padding=1))  # a plain strided conv
        convert(mb, "shape_adaptor", input_dim=32)
    # A strided layer after the last block: no family puts it anywhere.
    late = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=3)
    late.avgpool = nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.AdaptiveAvgPool2d(1))
    with pytest.raises(ValueError, match=r"`avgpool` \(Sequential\) down-samples after the last block"):
        convert(late, "shape_adaptor", input_dim=32)


class _Branches(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], 1)


# =============================================================================
# timm's families, both methods: recognised by structure; what is accepted survives moving scales
# =============================================================================

TIMM_MODELS = ["resnet18", "resnet26d", "vgg11", "mobilenetv2_050", "mobilenetv3_small_050", "efficientnet_b0",
               "regnetx_002", "convnext_atto", "hrnet_w18_small"]  # fmt: skip
# What each method refuses, and what the refusal must name.
TIMM_REFUSED = {
    ("dynopool", "hrnet_w18_small"): [
        r"cannot make every strided layer of HighResolutionNet learnable",
        r"`stage2\.0\.fuse_layers\.0\.1\.2` \(Upsample\(scale_factor=2\.0",  # the fixed ×2 brought back
        r"`transition1\.1\.0\.0`", r"`conv1`", r"`conv2`",  # the strided layers it scales back
        r"none of its strided layers can become learnable",
    ],
    ("shape_adaptor", "hrnet_w18_small"): [r"cannot convert HighResolutionNet: its forward is not one chain"],
}
# Where the standard placement puts the adaptors at input 32 (4 adaptors, Eq. 3) in timm's models.
TIMM_SA_PLACEMENT = {
    "resnet26d": ["maxpool", "layer1.1.adaptor", "layer2.1.adaptor", "layer3.1.adaptor"],
    "vgg11": ["features.1.1", "features.4.1", "features.9.1", "features.14.1"],
    "mobilenetv2_050": ["bn1.act.1", "blocks.2.0.adaptor", "blocks.3.2.adaptor", "blocks.4.2.adaptor"],
    "regnetx_002": ["stem.bn.act.1", "s3.b1.adaptor", "s3.b4.adaptor", "s4.b3.adaptor"],
    "convnext_atto": ["stem.2", "stages.1.downsample.2", "stages.2.blocks.0.adaptor", "stages.2.blocks.4.adaptor"],
}


def _resizer_sizes(model, x):
    """The output size of every resizer call in a forward."""
    sizes, hooks = [], [m.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
                        for m in _unique_resizers(model)]  # fmt: skip
    try:
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return out, sizes


@pytest.mark.parametrize("method", ["dynopool", "shape_adaptor"])
@pytest.mark.parametrize("name", TIMM_MODELS)
def test_timm_families_convert_and_survive_moving_scales(name, method):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    # vgg11's head (a 7×7 conv to 4096 channels, 100M weights) made narrow: conversion leaves it as it is.
    narrow = {"mlp_ratio": 1 / 64} if name == "vgg11" else {}
    model = timm.create_model(name, pretrained=False, num_classes=3, **narrow)
    options = {"input_dim": 32} if method == "shape_adaptor" else {}
    if (method, name) in TIMM_REFUSED:
        with pytest.raises(ValueError) as e:
            convert(model, method, **options)
        for pattern in TIMM_REFUSED[method, name]:
            assert re.search(pattern, str(e.value)), (pattern, str(e.value))
        return
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert(model, method, **options)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # the original is untouched
    if method == "shape_adaptor":
        after = converted.state_dict()  # every weight keeps its name and value; new: α and new shortcuts
        assert all(torch.equal(after[k], v) for k, v in before.items())
        new_keys = set(after) - set(before)  # α, the adaptors' buffers (ρ, the AutoSC plan) and new shortcuts
        assert all(k.rsplit(".", 1)[-1] in ADAPTOR_STATE or ".downsample." in k for k in new_keys)
        if name in TIMM_SA_PLACEMENT:
            assert _names(converted) == TIMM_SA_PLACEMENT[name]
    layers = _unique_resizers(converted)
    assert len(layers) >= 4
    x = torch.randn(2, 3, 40, 40)
    out, sizes = _resizer_sizes(converted, x)
    assert out.shape == (2, 3)
    out.sum().backward()
    # Every α moved so that sizes change: the model still runs forward and backward.
    with torch.no_grad():
        for p in layers:
            p.alpha.mul_(1.1) if method == "dynopool" else p.alpha.add_(1.0)
    resizeops.refresh_shapes(converted)
    out, moved = _resizer_sizes(converted, x)
    assert moved != sizes
    out.sum().backward()
    # An optimiser step that moves α: still runs.
    alphas = [p.alpha for p in layers]
    start = [a.detach().clone() for a in alphas]
    torch.optim.Adam(alphas, lr=0.05).step()  # each α moves by about 0.05 against its gradient
    assert any(not torch.equal(a, s) for a, s in zip(alphas, start))
    resizeops.refresh_shapes(converted)
    converted(x).sum().backward()


def test_dynopool_resnet_d_shortcut_shares_the_main_path_scale():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("resnet26d", pretrained=False, num_classes=3)
    converted = convert(model, "dynopool")
    for stage in ("layer2", "layer3", "layer4"):
        block = getattr(converted, stage)[0]
        # The ceil-mode 2×2 average-pool shortcut is the main path's DynOPool2d: one α, one size always.
        assert block.downsample[0] is block.conv2[1]
    # At the initial scales, DynOPool's rnd(H/2) is the ceil-mode pool's size: the original's sizes, odd
    # inputs included.
    x = torch.randn(2, 3, 45, 39)
    with torch.no_grad():
        assert converted.eval().forward_features(x).shape == model.eval().forward_features(x).shape
    _scale_every_alpha(converted, 1.1)
    converted.train()(x).sum().backward()
    # Keeping the shortcut's pool (the previous advice) would break the residual add as soon as α moves:
    # refused, with the main path's layer and the kept pool named.
    with pytest.raises(ValueError) as e:
        convert(model, "dynopool", exclude=["layer2.0.downsample.0"])
    text = str(e.value)
    assert "`add` in `layer2.0` (Bottleneck)" in text and "`layer2.0.conv2`" in text
    assert "fixed resizing on the way: `layer2.0.downsample.0` (AvgPool2d" in text
    assert "exclude=['layer2.0.conv2', 'layer2.0.downsample.0']" in text  # the user's exclude kept


def test_shape_adaptor_refuses_a_conversion_that_does_not_run_at_its_input_dim():
    timm = pytest.importorskip("timm")
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=3)
    # AutoSC keeps ConvNeXt's down-sampling and adds adaptors: at 24 pixels the last unpadded 2×2
    # down-sampling conv meets a 1×1 map. Refused at convert, naming it, rather than at the first step.
    with pytest.raises(ValueError, match=r"cannot convert ConvNeXt: converted, it does not run on a 2×3×24×24 input "
                                         r"\(`input_dim`=24\) as converted: `stages.3.downsample.1` \(Conv2d\) fails"):
        convert(model, "shape_adaptor", input_dim=24, mode="autosc")
    assert len(adaptors(convert(model, "shape_adaptor", input_dim=128, mode="autosc"))) == 4
