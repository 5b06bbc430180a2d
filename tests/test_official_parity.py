"""Shape Adaptor and ELASTIC as the official code computes them (lorenmt/shape-adaptor
``model_list.py`` / ``model_training.py``, allenai/elastic ``models/resnext.py`` and
``models/dla.py``): the expected numbers are written from their formulas here, not
taken from the package.

* AutoSC sizes: the official "global" rule, a running product over the whole network
  (the kept ×½ layers included), rounded with Python's ``round``.
* The memory penalty: D_true (Eq. 8, counting the kept down-sampling) and
  ρ = (D_limit / D_true)^(1/N) from the previous forward, ρ = 1 at the first iteration.
* ρ and the AutoSC rule's values are in the ``state_dict``: checkpoints reproduce
  outputs, and training resumes exactly.
* ELASTIC is off where the official blocks turn it off.
"""

import copy
import io
import math

import pytest
import torch
from torch import nn

import resizeops
from resizeops import shape_adaptor as sa
from resizeops.nn import ElasticBottleneck, ShapeAdaptor
from small_models import small_vgg_layers

torchvision = pytest.importorskip("torchvision")

# s(σ(2.19)), the official AutoSC start: σ in float32 as its ``.item()`` of a float32 parameter.
S0 = 0.5 + 0.5 * torch.sigmoid(torch.tensor(2.19)).item()


def official_sizes(dim, layout, s=S0):
    """The official AutoSC forward's feature maps: ``layout`` is a sequence of

    * ``"in"``: record the map entering a layer;
    * ``"down"``: a kept ×½ layer (ceil-mode pool or padded stride 2: the map
      ceil(D/2)); the running dimension × 0.5;
    * ``"sa"``: an adaptor; the running dimension × s, the map its rounding (≥ 1).
    """
    c, d, seen = float(dim), dim, []
    for t in layout:
        if t == "in":
            seen.append(d)
        elif t == "down":
            c, d = c * 0.5, -(-d // 2)
        else:
            c = c * s
            d = 1 if c < 1 else round(c)
    return seen


def vgg16_layout(adapt_after):
    """torchvision vgg16's convolutions and max-pools, an adaptor after the numbered convolutions."""
    out, n = [], 0
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            out.append("down")
        else:
            n += 1
            out.append("in")
            if n in adapt_after:
                out.append("sa")
    return out


def resnet50_layout(stem_downs, adapt_blocks):
    """Entering each block of a ResNet-50 ([3, 4, 6, 3]); stages 2–4 start with a stride-2 block."""
    out = ["down"] * stem_downs
    for stage, n in enumerate((3, 4, 6, 3)):
        for j in range(n):
            out.append("in")
            if stage and not j:
                out.append("down")
            if f"layer{stage + 1}.{j}" in adapt_blocks:
                out.append("sa")
    return out


def _input_sizes(model, x, modules):
    """The spatial size of the input each of ``modules`` sees in ``model(x)``, in call order."""
    sizes = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp: sizes.append(tuple(inp[0].shape[-2:])) and None)
             for m in modules]  # fmt: skip
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return sizes


def conv_inputs(model, x):
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    return _input_sizes(model, x, convs)


def block_inputs(model, x):
    return _input_sizes(model, x, [b for k in range(1, 5) for b in getattr(model, f"layer{k}")])


_VGG = {}


def _vgg16():
    if not _VGG:
        torch.manual_seed(0)
        m = torchvision.models.vgg16(num_classes=10)
        m.classifier = nn.Linear(512 * 7 * 7, 10)  # conversion touches `features` only
        _VGG[0] = m.eval()
    return _VGG[0]


# -----------------------------------------------------------------------------
# AutoSC sizes
# -----------------------------------------------------------------------------


