"""Receptive-field analysis (docs/SEMANTICS.md, Receptive fields): hand-computed nets, learnable resizers, the zoo, the CLI."""

import math
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import resizeops
from resizeops import rf
from resizeops.nn import DynOPool2d, ElasticBottleneck, ShapeAdaptor, ShapeAdaptorMaxPool2d

torchvision = pytest.importorskip("torchvision")
INF = math.inf


def row(report, name):
    hits = [r for r in report.layers if r.name == name]
    assert len(hits) == 1, (name, [r.name for r in report.layers])
    return hits[0]


# -----------------------------------------------------------------------------
# Hand-computed: r ← r + (k_eff − 1)·m, m ← m·s, k_eff = d(k − 1) + 1
# -----------------------------------------------------------------------------


def sequential_net():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # r 3, m 1
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),  # r 3 + 2 = 5, m 2
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 4, 3, dilation=2, padding=2),  # k_eff 5: r 5 + 4·2 = 13 (undilated: 5 + 2·2 = 9)
        nn.MaxPool2d(2),  # r 13 + 1·2 = 15, m 4
        nn.Conv2d(4, 4, (1, 5), padding=(0, 2)),  # H: 15; W: 15 + 4·4 = 31
        nn.AdaptiveAvgPool2d(1),  # ∞
        nn.Flatten(),
        nn.Linear(4, 10),
    )


def test_sequential_hand_computed():
    rep = rf.analyze(sequential_net(), 32)
    assert [r.name for r in rep.layers if r.is_layer or r.kind == "global"] == ["0", "2", "4", "5", "6", "7", "9"]
    expect = {  # name: (kernel, stride, m, r_min, size)
        "0": ((3, 3), (1, 1), (1, 1), (3, 3), (32, 32)),
        "2": ((3, 3), (2, 2), (2, 2), (5, 5), (16, 16)),
        "4": ((5, 5), (1, 1), (2, 2), (13, 13), (16, 16)),
        "5": ((2, 2), (2, 2), (4, 4), (15, 15), (8, 8)),
        "6": ((1, 5), (1, 1), (4, 4), (15, 31), (8, 8)),
    }
    for name, (k, s, m, r, size) in expect.items():
        got = row(rep, name)
        assert (got.kernel, got.stride, got.m, got.r_min, got.r_max, got.size) == (k, s, m, r, r, size), name
    assert row(rep, "4").in_r_min == (5, 5)
    for name in ("7", "9"):  # global pooling and the head
        assert row(rep, name).r_min == (INF, INF) and row(rep, name).is_infinite
    # Eq. 7 per axis: the largest of r_min and k·m over the feature extractor (15; W: 31 from layer 6)
    assert rep.min_feasible_resolution == (15, 31)
    assert rep.max_feasible_resolution == (15, 31)
    assert rep.min_feasible_layers() == ("5: r_min 15", "6: r_min 31")


def test_ignore_dilation_counts_the_undilated_kernel():
    rep = rf.analyze(sequential_net(), 32, ignore_dilation=True)
    assert row(rep, "4").kernel == (3, 3) and row(rep, "4").r_min == (9, 9)
    assert row(rep, "6").r_min == (11, 27)
    assert rep.min_feasible_resolution == (11, 27)


def test_k_times_m_sets_the_minimum_resolution_when_skips_keep_r_min_small():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 4, stride=4)  # r 4, m 4
            self.dw = nn.Conv2d(4, 4, 7, padding=3, groups=4)  # r 4 + 6·4 = 28; k·m = 28

        def forward(self, x):
            x = self.stem(x)
            return x + self.dw(x)  # r_min 4 at the join

    rep = rf.analyze(Net(), 64)
    assert row(rep, "dw").r_min == (28, 28)
    assert [r.r_min for r in rep.layers if r.kind == "join"] == [(4, 4)]
    # k·m uses the cumulative stride at the layer's output (docs/SEMANTICS.md): an 8×8 stride-8 patchify
    # stem counts 8·8 = 64, more than the 5×5 after it (r 8 + 4·8 = 40, k·m 40).
    big = nn.Sequential(nn.Conv2d(3, 4, 8, stride=8), nn.Conv2d(4, 4, 5, padding=2))
    rep = rf.analyze(big, 64)
    assert rep.layers[-1].r_min == (40, 40) and rep.min_feasible_resolution == (64, 64)
    assert rep.min_feasible_layers()[0] == "0: k·m = 8·8"
    strided = nn.Sequential(nn.Conv2d(3, 4, 2, stride=2), nn.Conv2d(4, 4, 3, stride=4))  # r 2 + 2·2 = 6, k·m = 3·8
    rep = rf.analyze(strided, 64)
    assert rep.layers[-1].r_min == (6, 6) and rep.min_feasible_resolution == (24, 24)


