"""resizeops.rf against the receptive-field refinement paper's own tool, rfa-toolbox 1.7.0.

The expected lists below are rfa-toolbox's: ``obtain_border_layers(graph, R)`` (its
``is_border`` rule, ``filter_dense=True``) on the torchvision models, its "critical"
layers (r_min above R, not border: orange in its plots, the paper's "underutilized"
layers of appendix F.4) and ``input_resolution_range(graph, lower_bound=True)``; its
graph nodes were matched to module names in execution order. Each unproductive layer
carries the test(s) of ``is_border`` that flag it: "r_min" (every input's r_min ≥ R
and its own > R: Eq. 5) and "map" (every input feature map ``R // m_in`` no larger
than the kernel: the layer behaves like a dense one).
"""

import pytest
import torch

from resizeops import rf

torchvision = pytest.importorskip("torchvision")

# fmt: off
UNPRODUCTIVE = {
    "resnet18": {
        32: {
            "map": ["layer3.0.conv2", "layer3.1.conv1", "layer4.0.conv1", "layer4.1.conv1"],
            "r_min+map": ["layer3.1.conv2", "layer4.0.conv2", "layer4.1.conv2"],
        },
        64: {
            "map": ["layer4.0.conv2", "layer4.1.conv1"],
            "r_min+map": ["layer4.1.conv2"],
        },
        128: {},
        224: {},
    },
    "vgg16": {
        32: {
            "r_min": ["features.14", "features.16", "features.17", "features.19", "features.21", "features.23"],
            "r_min+map": ["features.24", "features.26", "features.28", "features.30"],
        },
        64: {
            "r_min": ["features.21", "features.23", "features.24", "features.26", "features.28", "features.30"],
        },
        128: {
            "r_min": ["features.26", "features.28", "features.30"],
        },
        224: {},
    },
    "mobilenet_v3_small": {
        32: {
            "map": ["features.4.block.1.0"],
            "r_min": ["features.4.block.3.0", "features.5.block.0.0", "features.5.block.3.0",
                "features.6.block.0.0", "features.6.block.3.0", "features.7.block.0.0", "features.7.block.3.0",
                "features.8.block.0.0", "features.8.block.3.0", "features.9.block.0.0"],
            "r_min+map": ["features.5.block.1.0", "features.6.block.1.0", "features.7.block.1.0",
                "features.8.block.1.0", "features.9.block.1.0", "features.9.block.3.0", "features.10.block.0.0",
                "features.10.block.1.0", "features.10.block.3.0", "features.11.block.0.0", "features.11.block.1.0",
                "features.11.block.3.0", "features.12.0"],
        },
        64: {
            "map": ["features.5.block.1.0", "features.6.block.1.0", "features.7.block.1.0"],
            "r_min": ["features.5.block.3.0", "features.6.block.3.0", "features.7.block.3.0",
                "features.8.block.0.0", "features.8.block.3.0", "features.9.block.0.0", "features.9.block.3.0",
                "features.10.block.0.0", "features.10.block.3.0", "features.11.block.0.0", "features.11.block.3.0",
                "features.12.0"],
            "r_min+map": ["features.8.block.1.0", "features.9.block.1.0", "features.10.block.1.0",
                "features.11.block.1.0"],
        },
        128: {
            "r_min": ["features.8.block.3.0", "features.9.block.3.0", "features.10.block.0.0",
                "features.10.block.3.0", "features.11.block.0.0", "features.11.block.3.0", "features.12.0"],
            "r_min+map": ["features.10.block.1.0", "features.11.block.1.0"],
        },
        224: {
            "r_min": ["features.10.block.3.0", "features.11.block.3.0"],
        },
    },
    "efficientnet_b0": {
        32: {
            "map": ["features.3.1.block.1.0"],
            "r_min": ["features.3.1.block.3.0", "features.4.0.block.3.0", "features.4.1.block.0.0",
                "features.4.1.block.3.0", "features.4.2.block.0.0", "features.4.2.block.3.0",
                "features.5.0.block.0.0", "features.5.0.block.3.0", "features.5.1.block.0.0",
                "features.5.1.block.3.0", "features.5.2.block.0.0", "features.5.2.block.3.0",
                "features.6.0.block.0.0"],
            "r_min+map": ["features.4.1.block.1.0", "features.4.2.block.1.0", "features.5.0.block.1.0",
                "features.5.1.block.1.0", "features.5.2.block.1.0", "features.6.0.block.1.0",
                "features.6.0.block.3.0", "features.6.1.block.0.0", "features.6.1.block.1.0",
                "features.6.1.block.3.0", "features.6.2.block.0.0", "features.6.2.block.1.0",
                "features.6.2.block.3.0", "features.6.3.block.0.0", "features.6.3.block.1.0",
                "features.6.3.block.3.0", "features.7.0.block.0.0", "features.7.0.block.1.0",
                "features.7.0.block.3.0", "features.8.0"],
        },
        64: {
            "map": ["features.5.0.block.1.0"],
            "r_min": ["features.4.1.block.3.0", "features.4.2.block.3.0", "features.5.0.block.3.0",
                "features.5.1.block.0.0", "features.5.1.block.3.0", "features.5.2.block.0.0",
                "features.5.2.block.3.0", "features.6.0.block.0.0", "features.6.0.block.3.0",
                "features.6.1.block.0.0", "features.6.1.block.3.0", "features.6.2.block.0.0",
                "features.6.2.block.3.0", "features.6.3.block.0.0", "features.6.3.block.3.0",
                "features.7.0.block.0.0", "features.7.0.block.3.0", "features.8.0"],
            "r_min+map": ["features.5.1.block.1.0", "features.5.2.block.1.0", "features.6.0.block.1.0",
                "features.6.1.block.1.0", "features.6.2.block.1.0", "features.6.3.block.1.0",
                "features.7.0.block.1.0"],
        },
        128: {
            "r_min": ["features.5.1.block.3.0", "features.5.2.block.3.0", "features.6.0.block.3.0",
                "features.6.1.block.0.0", "features.6.1.block.3.0", "features.6.2.block.0.0",
                "features.6.2.block.3.0", "features.6.3.block.0.0", "features.6.3.block.3.0",
                "features.7.0.block.0.0", "features.7.0.block.1.0", "features.7.0.block.3.0", "features.8.0"],
            "r_min+map": ["features.6.1.block.1.0", "features.6.2.block.1.0", "features.6.3.block.1.0"],
        },
        224: {
            "r_min": ["features.6.1.block.3.0", "features.6.2.block.3.0", "features.6.3.block.3.0",
                "features.7.0.block.3.0", "features.8.0"],
        },
    },
}
# The paper's underutilized layers (rfa-toolbox: critical and not border).
UNDERUTILISED = {
    "resnet18": {32: ["layer2.0.conv2", "layer2.1.conv2"], 64: ["layer3.1.conv2"], 128: ["layer4.1.conv2"], 224: []},
    "vgg16": {32: [], 64: ["features.19"], 128: ["features.24"], 224: []},
    "mobilenet_v3_small": {32: [], 64: [], 128: ["features.8.block.1.0", "features.9.block.1.0"],
                           224: ["features.10.block.1.0", "features.11.block.1.0"]},
    "efficientnet_b0": {32: ["features.4.0.block.1.0"], 64: ["features.4.1.block.1.0", "features.4.2.block.1.0"],
                        128: ["features.5.1.block.1.0", "features.5.2.block.1.0", "features.6.0.block.1.0"],
                        224: ["features.6.1.block.1.0", "features.6.2.block.1.0", "features.6.3.block.1.0",
                              "features.7.0.block.1.0"]},
}
# input_resolution_range(graph): (its lower bound, with lower_bound=True; its default minimum).
RESOLUTION_RANGE = {"resnet18": (96, 139), "vgg16": (196, 212), "mobilenet_v3_small": (175, 303),
                    "efficientnet_b0": (171, 299)}