@pytest.mark.parametrize("dim,adapt,official", [
    # adaptors after conv 1 8 (2 below 64) or 1 5 8 11; the official code's model.shape_list (the map entering
    # each conv) printed from its VGG(mode="autosc"): conv 9–10 run at 4×4 (a local floor would give 3×3)
    (32, (1, 8), [32, 30, 15, 15, 8, 8, 8, 4, 4, 4, 2, 2, 2]),
    (64, (1, 5, 8, 11), [64, 61, 31, 31, 16, 14, 14, 7, 7, 7, 4, 3, 3]),
])  # fmt: skip
def test_autosc_vgg16_sizes_are_the_official_running_product(dim, adapt, official):
    model = resizeops.convert(_vgg16(), "shape_adaptor", input_dim=dim, mode="autosc").eval()
    expect = official_sizes(dim, vgg16_layout(adapt))
    assert expect == official
    assert conv_inputs(model, torch.randn(1, 3, dim, dim)) == [(d, d) for d in expect]
    assert all(a.size_rule == "global" for a in sa.adaptors(model))
    # The official layout below 65 px has four max-pools (no fifth after conv 13): same convolution sizes.
    four = resizeops.convert(_vgg16(), "shape_adaptor", input_dim=dim, mode="autosc", layout="official")
    assert sum(isinstance(m, nn.MaxPool2d) for m in four.features) == 4
    assert conv_inputs(four.eval(), torch.randn(1, 3, dim, dim)) == [(d, d) for d in expect]
    assert sa.fixed_scale_of(four) == 1 / 16 and sa.fixed_scale_of(model) == 1 / 32


_R50 = {}


def _resnet50():
    if not _R50:
        torch.manual_seed(0)
        _R50[0] = torchvision.models.resnet50(num_classes=10).eval()
    return _R50[0]


@pytest.mark.parametrize("dim,layout,stem_downs,official", [
    # torchvision's stem (7×7 stride 2, max-pool) counts ×¼ at every size
    (32, "keep", 2, None),
    (64, "keep", 2, None),
    # the official CIFAR ResNet below 64 px (3×3 stride-1 stem, no max-pool): its printed model.shape_list
    (32, "official", 0, [32, 32, 30, 30, 15, 15, 15, 15, 8, 8, 7, 7, 7, 7, 4, 4]),
    # from 64 px the official ResNet keeps torchvision's stem; its forward skips the max-pool at exactly 64
    # (a bug: the first adaptor then up-samples 32 → 61), which we do not follow
    (64, "official", 2, None),
])  # fmt: skip
def test_autosc_resnet50_sizes_are_the_official_running_product(dim, layout, stem_downs, official):
    model = resizeops.convert(_resnet50(), "shape_adaptor", input_dim=dim, mode="autosc", layout=layout).eval()
    names = [n.rsplit(".", 1)[0] for n, m in model.named_modules() if isinstance(m, ShapeAdaptor)]
    assert names == ["layer1.1", "layer3.2"]  # the official placement: 2 adaptors up to 64 px
    expect = official_sizes(dim, resnet50_layout(stem_downs, names))
    if official is not None:
        assert expect == official
    assert block_inputs(model, torch.randn(1, 3, dim, dim)) == [(d, d) for d in expect]
    if dim == 64:  # the local floor would differ: layer3.2 gives 4 (round(3.61)), floor(4·0.95) = 3
        assert expect[-3:] == [4, 2, 2]