class Branching(nn.Module):
    """Two paths of different kernels joined by add, then concatenated with the skip."""

    def __init__(self):
        super().__init__()
        self.c0 = nn.Conv2d(3, 4, 3, stride=2, padding=1)  # r 3, m 2
        self.a = nn.Conv2d(4, 4, 3, padding=1)  # r 3 + 2·2 = 7
        self.b = nn.Conv2d(4, 4, 5, padding=2)  # r 3 + 4·2 = 11
        self.c = nn.Conv2d(8, 4, 3, padding=1)  # r_min 3 + 4 = 7, r_max 11 + 4 = 15

    def forward(self, x):
        x = self.c0(x)
        y = self.a(x) + self.b(x)
        z = torch.cat([y, x], dim=1)
        return self.c(z)


def test_branches_join_min_and_max_over_paths():
    rep = rf.analyze(Branching(), 32)
    joins = [r for r in rep.layers if r.kind == "join"]
    assert [(r.op, r.r_min, r.r_max) for r in joins] == [("add", (7, 7), (11, 11)), ("cat", (3, 3), (11, 11))]
    assert joins[0].in_r_min == (7, 7)
    c = row(rep, "c")
    assert (c.r_min, c.r_max, c.m, c.size) == ((7, 7), (15, 15), (2, 2), (16, 16))
    assert rep.min_feasible_resolution == (11, 11)  # r_min of b; k·m = 5·2 = 10
    assert rep.max_feasible_resolution == (15, 15)


def test_join_keeps_extremes_per_cumulative_stride():
    # A path (r 10, m 1) and a path (r 8, m 4) meet; after a 3×3 kernel they are 12 and 16:
    # r_min 12, r_max 16 (keeping only the smallest and the largest r before the kernel says 16 and 12).
    a = rf._Axis({1.0: (10.0, 10.0)})
    b = rf._Axis({4.0: (8.0, 8.0)})
    j = rf._Axis.join([a, b]).apply(3, 1)
    assert (j.r_min, j.r_max, j.m) == (12, 16, 4)
    g = rf._Axis.join([j, rf._Axis.infinite()])
    assert (g.r_min, g.r_max, g.r_max_finite) == (12, INF, 16)


