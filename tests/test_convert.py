"""resizeops.convert (issue 5 item 2): torchvision models and user models get learnable
resizers, run forward and backward, and have the intended number of resizers; what
cannot be converted is refused with a message naming it."""

import pytest
import torch

import resizeops
from resizeops.convert import convert
from resizeops.nn import DynOPool2d

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