def test_autosc_other_input_sizes_and_non_square():
    model = resizeops.convert(_vgg16(), "shape_adaptor", input_dim=32, mode="autosc").eval()
    got = conv_inputs(model, torch.randn(1, 3, 32, 48))
    # Rows: the official sizes for 32. Columns (48 is not the input_dim): each adaptor rounds D·s of its own
    # input: round(48 s) = 46, then 23, 12, 6 entering conv 8 and round(6 s) = 6 after it.
    assert [h for h, _ in got] == official_sizes(32, vgg16_layout((1, 8)))
    w, expect = 48, []
    for t in vgg16_layout((1, 8)):
        if t == "in":
            expect.append(w)
        elif t == "down":
            w = -(-w // 2)
        else:
            w = max(round(w * S0), 1)
    assert [c for _, c in got] == expect and expect[:8] == [48, 46, 23, 23, 12, 12, 12, 6]


def test_autosc_memory_constraint_counts_the_kept_down_sampling():
    # The official CIFAR ResNet-50 at 32 keeps three ×½ stages: D_true = 32·s²/8 (3.61, not 32·s² = 28.86).
    model = resizeops.convert(_resnet50(), "shape_adaptor", input_dim=32, mode="autosc", layout="official")
    d_true = 32 * S0**2 / 8
    assert sa.final_dim(model, 32) == pytest.approx(d_true, rel=1e-12) and round(d_true, 2) == 3.61
    rho = (3 / d_true) ** (1 / 2)
    assert sa.penalty(model, 32, 3) == pytest.approx(rho, rel=1e-12) and round(rho, 2) == 0.91
    assert sa.final_dim(model, 32, fixed_scale=1.0) == pytest.approx(32 * S0**2)  # 28.86: the old default
    # torchvision's stem keeps two more ×½ layers.
    tv = resizeops.convert(_resnet50(), "shape_adaptor", input_dim=32, mode="autosc")
    assert sa.fixed_scale_of(tv) == 1 / 32 and sa.final_dim(tv, 32) == pytest.approx(32 * S0**2 / 32, rel=1e-12)
    # Standard mode keeps no fixed down-sampling.
    assert sa.fixed_scale_of(resizeops.convert(_resnet50(), "shape_adaptor", input_dim=32)) == 1.0


def test_official_resnet_layout_parameters():
    # The official shape-adaptor ResNet-18 (100 classes) has a 3×3 stem and a projection in layer1.0:
    # torchvision's converted one has 7·7·3·64 − 3·3·3·64 − (64·64 + 2·64) = 3456 more parameters.
    tv = torchvision.models.resnet18(num_classes=100)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    keep = resizeops.convert(tv, "shape_adaptor", input_dim=32)
    official = resizeops.convert(tv, "shape_adaptor", input_dim=32, layout="official")
    assert count(keep) == 11_314_728 and count(official) == 11_311_272
    assert count(keep) - count(official) == 7 * 7 * 3 * 64 - 3 * 3 * 3 * 64 - (64 * 64 + 2 * 64)
    assert official.conv1.kernel_size == (3, 3) and official.layer1[0].downsample is not None
    assert official(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(ValueError, match="`layout` must be one of"):
        resizeops.convert(tv, "shape_adaptor", input_dim=32, layout="cifar")


# -----------------------------------------------------------------------------
# The recipe with a memory limit
# -----------------------------------------------------------------------------


def _small_autosc(seed=0):
    torch.manual_seed(seed)
    features = nn.Sequential(*small_vgg_layers())
    net = torchvision.models.vgg.VGG(features, num_classes=5)
    net.avgpool, net.classifier = nn.AdaptiveAvgPool2d(1), nn.Linear(16, 5)
    # Adaptors after conv 1 and 5; kept: the max-pool, the strided conv and the avg-pool (×1/8).
    return resizeops.convert(net, "shape_adaptor", input_dim=32, mode="autosc")


def test_autosc_cells_are_analysed_by_rf():
    # convert's AutoSC cells pool with their own (ceil-mode) max-pool: rf reads its kernel and stride.
    rep = resizeops.rf.analyze(_small_autosc(), 32)
    cell = next(r for r in rep.layers if r.name == "features.2.1")
    # after one 3×3 conv (r 3, m 1): the full branch, bilinear 32 → 30 at stride 1/s, gives r = 3 + 1
    assert cell.kind == "resize" and cell.r_min == (4, 4) and cell.stride == pytest.approx((1 / S0,) * 2)
    assert cell.size == (30, 30)


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 5, (8,), generator=g)


def _optimizer(model, limit=3.0, every=2):
    w = torch.optim.SGD(sa.weight_parameters(model), lr=0.05, momentum=0.9, weight_decay=5e-4)
    return sa.AlternatingOptimizer(model, w, every=every, input_dim=32, limit_dim=limit)


def _official_rho(alphas, limit=3.0):
    """ρ of the official loop from the α of the previous forward: D_true = 32 · (1/8) · Π s(σ(α))."""
    d_true = 32 / 8
    for a in alphas:
        d_true *= 0.5 + 0.5 * torch.sigmoid(torch.tensor(a, dtype=torch.float32)).item()
    return 1.0 if d_true < limit else (limit / d_true) ** (1 / len(alphas)), d_true


def test_recipe_penalty_follows_the_official_loop():
    model = _small_autosc()
    adaptors = sa.adaptors(model)
    assert [n for n, m in model.named_modules() if m in adaptors] == ["features.2.1", "features.16.1"]
    assert sa.fixed_scale_of(model) == 1 / 8
    seen = []  # (α of every adaptor, ρ) at each forward
    adaptors[0].register_forward_pre_hook(
        lambda m, i: seen.append(([a.alpha.item() for a in adaptors], [float(a.rho) for a in adaptors])) and None)
    opt = _optimizer(model)
    x, y = _data()
    for _ in range(5):
        opt.step(lambda: nn.functional.cross_entropy(model(x), y))
    # Shape steps at 0, 2, 4: 5 + 3 forwards.
    assert len(seen) == 8
    # Iteration 0 (its shape and weight forwards): ρ = 1, though D_true = 4·s² = 3.61 is over the limit.
    assert seen[0][1] == [1.0, 1.0] and seen[1][1] == [1.0, 1.0]
    assert _official_rho(seen[0][0])[1] == pytest.approx(32 / 8 * S0**2) and _official_rho(seen[0][0])[0] < 0.95
    # Afterwards ρ comes from D_true of the previous forward.
    for k in range(2, len(seen)):
        rho, _ = _official_rho(seen[k - 1][0])
        assert seen[k][1] == pytest.approx([rho, rho], rel=1e-12, abs=0), k
    rho, d_true = _official_rho(seen[-1][0])
    assert sa.final_dim(model, 32, last=True) == pytest.approx(d_true, rel=1e-12)
    assert opt.rho == pytest.approx(seen[-1][1][0], rel=1e-12)


def _train(model, opt, steps):
    x, y = _data()
    return [opt.step(lambda: nn.functional.cross_entropy(model(x), y)).item() for _ in range(steps)]


def test_state_dict_round_trip_after_the_memory_constrained_recipe():
    model = _small_autosc()
    _train(model, _optimizer(model, limit=2.0), 3)
    sd = model.state_dict()
    rho = float(sa.adaptors(model)[0].rho)
    assert rho < 0.9 and sd["features.2.1.rho"].item() == rho and sd["features.16.1.rho"].item() == rho
    assert sd["features.16.1.fixed_scale"].tolist() == [1 / 8, 1 / 8] and sd["features.16.1.input_dim"].item() == 32
    buf = io.BytesIO()
    torch.save(sd, buf)
    fresh = _small_autosc(seed=1)
    fresh.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    x = _data()[0]
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    assert conv_inputs(fresh, x) == conv_inputs(model, x)


def test_resume_continues_exactly():
    steps, cut = 6, 3  # shape steps at 0, 2, 4: the cut falls between a weight-only step and a shape step
    ref = _small_autosc()
    ref_opt = _optimizer(ref)
    ref_losses = _train(ref, ref_opt, steps)

    first = _small_autosc()
    first_opt = _optimizer(first)
    losses = _train(first, first_opt, cut)
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": first_opt.state_dict()}, buf)
    del first, first_opt

    ckpt = torch.load(io.BytesIO(buf.getvalue()))
    resumed = _small_autosc(seed=3)  # other initial weights: everything comes from the checkpoint
    resumed.load_state_dict(ckpt["model"])
    opt = _optimizer(resumed)
    opt.load_state_dict(ckpt["opt"])
    assert opt.steps == cut
    losses += _train(resumed, opt, steps - cut)
    assert losses == ref_losses
    for (k, a), (_, b) in zip(ref.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    assert opt.rho == ref_opt.rho
    with pytest.raises(ValueError, match="lacks"):
        opt.load_state_dict({"steps": 1})


def test_old_checkpoints_without_rho_still_load():
    model = _small_autosc()
    for a in sa.adaptors(model):
        a.rho = 0.8  # a float sets the buffer in place
    sd = model.state_dict()
    old = copy.copy(sd)
    old._metadata = copy.deepcopy(sd._metadata)
    for key in ("features.2.1", "features.16.1"):
        for b in ("rho", "input_dim", "fixed_scale", "fixed_total"):
            del old[f"{key}.{b}"]
        old._metadata[key]["version"] = 1  # as saved before ρ was a buffer
    fresh = _small_autosc(seed=1)
    fresh.load_state_dict(old)  # strict: the keys it lacks are the ones version 1 did not save
    assert [float(a.rho) for a in sa.adaptors(fresh)] == [1.0, 1.0]
    assert sa.fixed_scale_of(fresh) == 1 / 8  # the conversion's own record
    plain = {k: v for k, v in old.items()}  # no metadata at all (e.g. rebuilt by hand)
    fresh.load_state_dict(plain)
    # A current checkpoint that lacks ρ is an error under strict loading.
    broken = copy.copy(sd)
    broken._metadata = sd._metadata
    del broken["features.2.1.rho"]
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*features\.2\.1\.rho"):
        fresh.load_state_dict(broken)


def test_layers_pickled_before_rho_was_a_buffer_still_load():
    import pickle

    layer = ShapeAdaptor(alpha_init=0.3)
    old = layer.__dict__.copy()  # what such a layer pickled: ρ a plain attribute, no size rule
    old["_buffers"] = {}
    old["rho"] = 0.8
    for k in ("size_rule", "_previous"):
        del old[k]
    stale = ShapeAdaptor.__new__(ShapeAdaptor)
    stale.__setstate__(old)
    back = pickle.loads(pickle.dumps(stale))
    assert float(back.rho) == 0.8 and back.rho.dtype == torch.float64 and back.size_rule == "local"
    x = torch.randn(1, 2, 16, 16)
    assert back(x, x).shape[-1] == math.floor(16 * 0.8 * (0.5 + 0.5 * torch.sigmoid(torch.tensor(0.3)).item()))


def test_rho_buffer_keeps_float64_and_bad_values():
    layer = ShapeAdaptor(alpha_init=0.3)
    layer.rho = 0.9
    layer.half()
    assert layer.rho.dtype == torch.float64 and float(layer.rho) == 0.9 and layer.alpha.dtype == torch.float16
    layer.float()
    assert layer.rho.dtype == torch.float64
    with pytest.raises(ValueError, match="`rho` must be a finite number > 0"):
        layer.rho = 0.0
    with pytest.raises(ValueError, match="`rho`"):
        layer.set_rho(float("nan"))
    assert "rho" in layer.state_dict() and layer.state_dict()["rho"].dtype == torch.float64


# -----------------------------------------------------------------------------
# ELASTIC
# -----------------------------------------------------------------------------


def test_elastic_on_off_per_stage_of_resnext50():
    # resnext.py: ResNext(BottleneckX, [3, 4, 6, 3]); BottleneckX(inplanes, planes, cardinality=32, stride) has
    # paths of `planes` channels and 4·planes out, and ELASTIC iff elastic and stride == 1 and planes < 512.
    # Here: ElasticBottleneck(inplanes, 4·planes, stride, 32, bottle_planes=2·planes) (paths of half the bottleneck).
    got, want = [], []
    inplanes = 64
    with torch.device("meta"):
        for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            for j in range(blocks):
                stride = 2 if stage and not j else 1
                b = ElasticBottleneck(inplanes, 4 * planes, stride, cardinality=32, bottle_planes=2 * planes)
                assert b.branches.high[0].out_channels == planes
                got.append(b.branches.elastic)
                want.append(stride == 1 and planes < 512)
                inplanes = 4 * planes
    assert got == want
    assert want == [True] * 3 + [False] + [True] * 3 + [False] + [True] * 5 + [False] * 3  # stage 4: off


@pytest.mark.parametrize("cardinality", [32, 50])
def test_elastic_on_off_per_level_of_dla_x(cardinality):
    # dla.py: BottleneckXElastic(inplanes, planes, stride), bottle_planes = planes · cardinality // 32 split in two
    # paths; ELASTIC iff stride == 1 and planes < 1024 (levels 2–5 of DLA-60x / DLA-102x: 128 ... 1024).
    with torch.device("meta"):
        for planes in (128, 256, 512, 1024):
            for stride in (1, 2):
                b = ElasticBottleneck(planes, planes, stride, cardinality, bottle_planes=planes * cardinality // 32)
                assert b.branches.elastic == (stride == 1 and planes < 1024), (planes, stride)


def test_elastic_stage4_block_off_matches_the_plain_sum():
    torch.manual_seed(0)
    block = ElasticBottleneck(2048, 2048, cardinality=32, bottle_planes=1024).eval()
    assert not block.branches.elastic
    x = torch.randn(1, 2048, 7, 7)
    with torch.no_grad():
        want = torch.relu(block.bn(block.branches.high(x) + block.branches.low(x)) + x)
        assert torch.equal(block(x), want)
    assert math.isclose(float(ElasticBottleneck(64, 64, cardinality=8).branches.elastic), 1.0)