def test_functional_ops_interpolation_and_reshapes():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)  # r 3
            self.up = nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1)  # reads ≤ 2 inputs: k 2, s ½

        def forward(self, x):
            x = self.conv(x)
            p = F.max_pool2d(x, 2)  # r 4, m 2
            u = F.interpolate(p, scale_factor=2, mode="bilinear")  # k 2, s ½: r 4 + 2 = 6, m 1
            t = self.up(p)  # r 4 + 1·2 = 6, m 1
            n = F.interpolate(p, size=x.shape[-2:], mode="nearest")  # k 1: r 4, m 1
            sub = x[:, :, ::2, ::2]  # k 1, s 2: r 3, m 2
            s2d = F.pixel_unshuffle(x, 2)  # k 2, s 2: r 4, m 2
            cl = x.permute(0, 2, 3, 1)  # channels last: the linear acts on channels
            cl = F.linear(cl, torch.ones(4, 4)).permute(0, 3, 1, 2)
            y = torch.cat([u, t, n, cl], 1)  # r_min 3 (cl), r_max 6
            return y, torch.cat([sub, s2d], 1), x.mean((2, 3))

    rep = rf.analyze(Net(), 16)
    kinds = {r.op: r for r in rep.layers}
    assert (kinds["max_pool2d"].r_min, kinds["max_pool2d"].m) == ((4, 4), (2, 2))
    assert (kinds["interpolate (bilinear)"].kernel, kinds["interpolate (bilinear)"].stride) == ((2, 2), (0.5, 0.5))
    assert kinds["interpolate (bilinear)"].r_min == (6, 6) and kinds["interpolate (bilinear)"].m == (1, 1)
    assert kinds["ConvTranspose2d"].kernel == (2, 2) and kinds["ConvTranspose2d"].r_min == (6, 6)
    assert kinds["interpolate (nearest)"].r_min == (4, 4)
    assert (kinds["getitem (strided slice)"].r_min, kinds["getitem (strided slice)"].m) == ((3, 3), (2, 2))
    assert (kinds["pixel_unshuffle"].r_min, kinds["pixel_unshuffle"].m) == ((4, 4), (2, 2))
    cats = [r for r in rep.layers if r.op == "cat"]
    assert [(r.r_min, r.r_max) for r in cats] == [((3, 3), (6, 6)), ((3, 3), (4, 4))]
    assert kinds["mean"].kind == "global" and kinds["mean"].r_min == (INF, INF)


def test_global_pooling_is_infinite_and_filterable():
    class SE(nn.Module):  # squeeze-and-excitation: x · σ(fc(avgpool(x)))
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Conv2d(8, 8, 1)
            self.post = nn.Conv2d(8, 8, 3, padding=1)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            x = self.conv(x)
            x = x * torch.sigmoid(self.fc(self.pool(x)))
            x = self.post(x)
            return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    rep = rf.analyze(SE(), 32)
    assert row(rep, "pool").r_min == (INF, INF) and row(rep, "fc").r_min == (INF, INF)
    mul = next(r for r in rep.layers if r.op == "mul")
    assert (mul.r_min, mul.r_max, mul.r_max_finite) == ((3, 3), (INF, INF), (3, 3))
    post = row(rep, "post")
    assert (post.r_min, post.r_max, post.r_max_finite) == ((5, 5), (INF, INF), (5, 5))
    assert row(rep, "head").is_infinite
    assert rep.max_feasible_resolution == (5, 5)  # the largest finite r_max
    assert rep.min_feasible_resolution == (5, 5)
    # the head and the SE branch are never "unproductive" unless asked (rfa-toolbox's filter_dense)
    assert rep.unproductive(3, rule="eq5") == [row(rep, "post")]  # Eq. 5: its input (the mul) has r_min 3
    assert {r.name for r in rep.unproductive(3, filter_inf=False, rule="eq5")} == {"post", "fc", "head"}
    # rfa-toolbox's rule adds the layers whose kernel covers their whole input map (3 // 1 ≤ 3)
    assert rep.unproductive_reasons(3) == [(row(rep, "conv"), "map"), (row(rep, "post"), "r_min+map")]
    assert {r.name for r in rep.unproductive(3, filter_inf=False)} == {"conv", "post", "fc", "head"}
    flt = rep.filtered()
    assert {"pool", "fc", "head"}.isdisjoint(r.name for r in flt.layers)
    assert row(flt, "post").r_max == (5, 5) and flt.filter_inf
    assert rf.analyze(SE(), 32, filter_inf=True).layers == flt.layers
    text = str(rep)
    assert "∞" in text and "min feasible resolution: 5" in text


def test_unproductive_layers_eq5():
    rep = rf.analyze(sequential_net(), 32)
    assert rep.unproductive() == []
    # At 13 px: layer 5 sees an input of r_min 13 (both axes) and layer 6 one of 15.
    assert [r.name for r in rep.unproductive(13)] == ["5", "6"]
    assert [r.name for r in rep.unproductive((14, 14))] == ["6"]
    with pytest.raises(ValueError, match="input_size"):
        rep.unproductive(0)


# -----------------------------------------------------------------------------
# Learnable resizers at their learned scales
# -----------------------------------------------------------------------------