# fmt: on

_REPORTS = {}


def report(name):
    """One analysis per model (at 224; the rules at other resolutions need only r and m)."""
    if name not in _REPORTS:
        with torch.device("meta"):  # no weight initialisation
            model = getattr(torchvision.models, name)()
        _REPORTS[name] = rf.analyze(model, 224)
    return _REPORTS[name]


@pytest.mark.parametrize("name", sorted(UNPRODUCTIVE))
@pytest.mark.parametrize("res", [32, 64, 128, 224])
def test_unproductive_layers_are_rfa_toolbox_ones(name, res):
    rep = report(name)
    got = {}
    for row, why in rep.unproductive_reasons(res):
        got.setdefault(why, []).append(row.name)
    assert got == UNPRODUCTIVE[name][res]
    assert [r.name for r in rep.unproductive(res)] == [r.name for r, _ in rep.unproductive_reasons(res)]
    assert [r.name for r in rep.underutilised(res)] == UNDERUTILISED[name][res]


@pytest.mark.parametrize("name", sorted(RESOLUTION_RANGE))
def test_lower_bound_and_min_feasible_resolution_are_rfa_toolbox_ones(name):
    rep = report(name)
    low, feasible = RESOLUTION_RANGE[name]
    assert rep.lower_bound_resolution == (low, low)
    assert rep.min_feasible_resolution == (feasible, feasible)


def test_resnet18_feature_map_rule_by_hand():
    # ResNet-18's cumulative stride entering each 3×3 convolution: 4 in layer1, then 8 / 16 / 32 from the
    # second convolution of each stage's first block on (its first one still sees the previous stage's map).
    # A 3×3 convolution is unproductive by the "map" test when 32 // m_in ≤ 3: m_in = 16 or 32.
    m_in = {}
    for stage, m in zip((1, 2, 3, 4), (4, 8, 16, 32)):
        for block in (0, 1):
            m_in[f"layer{stage}.{block}.conv1"] = m if (block or stage == 1) else m // 2
            m_in[f"layer{stage}.{block}.conv2"] = m
    expect = sorted(n for n, m in m_in.items() if 32 // m <= 3)
    got = sorted(r.name for r, why in report("resnet18").unproductive_reasons(32) if "map" in why)
    assert got == expect == sorted(UNPRODUCTIVE["resnet18"][32]["map"] + UNPRODUCTIVE["resnet18"][32]["r_min+map"])
    assert all(r.in_m == (m_in[r.name],) * 2 for r in report("resnet18").layers if r.name in m_in)


def test_eq5_rule_and_the_summary():
    rep = report("resnet18")
    # The paper's Eq. 5 alone: only the layers whose input's r_min reaches the image.
    assert [r.name for r in rep.unproductive(32, rule="eq5")] == ["layer3.1.conv2", "layer4.0.conv2", "layer4.1.conv2"]
    with pytest.raises(ValueError, match="`rule` must be one of"):
        rep.unproductive(32, rule="paper")
    with torch.device("meta"):
        small = rf.analyze(torchvision.models.resnet18(), 64)
    text = small.summary()
    assert "unproductive at 64×64: 3 layers: layer4.0.conv2 (map), layer4.1.conv1 (map), layer4.1.conv2 (r_min+map)" in text
    assert "underutilised at 64×64 (r_min past the image): 1: layer3.1.conv2" in text
    assert "lower bound (rfa-toolbox): 96" in text
