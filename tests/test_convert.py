"""resizeops.convert (issue 5 item 2): torchvision models and user models get learnable
resizers (DynOPool, Shape Adaptor in its three modes), run forward and backward, and have
the intended number of resizers where the official code puts them; what cannot be
converted is refused with a message naming it."""

import math

import pytest
import torch
from torch import nn

import resizeops
from resizeops.convert import ShapeAdaptorCell, ShapeAdaptorInvertedResidual, ShapeAdaptorResidualBlock, convert
from resizeops.nn import DynOPool2d, ShapeAdaptor, ShapeAdaptorMaxPool2d
from resizeops.shape_adaptor import adaptors, init_alpha, num_adaptors

torchvision = pytest.importorskip("torchvision")


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
    with pytest.raises(ValueError, match=r"cannot convert `0` \(MaxPool2d.*ceil_mode"):
        convert(torch.nn.Sequential(torch.nn.MaxPool2d(2, ceil_mode=True)), "dynopool")
    with pytest.raises(ValueError, match="cannot convert `1` \\(ConvTranspose2d"):
        convert(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.ConvTranspose2d(1, 1, 2, stride=2)), "dynopool")
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
    adaptor_keys = (".alpha", ".rho", ".input_dim", ".fixed_scale", ".fixed_total")
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
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
    )  # fmt: skip


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
    if mode == "autotl":  # the max-pool (fused cell), the avg-pool (a cell around it), the strided conv
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
    with pytest.raises(ValueError, match="cannot convert EfficientNet.*supported are the VGG family"):
        convert(torchvision.models.efficientnet_b0(num_classes=3), "shape_adaptor", input_dim=32)
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
    with pytest.raises(ValueError, match="`layer2.0` is a Sequential, not a torchvision BasicBlock"):
        convert(res, "shape_adaptor", input_dim=32)
    with pytest.raises(ValueError, match="no position for an adaptor .every block but a stage's first and the last"):
        convert(ResNet(BasicBlock, [1, 1, 1, 1]), "shape_adaptor", input_dim=32, mode="autosc")
    with pytest.raises(ValueError, match="`features.1` is a Sequential, not a torchvision InvertedResidual"):
        mb = torchvision.models.mobilenet_v2(num_classes=3)
        mb.features[1] = nn.Sequential(nn.Conv2d(32, 16, 1))
        convert(mb, "shape_adaptor", input_dim=32)