def test_dynopool_at_a_learned_scale_has_fractional_stride():
    pool = DynOPool2d((0.4, 0.5))  # r_h 0.4: stride 2.5, kernel 1 + 1/0.8 = 2.25; r_w ½: a 2×2 max-pool
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), pool, nn.Conv2d(4, 4, 3, padding=1))
    rep = rf.analyze(net, 40)
    p = row(rep, "1")
    assert p.op == "DynOPool2d" and p.kind == "resize"
    assert p.stride == pytest.approx((2.5, 2.0)) and p.kernel == pytest.approx((2.25, 2.0))
    assert p.r_min == pytest.approx((4.25, 4.0)) and p.size == (16, 20)
    assert row(rep, "2").r_min == pytest.approx((4.25 + 2 * 2.5, 4.0 + 2 * 2.0))
    with torch.no_grad():
        pool.alpha.fill_(4.0)  # learned: r = ¼ → stride 4, kernel 3
    p = row(rf.analyze(net, 40), "1")
    assert p.stride == (4, 4) and p.kernel == (3, 3) and p.r_min == (5, 5) and p.size == (10, 10)


def test_shape_adaptor_at_a_learned_scale():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), ShapeAdaptorMaxPool2d(alpha_init=1.0))
    s = net[1].scale()  # 0.5 + 0.5·σ(1) ≈ 0.866
    rep = rf.analyze(net, 32)
    a = row(rep, "1")
    assert a.stride == pytest.approx((1 / s, 1 / s)) and a.size == (27, 27)
    # full branch: bilinear (2 taps) at stride 1/s: r 3 + 1 = 4; low branch: max-pool 2×2 (r 4, m 2)
    # then bilinear 16 → 27 (2 taps at m 2): r 6. Both end at m = 1/s.
    assert a.r_min == pytest.approx((4, 4)) and a.r_max == pytest.approx((6, 6))
    assert a.m == pytest.approx((1 / s, 1 / s))

    class Cell(nn.Module):  # Shape Adaptor with a user-made low branch (ResNet: strided 1×1 conv)
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.low = nn.Conv2d(4, 4, 1, stride=2)
            self.sa = ShapeAdaptor(alpha_init=-1.0)

        def forward(self, x):
            x = self.conv(x)
            return self.sa(self.low(x), x)

    cell = Cell()
    s = cell.sa.scale()
    r = row(rf.analyze(cell, 32), "sa")
    assert r.stride == pytest.approx((1 / s, 1 / s))
    o = math.floor(32 * s)
    assert r.r_min == pytest.approx((4, 4))  # full: 3 + 1
    assert r.r_max == pytest.approx((5, 5))  # low: 3 (m 2) + 1·2
    assert r.m == pytest.approx((1 / s, 1 / s)) and r.size == (o, o)  # the low branch: 2 · (1/s)·16/32


def test_elastic_bottleneck_branches():
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), ElasticBottleneck(64, 64, cardinality=4))
    rep = rf.analyze(net, 32)
    down = next(r for r in rep.layers if r.op.startswith("elastic_down"))
    merge = next(r for r in rep.layers if r.op.startswith("elastic_merge"))
    assert (down.r_min, down.m, down.size) == ((4, 4), (2, 2), (16, 16))
    # high: 3 + 2 = 5 at m 1; low: 4 + 2·2 = 8 at m 2, ×2 up-sampled (+1·2) = 10 at m 1
    assert (merge.r_min, merge.r_max, merge.m) == ((5, 5), (10, 10), (1, 1))
    assert rep.layers[-1].r_min == (3, 3)  # the residual add


def test_converted_resnet18_at_learned_scales():
    model = resizeops.convert(torchvision.models.resnet18(), "dynopool")
    pools = resizeops.nn.resizers(model)
    with torch.no_grad():
        for p in pools:
            p.alpha.fill_(2.5)  # every resizer learned r = 0.4: stride 2.5, kernel 2.25
    t0 = time.perf_counter()
    rep = rf.analyze(model, 224)  # real weights: fake tensors, nothing computed
    assert time.perf_counter() - t0 < 5
    stem = row(rep, "conv1.1")
    assert stem.op == "DynOPool2d" and stem.stride == (2.5, 2.5) and stem.kernel == (2.25, 2.25)
    assert stem.r_min == (8.25, 8.25) and stem.size == (90, 90)  # 7×7 conv at stride 1, then 7 + 1.25
    assert row(rep, "maxpool").r_min == (11.375, 11.375)
    # The shortcut's resizer is the main path's (shared α), named where it is called.
    assert row(rep, "layer2.0.downsample.0.1").r_min == (19.1875, 19.1875)

    # Hand recurrence over the BasicBlocks: the skips keep r_min at the block outputs; in stages 2–4
    # the shortcut (1×1 conv + the shared DynOPool) sets it; the second block's conv2 is the largest
    # r_min (its k·m = 3·97.7 is smaller), so it sets Eq. 7.
    def dyn(r, m):
        return r + 1.25 * m, 2.5 * m

    r, m = dyn(*dyn(7.0, 1.0))  # the stem conv (now stride 1) + DynOPool, the max-pool's DynOPool
    for _ in range(3):
        r, m = dyn(r, m)
    last = r + 2 * m + 2 * m  # layer4.1: conv1, conv2
    assert last == pytest.approx(478.171875)
    assert rep.min_feasible_resolution == pytest.approx((last, last))
    assert row(rep, "layer4.1.conv2").r_min == pytest.approx((last, last))
    # the resizers' scales drive it: at r = ½ everywhere the net is the plain one, but with 2×2 kernels
    with torch.no_grad():
        for p in pools:
            p.alpha.fill_(2.0)
    assert row(rf.analyze(model, 224), "conv1.1").stride == (2, 2)


# -----------------------------------------------------------------------------
# The torchvision zoo (built on the meta device: no weight initialisation)
# -----------------------------------------------------------------------------

# min feasible resolution at 224 (refinement paper, Eq. 7). From the paper where it reports them:
# VGG19 268, MobileNetV3-large 263, MobileNetV3-small 303, MnasNet 283 (Table 4), EfficientNet-B0 299
# (Table 2), ConvNeXt-T 224 (Table 5: its 7×7 kernels at stride 32, k·m = 224); ResNet-18's r_max 435
# (§3.1). VGG16 by hand: ten 3×3 convs and five 2×2 pools, 1 + 2·(2·1 + 2·2 + 3·4 + 3·8 + 3·16) +
# (1 + 2 + 4 + 8 + 16) = 212. ResNet-50: its r_min stays 11 at every block output (the skips); the
# largest inner r_min is 75 (layer4's 3×3: 11 + 2·32) and the 3×3 kernels at stride 32 need 3·32 = 96.
# The paper's Appendix E: ResNet-50, VGG-16 and MobileNetV2 are fully utilised at 224.
ZOO = {
    "resnet18": (139, 435),
    "resnet50": (96, 427),
    "vgg16": (212, 212),
    "vgg19": (268, 268),
    "mobilenet_v2": (163, 491),
    "mobilenet_v3_large": (263, 595),
    "mobilenet_v3_small": (303, 639),
    "efficientnet_b0": (299, 851),
    "mnasnet1_0": (283, 843),
    "convnext_tiny": (224, 1688),
}


@pytest.mark.parametrize("name", list(ZOO))
def test_torchvision_zoo(name):
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None)
    t0 = time.perf_counter()
    rep = rf.analyze(model, 224, name=name)
    assert time.perf_counter() - t0 < 5
    lo, hi = ZOO[name]
    assert rep.min_feasible_resolution == (lo, lo)
    assert rep.max_feasible_resolution == (hi, hi)
    assert rep.layers[-1].is_infinite  # the classifier
    assert str(rep).count("\n") > 10


def test_efficientnet_b0_unproductive_blocks_match_the_paper():
    # §5.1: at 224 "the entire stage 7 and stage 6 except for the first building block" is unproductive.
    with torch.device("meta"):
        model = torchvision.models.efficientnet_b0()
    rep = rf.analyze(model, 224)
    blocks = {".".join(r.name.split(".")[:3]) for r in rep.unproductive() if r.name.startswith(("features.6", "features.7"))}
    assert blocks == {"features.6.1", "features.6.2", "features.6.3", "features.7.0"}
    assert rf.analyze(model, 320).unproductive() == []


def test_real_and_meta_models_agree():
    real = torchvision.models.mobilenet_v3_small()
    with torch.device("meta"):
        meta = torchvision.models.mobilenet_v3_small()
    assert rf.analyze(real, 160).layers == rf.analyze(meta, 160).layers


def test_dilated_deeplab_style_backbone():
    # ResNet with the last stage dilated (output stride 16, as in DeepLab): dilation counts (k_eff = d(k − 1) + 1).
    with torch.device("meta"):
        model = torchvision.models.resnet50(replace_stride_with_dilation=[False, False, True])
    rep = rf.analyze(model, 224)
    conv = row(rep, "layer4.1.conv2")
    assert conv.kernel == (5, 5) and conv.m == (16, 16) and conv.r_min == (11 + 4 * 16,) * 2
    conv_nd = row(rf.analyze(model, 224, ignore_dilation=True), "layer4.1.conv2")
    assert conv_nd.kernel == (3, 3) and conv_nd.r_min == (11 + 2 * 16,) * 2


# -----------------------------------------------------------------------------
# Errors
# -----------------------------------------------------------------------------


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.sum() > 0:  # control flow on a tensor value: torch.fx cannot trace it
            x = -x
        return self.conv(x)


class Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = DataDependent()
        self.conv = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.conv(self.gate(x))


def test_untraceable_model_error_names_the_reason_and_a_fix():
    with pytest.raises(ValueError, match=r"(?s)torch.fx cannot trace Wrapper in `gate` \(DataDependent\): TraceError: .*leaf_modules") as e:
        rf.analyze(Wrapper(), 32)
    assert isinstance(e.value, rf.RFTraceError)
    # The suggested fix: the offending block becomes one layer, known by its size change? It is not
    # (3×3 valid conv inside): the analysis refuses to guess and asks for a rule ...
    with pytest.raises(ValueError, match=r"`gate` \(DataDependent\).*rules="):
        rf.analyze(Wrapper(), 32, leaf_modules=[DataDependent])
    # ... which it then uses.
    rep = rf.analyze(Wrapper(), 32, leaf_modules=["gate"], rules={DataDependent: lambda m, i, o: (3, 1)})
    assert row(rep, "gate").r_min == (3, 3) and row(rep, "conv").r_min == (5, 5)


def test_bad_arguments():
    with pytest.raises(TypeError, match="nn.Module"):
        rf.analyze(lambda x: x, 32)
    with pytest.raises(ValueError, match="input_size"):
        rf.analyze(sequential_net(), (32, 0))
    with pytest.raises(ValueError, match="dummy input"):
        rf.analyze(nn.Sequential(nn.Conv2d(3, 4, 7)), 4)  # a 4×4 input is smaller than the kernel


def test_meta_model_failing_on_the_input_is_the_same_clear_error():
    # A model on the meta device runs on a meta input only; where it fails, the error is the
    # RFTraceError of a real model, not an internal exception (the CLI reports ValueErrors).
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 4, 7))
    with pytest.raises(rf.RFTraceError, match=r"dummy input of shape \(1, 3, 4, 4\) at `0`"):
        rf.analyze(model, 4)


def test_plot(tmp_path):
    rep = rf.analyze(Branching(), 32)
    fig = rep.plot(str(tmp_path / "rf.png"))
    assert fig is not None and (tmp_path / "rf.png").stat().st_size > 1000


# -----------------------------------------------------------------------------
# The command line
# -----------------------------------------------------------------------------


def _cli(*args, **env):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-m", "resizeops", "rf", *args], capture_output=True, text=True,
                          timeout=300, env=e)  # fmt: skip


def test_cli_torchvision_resnet50(tmp_path):
    r = _cli("torchvision:resnet50", "--input", "224", "--plot", str(tmp_path / "p.png"))
    assert r.returncode == 0, r.stderr
    assert "layer4.0.conv2" in r.stdout
    assert "min feasible resolution: 96  (set by layer4.0.conv2: k·m = 3·32)" in r.stdout
    assert "max feasible resolution: 427" in r.stdout and "unproductive at 224×224: none" in r.stdout
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_cli_user_factory_and_options(tmp_path, monkeypatch, capsys):
    (tmp_path / "mynets.py").write_text(
        "import torch.nn as nn\n"
        "def small():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3, dilation=2), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3),\n"
        "                         nn.AdaptiveAvgPool2d(1))\n"
    )
    r = _cli("mynets:small", "--input", "32", "48", "--filter-inf", PYTHONPATH=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "small at 32×48" in r.stdout and "AdaptiveAvgPool2d" not in r.stdout
    assert "min feasible resolution: 10" in r.stdout  # 5 + 1, then + 2·2
    # the same entry point in-process
    monkeypatch.syspath_prepend(str(tmp_path))
    assert rf.main(["mynets:small", "--input", "32", "--ignore-dilation", "--all"]) == 0
    out = capsys.readouterr().out
    assert "min feasible resolution: 8" in out and "AdaptiveAvgPool2d" in out


def test_cli_errors(capsys):
    assert rf.main(["torchvision:no_such_net"]) == 1
    assert "unknown torchvision model" in capsys.readouterr().err
    assert rf.main(["resnet50"]) == 1
    assert "torchvision:NAME" in capsys.readouterr().err
    assert rf.main(["no_such_module_xyz:f"]) == 1
    assert "cannot import" in capsys.readouterr().err
    assert rf.main(["torch.nn:Identity", "--input", "8"]) == 0  # a factory from an installed package
    assert rf.main(["torch.nn:Identity", "--input", "8", "--in-channels", "1"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):  # argparse: --input takes H or H W
        rf.main(["torchvision:resnet18", "--input", "1", "2", "3"])
    try:
        import timm  # noqa: F401
    except ImportError:
        assert rf.main(["timm:resnet50"]) == 1
        assert "pip install timm" in capsys.readouterr().err


# -----------------------------------------------------------------------------
# What the analysis assumes, and timm
# -----------------------------------------------------------------------------


def my_blur(x):  # a user function torch.fx keeps as one node: the analysis cannot see inside
    return F.avg_pool2d(x, 3, 1, 1)


torch.fx.wrap("my_blur")


def test_assumptions_are_reported():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 8 * 8, 2)

        def forward(self, x):
            x = my_blur(self.conv(x))  # keeps the size: taken as pointwise, and said so
            return self.fc(torch.flatten(x, 1))  # a flattened 8×8 map: the dense layer sees all of it

    rep = rf.analyze(Net(), 8)
    assert len(rep.assumed_pointwise) == 1 and rep.assumed_pointwise[0].endswith("my_blur (in the top-level forward)")
    assert len(rep.notes) == 1 and "(1, 4, 8, 8) → (1, 256)" in rep.notes[0]
    assert row(rep, "fc").is_infinite
    assert "taken as pointwise" in rep.summary() and "note: " in rep.summary()
    rep = rf.analyze(Net(), 8, rules={my_blur: lambda fn, i, o: (3, 1)})
    assert rep.assumed_pointwise == [] and rep.min_feasible_resolution == (5, 5)


def test_timm_models():
    timm = pytest.importorskip("timm")  # noqa: F841
    # 'same' padding (timm's notrace conv2d_same / pad_same) and BatchNormAct leaves
    model, name = rf.load_model("timm:tf_efficientnet_b0")
    rep = rf.analyze(model, 224, name=name)
    assert rep.min_feasible_resolution == (299, 299) and rep.assumed_pointwise == []
    model, _ = rf.load_model("timm:convnext_tiny")
    assert rf.analyze(model, 224).min_feasible_resolution == (224, 224)


def test_two_input_model_is_refused_with_a_fix():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x, y):
            return self.conv(x) + y

    with pytest.raises(ValueError, match=r"takes 2 inputs \(x, y\).*concrete_args"):
        rf.analyze(Two(), 8)
