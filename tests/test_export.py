"""Deploying without resizeops: ONNX export and an ATen-only torch.export of frozen models.

* The ATen decompositions (``resizeops/core/export.py``) are the ops' math: exactly (bit
  for bit) where every coordinate and product is exact, within rounding elsewhere,
  and the known non-finite difference is pinned.
* Every layer kind and every ``convert`` mode on every family ``convert`` supports:
  the frozen model exported with plain ``torch.onnx.export`` (default exporter, a
  dynamic batch) holds standard ONNX ops only and runs in ONNX Runtime in a child
  process where ``import resizeops`` (and ``import torch``) fail, at another batch
  size, matching PyTorch; ``torch.export`` keeps the custom ops, and
  ``run_decompositions(resizeops.decompositions())`` removes them, matching too.
* What cannot be exported says why: a model that is not frozen, a dynamic H or W.
* The README's "Deploying" recipe runs as written.

onnx, onnxscript and onnxruntime are in requirements.txt; without them these tests
skip, except under RESIZEOPS_REQUIRE_EXT=1 (CI), where they fail.
"""

import importlib
import io
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import resizeops
from resizeops import export as rexport
from resizeops import reference
from resizeops.nn import DynOPool2d, ElasticBlock, ElasticBottleneck, ShapeAdaptor, ShapeAdaptorMaxPool2d
from small_models import small_vgg_layers

convert_module = importlib.import_module("resizeops.convert")  # `resizeops.convert` is the function
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = {"resizeops::dynopool2d", "resizeops::resize_blend", "resizeops::shape_adaptor_maxpool"}
REL_TOL = 1e-5  # of the output's scale (max |output|), float32


def _require(name):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        if os.environ.get("RESIZEOPS_REQUIRE_EXT") == "1":
            pytest.fail(f"{name} must be installed here (RESIZEOPS_REQUIRE_EXT=1, as in CI): {e}")
        pytest.skip(f"{name} is not installed: {e}")


@pytest.fixture(scope="module")
def onnx():
    _require("onnxscript")  # torch.onnx.export's default exporter needs it
    _require("onnxruntime")  # the child process runs the models with it
    return _require("onnx")


# =============================================================================
# Helpers
# =============================================================================

# Runs an ONNX model where neither resizeops nor torch can be imported: a deployment
# machine. Inputs and outputs travel as .npz files.
_ORT_CHILD = r"""
import sys
sys.modules["resizeops"] = None  # `import resizeops` raises ImportError from here on
sys.modules["torch"] = None
import numpy as np
import onnxruntime
try:
    import resizeops
except ImportError:
    pass
else:
    raise SystemExit("resizeops is importable in the child process")
model, inputs, outputs = sys.argv[1:4]
session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
data = np.load(inputs)
feed = {arg.name: data[f"arr_{k}"] for k, arg in enumerate(session.get_inputs())}
np.savez(outputs, *session.run(None, feed))
"""


def run_in_onnxruntime(path, inputs, tmp_path):
    """The outputs of the ONNX model at ``path`` on ``inputs``, computed in a child process without resizeops."""
    import numpy as np

    np.savez(tmp_path / "inputs.npz", *[t.detach().numpy() for t in inputs])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, "-c", _ORT_CHILD, str(path), str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz")]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    data = np.load(tmp_path / "outputs.npz")
    return [torch.from_numpy(data[f"arr_{k}"]) for k in range(len(data.files))]


def standard_onnx_ops(path):
    """The op types of an ONNX file, after checking that it holds standard ONNX only (opset ≥ 17)."""
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    opsets = {o.domain: o.version for o in model.opset_import}
    assert set(opsets) <= {"", "ai.onnx"} and max(opsets.values()) >= 17, opsets
    assert not model.functions, [f.name for f in model.functions]
    for node in model.graph.node:
        assert node.domain in ("", "ai.onnx"), (node.domain, node.op_type)
        assert not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)
    return {node.op_type for node in model.graph.node}


def custom_ops(program):
    """The resizeops custom ops called in an ExportedProgram (any submodule)."""
    found = set()
    for gm in program.graph_module.modules():
        if isinstance(gm, torch.fx.GraphModule):
            for node in gm.graph.nodes:
                if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
                    name = node.target.name()
                    if name.startswith("resizeops"):
                        found.add(name)
    return found


def assert_rel_close(actual, expected, what=""):
    err = (actual.double() - expected.double()).abs().max().item()
    scale = expected.double().abs().max().item()
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert err <= REL_TOL * scale, f"{what}: max error {err:.3e} > {REL_TOL:g} × output scale {scale:.3e}"


def _batch():
    return ({0: torch.export.Dim("batch")},)


def check_deployment(frozen, x, x_run, tmp_path):
    """Export ``frozen`` at ``x`` (dynamic batch) to ONNX and to an ATen-only program, run
    both at ``x_run`` (another batch size) and compare with PyTorch. Returns the ONNX op types."""
    with torch.no_grad():
        want = frozen(x_run)
    path = tmp_path / "model.onnx"
    torch.onnx.export(frozen, (x,), str(path), dynamic_shapes=_batch())  # the default (dynamo) exporter
    onnx_ops = standard_onnx_ops(path)
    (got,) = run_in_onnxruntime(path, [x_run], tmp_path)
    assert_rel_close(got, want, "ONNX Runtime")

    program = torch.export.export(frozen, (x,), dynamic_shapes=_batch())
    kept = custom_ops(program)
    assert kept and kept <= OPS  # the fast kernels stay unless asked
    aten = program.run_decompositions(resizeops.decompositions())
    assert custom_ops(aten) == set()
    with torch.no_grad():
        assert_rel_close(aten.module()(x_run), want, "decomposed torch.export program")
    return onnx_ops


# =============================================================================
# The decompositions are the ops' math
# =============================================================================


def test_dynopool_decomposition_is_the_op_bit_for_bit_where_arithmetic_is_exact():
    # Integer pixels and power-of-two sizes: every query coordinate, bilinear weight and
    # product is exact in floating point, so any two forms of the same formula agree
    # bit for bit, and any difference in the formula (half-pixel offset, border
    # clamp, up-sampling, cell grouping) would show. H = 1, up-sampling (2·Ho > H),
    # one-pixel outputs and both memory formats included.
    g = torch.Generator().manual_seed(0)
    n = 0
    for h in (1, 4, 16):
        for w in (2, 8):
            for ho in (1, 2, 8, 32):
                for wo in (1, 4, 16):
                    for fmt in (torch.contiguous_format, torch.channels_last):
                        for dtype in (torch.float64, torch.float32):
                            x = torch.randint(-8, 9, (2, 3, h, w), generator=g).to(dtype).contiguous(memory_format=fmt)
                            alpha = torch.tensor([h / ho, w / wo], dtype=dtype)
                            got = rexport._dynopool2d(x, alpha, [ho, wo])
                            for backend in ("reference", "cpu"):
                                if backend == "cpu" and not _backend_runs("cpu"):
                                    continue
                                want = resizeops.dynopool2d(x, alpha, (ho, wo), backend=backend)
                                assert torch.equal(got, want), (h, w, ho, wo, fmt, dtype, backend)
                                n += 1
                            assert got.is_contiguous(memory_format=reference.output_memory_format(x))
    assert n >= 288


def _backend_runs(name):
    from resizeops.core import _dispatch

    reason = _dispatch.get_backend(name).not_supported_reason("dynopool2d", torch.device("cpu"))
    if reason and name == "cpu" and os.environ.get("RESIZEOPS_REQUIRE_EXT") == "1":
        pytest.fail(f"the cpu backend must run here (RESIZEOPS_REQUIRE_EXT=1): {reason}")
    return not reason


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["NCHW", "NHWC"])
def test_dynopool_decomposition_is_the_op_within_rounding(fmt):
    # Any sizes (odd, prime, min_size above rnd(H/α), up-sampling α < 1) with random
    # float64 data: the forms round differently (the op goes through the normalised
    # coordinate, losing up to ~H·2⁻⁵³ of a pixel), nothing more.
    g = torch.Generator().manual_seed(1)
    for h, w in [(1, 5), (3, 7), (7, 3), (9, 13), (17, 31), (33, 20)]:
        for ho in sorted({1, 2, 3, max(1, h // 2), (h + 1) // 2, h, 2 * h + 1}):
            for wo in sorted({2, (w + 1) // 2, w, 2 * w - 1}):
                x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64).contiguous(memory_format=fmt)
                alpha = torch.tensor([h / ho, w / wo], dtype=torch.float64)
                got = rexport._dynopool2d(x, alpha, [ho, wo])
                want = resizeops.dynopool2d(x, alpha, (ho, wo), backend="reference")
                bound = 1e-13 * max(h, w) * x.abs().max().item()
                assert (got - want).abs().max().item() <= bound, (h, w, ho, wo)
    # float32: the tolerance of the exported models.
    x = torch.randn(4, 8, 33, 20, generator=g).contiguous(memory_format=fmt)
    alpha = torch.tensor([1.7, 0.8])
    got = rexport._dynopool2d(x, alpha, [19, 25])
    assert_rel_close(got, resizeops.dynopool2d(x, alpha, (19, 25)), "float32")


def test_dynopool_decomposition_half_types_compute_in_float32():
    g = torch.Generator().manual_seed(2)
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.randn(2, 4, 11, 9, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
        alpha = torch.tensor([1.6, 2.3])
        got = rexport._dynopool2d(x, alpha, [7, 4])
        want = resizeops.dynopool2d(x, alpha, (7, 4), backend="reference")
        assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last)
        # Both compute in float32 and round once: equal up to that rounding.
        torch.testing.assert_close(got.float(), want.float(), atol=0, rtol=2 ** -7 if dtype == torch.bfloat16 else 2 ** -10)


def test_dynopool_decomposition_non_finite_values_where_a_weight_is_zero():
    # The one difference beyond rounding (docs/DESIGN.md, "Deploying"): a bilinear
    # weight exactly 0 times a non-finite neighbour. The op follows grid_sample: it
    # skips a tap past the last pixel but multiplies an in-bounds one by 0; the resize
    # form blends the last pixel with itself (0·inf = NaN) and copies an axis whose
    # size does not change (no 0·NaN).
    inf, nan = float("inf"), float("nan")
    x = torch.full((1, 1, 1, 1), inf)
    alpha = torch.ones(2)
    assert resizeops.dynopool2d(x, alpha, (1, 1), backend="reference").item() == inf
    assert rexport._dynopool2d(x, alpha, [1, 1]).isnan().item()
    x = torch.tensor([[[[0.5, -1.0, nan, 2.0]]]])  # W = 4 → Wo = 2: queries on pixels 0, 1, 2, 3
    op = resizeops.dynopool2d(x, torch.tensor([1.0, 2.0]), (1, 2), backend="reference")
    form = rexport._dynopool2d(x, torch.tensor([1.0, 2.0]), [1, 2])
    assert op[0, 0, 0, 0].isnan() and form[0, 0, 0, 0].item() == 0.5  # query 1 = 1·x[1] + 0·x[2]
    assert op[0, 0, 0, 1].isnan() and form[0, 0, 0, 1].isnan()
    # Away from zero weights, non-finite values go where the op puts them.
    x = torch.randn(1, 2, 9, 13)
    x[0, 0, 3, 4], x[0, 1, 5, 2] = inf, nan
    alpha = torch.tensor([9 / 5, 13 / 6])
    op = resizeops.dynopool2d(x, alpha, (5, 6), backend="reference")
    form = rexport._dynopool2d(x, alpha, [5, 6])
    assert torch.equal(op.isnan(), form.isnan()) and torch.equal(op.isinf(), form.isinf()) and op.isnan().any()
    assert torch.equal(op[op.isinf()], form[form.isinf()]) and op.isinf().any()


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["NCHW", "NHWC"])
def test_blend_decompositions_are_the_reference(fmt):
    g = torch.Generator().manual_seed(3)
    x1 = torch.randn(2, 3, 8, 9, generator=g).contiguous(memory_format=fmt)
    x2 = torch.randn(2, 3, 17, 19, generator=g)
    w1, w2 = torch.tensor(0.3), torch.tensor(1.7)
    for size, ac, scales in [((12, 14), True, None), ((12, 14), False, None), ((17, 19), True, None),
                             ((16, 17), False, ((2.0, 2.0), None)), ((5, 23), False, (None, (0.5, 1.25)))]:  # fmt: skip
        got = rexport._resize_blend(x1, x2, w1, w2, list(size), ac, *(scales or (None, None)))
        want = reference.resize_blend(x1, x2, w1, w2, size, ac, scales)
        assert torch.equal(got, want) and got.is_contiguous(memory_format=reference.output_memory_format(x1, x2))
        assert_rel_close(got, resizeops.resize_blend(x1, x2, w1, w2, size, ac, scales), "resize_blend")
    x = torch.randn(2, 3, 15, 17, generator=g).contiguous(memory_format=fmt)
    for size, ac in [((11, 13), True), ((11, 13), False), ((7, 8), True), ((15, 17), False)]:
        got = rexport._shape_adaptor_maxpool(x, w1, w2, list(size), ac)
        assert torch.equal(got, reference.shape_adaptor_maxpool(x, w1, w2, size, ac))
        assert_rel_close(got, resizeops.shape_adaptor_maxpool(x, w1, w2, size, ac), "shape_adaptor_maxpool")


def test_decompositions_table():
    table = resizeops.decompositions()
    default = torch.export.default_decompositions()
    for name, fn in rexport.DECOMPOSITIONS.items():
        assert table[getattr(torch.ops.resizeops, name).default] is fn
    assert set(default.keys()) <= set(table.keys())
    mine = {torch.ops.aten.relu.default: torch.relu}
    out = resizeops.decompositions(mine)
    assert len(mine) == 1 and len(out) == 4  # the given table is not modified


# =============================================================================
# Every layer kind, every convert mode: ONNX Runtime and ATen-only torch.export
# =============================================================================


class _Blend(nn.Module):
    """A ShapeAdaptor between a convolution and its max-pool (its two branches)."""

    def __init__(self, align_corners, cin=3):
        super().__init__()
        self.conv = nn.Conv2d(cin, 8, 3, padding=1)
        self.adaptor = ShapeAdaptor(alpha_init=0.3, align_corners=align_corners)

    def forward(self, x):
        y = self.conv(x)
        return self.adaptor(nn.functional.max_pool2d(y, 2), y)


def _conv(cin=3, cout=8):
    return nn.Conv2d(cin, cout, 3, padding=1)


LAYERS = {
    # α < 1 on W (up-sampling), min_size above rnd(H/α) on H.
    "DynOPool2d": lambda: nn.Sequential(_conv(), DynOPool2d((0.15, 1.3), min_size=3)),
    "ShapeAdaptor-align_corners": lambda: _Blend(True),
    "ShapeAdaptor-half_pixel": lambda: _Blend(False),
    "ShapeAdaptorMaxPool2d": lambda: nn.Sequential(_conv(), ShapeAdaptorMaxPool2d(alpha_init=-0.4)),
    "ElasticBlock": lambda: ElasticBlock(_conv(), _conv()),
    "ElasticBottleneck": lambda: nn.Sequential(_conv(3, 16), ElasticBottleneck(16, 16, cardinality=4)),
}


@pytest.mark.parametrize("kind", list(LAYERS))
def test_layer_deploys_without_resizeops(onnx, kind, tmp_path):
    torch.manual_seed(0)
    frozen = resizeops.freeze(LAYERS[kind]().eval())
    if kind == "DynOPool2d":
        assert frozen[1].output_size((15, 17)) == (3, 22)  # min_size and up-sampling are in play
    onnx_ops = check_deployment(frozen, torch.randn(2, 3, 15, 17), torch.randn(5, 3, 15, 17), tmp_path)
    assert "Resize" in onnx_ops


def test_channels_last_model_deploys(onnx, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(
        _conv(), DynOPool2d((0.7, 0.45)), ShapeAdaptorMaxPool2d(alpha_init=0.5), ElasticBlock(_conv(8, 8), _conv(8, 8)),
    ).eval()
    frozen = resizeops.freeze(model).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 21, 18).contiguous(memory_format=torch.channels_last)
    x_run = torch.randn(5, 3, 21, 18).contiguous(memory_format=torch.channels_last)
    check_deployment(frozen, x, x_run, tmp_path)


class TinyResNet(nn.Module):
    """A ResNet of torchvision blocks, narrow (convert's ResNet family: torchvision's attribute names)."""

    def __init__(self):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        def shortcut(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))

        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2, shortcut(8, 16)), BasicBlock(16, 16))
        self.layer3 = nn.Sequential(BasicBlock(16, 16, 2, shortcut(16, 16)))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _tiny_vgg():
    # Max-pool, strided convolution and average pool: every down-sampling layer a VGG can hold.
    return nn.Sequential(*small_vgg_layers(), nn.AdaptiveAvgPool2d(1))


def _tiny_mobilenet_v2():
    from torchvision.models.mobilenetv2 import MobileNetV2

    # Five blocks: enough positions for every mode's default number of adaptors at 32 pixels.
    setting = [[1, 8, 1, 1], [2, 8, 2, 2], [2, 16, 2, 1]]
    return MobileNetV2(num_classes=5, inverted_residual_setting=setting)


class _KeepSize(nn.Module):
    """A ConvNeXt-like residual block that keeps its input's size (depth-wise 7×7, point-wise MLP)."""

    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.mlp = nn.Sequential(nn.Conv2d(c, 2 * c, 1), nn.GELU(), nn.Conv2d(2 * c, c, 1))

    def forward(self, x):
        return x + self.mlp(self.dw(x))


class TinyStack(nn.Module):
    """convert's stack family (ConvNeXt): size-keeping blocks between strided convolutions."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.stage1 = nn.Sequential(_KeepSize(8), _KeepSize(8))
        self.down = nn.Conv2d(8, 16, 2, stride=2)
        self.stage2 = nn.Sequential(_KeepSize(16), _KeepSize(16), _KeepSize(16))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))

    def forward(self, x):
        return self.head(self.stage2(self.down(self.stage1(self.stem(x)))))


# One small model per family `convert` knows (its Shape Adaptor families; "dynopool"
# converts any network and runs on each of them too).
FAMILIES = {"vgg": _tiny_vgg, "resnet": TinyResNet, "mobilenet_v2": _tiny_mobilenet_v2, "stack": TinyStack}
CONVERSIONS = [("dynopool", None)] + [("shape_adaptor", mode) for mode in convert_module._SA_MODES]


def _learned(model, seed):
    """Move every resizer's α off its initial value, as training would (sizes then differ from the human ones)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in resizeops.nn.resizers(model):
            if isinstance(m, DynOPool2d):
                m.alpha.copy_(1.4 + 1.2 * torch.rand(2, generator=g))  # r in (0.38, 0.71) per axis
            else:
                m.alpha.add_(torch.rand((), generator=g) - 0.5)
    return model


@pytest.mark.parametrize("family", sorted(convert_module._SA_CONVERTERS))
@pytest.mark.parametrize("method,mode", CONVERSIONS, ids=[m if m else "dynopool" for _, m in CONVERSIONS])
def test_converted_model_deploys_without_resizeops(onnx, family, method, mode, tmp_path):
    pytest.importorskip("torchvision")
    if family not in FAMILIES:
        pytest.fail(f"convert supports the family {family!r}: add a small model of it to FAMILIES in {__file__}")
    torch.manual_seed(0)
    options = {} if mode is None else {"input_dim": 32, "mode": mode}
    model = resizeops.convert(FAMILIES[family]().eval(), method, **options).eval()
    assert resizeops.nn.resizers(model)
    frozen = resizeops.freeze(_learned(model, seed=len(family)))
    check_deployment(frozen, torch.randn(2, 3, 32, 32), torch.randn(5, 3, 32, 32), tmp_path)


def test_torchscript_exporter_with_a_dynamic_batch(onnx, tmp_path):
    # The deprecated exporter (dynamo=False) has no decomposition table: the ops record
    # their decompositions in its trace.
    torch.manual_seed(0)
    model = nn.Sequential(
        _conv(), DynOPool2d((0.6, 0.7)), ShapeAdaptorMaxPool2d(alpha_init=0.4),
        ElasticBlock(_conv(8, 8), _conv(8, 8)), _Blend(False, cin=8),
    )  # fmt: skip
    frozen = resizeops.freeze(model.eval())
    x, x_run = torch.randn(2, 3, 33, 29), torch.randn(5, 3, 33, 29)
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and trace warnings
        torch.onnx.export(frozen, (x,), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    standard_onnx_ops(path)
    (got,) = run_in_onnxruntime(path, [x_run], tmp_path)
    with torch.no_grad():
        assert_rel_close(got, frozen(x_run), "ONNX Runtime (TorchScript exporter)")


# =============================================================================
# What cannot be exported says why
# =============================================================================


def _named_model():
    return nn.Sequential(_conv(), nn.Sequential(nn.ReLU(), DynOPool2d(0.6)), ShapeAdaptorMaxPool2d()).eval()


def test_exporting_a_model_that_is_not_frozen_names_the_layer_and_freeze(onnx):
    x = torch.randn(2, 3, 16, 16)
    why = r"DynOPool2d '1\.1' is not frozen.*resizeops\.freeze\(model\)"
    with pytest.raises(ValueError, match=why):
        torch.export.export(_named_model(), (x,))
    with pytest.raises(Exception, match=why) as info:  # torch.onnx's TorchExportError, from our ValueError
        torch.onnx.export(_named_model(), (x,))
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(Exception, match="DynOPool2d is not frozen"):  # dynamo wraps it; no frames to name the layer
        torch.export.export(_named_model(), (x,), strict=True)
    with pytest.raises(ValueError, match=why), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation warning
        torch.onnx.export(_named_model(), (x,), io.BytesIO(), dynamo=False)
    model = _named_model()
    model(x)  # the model still works, and nothing was frozen on the way
    assert not any(m.frozen for m in resizeops.nn.resizers(model))
    torch.export.export(resizeops.freeze(model), (x,))


def test_dynamic_height_or_width_is_refused_with_the_reason(onnx):
    frozen = resizeops.freeze(_named_model())
    x = torch.randn(2, 3, 16, 16)
    why = r"dynamic H .*cannot be exported with a dynamic height or width.*fixed by resizeops\.freeze"
    with pytest.raises(ValueError, match=why):
        torch.export.export(frozen, (x,), dynamic_shapes=({2: torch.export.Dim("h")},))
    # dynamo (strict export, the ONNX exporter's fallback) would compute the sizes symbolically
    # and the ONNX exporter then fix them silently: refused there too.
    with pytest.raises(Exception, match=why):
        torch.export.export(frozen, (x,), dynamic_shapes=({2: torch.export.Dim("h")},), strict=True)
    with pytest.raises(Exception, match=why.replace("H ", "H and W ")):
        torch.onnx.export(frozen, (x,), dynamic_shapes=({0: "batch", 2: "h", 3: "w"},))
    with pytest.raises(Exception, match=why.replace("H ", "W ")):
        torch.onnx.export(frozen, (x,), input_names=["x"], dynamic_axes={"x": {3: "w"}})
    # ELASTIC: the same refusal (its sizes are the input's, its merge a fixed resize).
    elastic = ElasticBlock(_conv(), _conv()).eval()
    with pytest.raises(ValueError, match=why.replace("H ", "W ")):
        torch.export.export(elastic, (torch.randn(2, 3, 16, 16),), dynamic_shapes=({3: torch.export.Dim("w")},))


def test_dynamic_batch_keeps_the_output_limit_per_image(monkeypatch):
    # A symbolic batch is not read (that would specialise it), but each image still counts.
    frozen = resizeops.freeze(nn.Sequential(DynOPool2d(0.5)).eval())
    x = torch.randn(2, 4, 16, 16)
    monkeypatch.setattr(resizeops, "MAX_OUTPUT_NUMEL", 4 * 8 * 8 - 1)
    with pytest.raises(ValueError, match="MAX_OUTPUT_NUMEL"):
        torch.export.export(frozen, (x,), dynamic_shapes=_batch())
    monkeypatch.setattr(resizeops, "MAX_OUTPUT_NUMEL", 4 * 8 * 8)
    program = torch.export.export(frozen, (x,), dynamic_shapes=_batch())
    assert isinstance(program.module()(torch.randn(7, 4, 16, 16)), torch.Tensor)


def test_compile_with_dynamic_shapes_keeps_the_custom_ops():
    # The decompositions sit in torch's global table; torch.compile still gets the ops
    # (and their fused kernels), with a dynamic batch too.
    from torch._dynamo.testing import AotEagerAndRecordGraphs

    model = nn.Sequential(_conv(), DynOPool2d((0.6, 0.7)), ShapeAdaptorMaxPool2d(alpha_init=0.3)).eval()
    frozen = resizeops.freeze(model)
    backend = AotEagerAndRecordGraphs()
    compiled = torch.compile(frozen, backend=backend, dynamic=True, fullgraph=True)
    with torch.no_grad():
        for n in (2, 3):
            x = torch.randn(n, 3, 20, 20)
            torch.testing.assert_close(compiled(x), frozen(x))
    assert len(backend.fw_graphs) == 1
    targets = {str(node.target) for node in backend.fw_graphs[0].graph.nodes}
    assert {"resizeops.dynopool2d.default", "resizeops.shape_adaptor_maxpool.default"} <= targets


# =============================================================================
# The README's recipe
# =============================================================================


def test_readme_deploying_recipe_runs_as_written(onnx, tmp_path):
    pytest.importorskip("torchvision")
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    block = re.search(r"<!-- deploy:begin -->\s*```python\n(.*?)```\s*<!-- deploy:end -->", readme, re.S)
    assert block, "README.md has no deploy:begin / deploy:end python block"
    script = tmp_path / "recipe.py"
    script.write_text(block.group(1) + "\nprint('recipe ok')\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and "recipe ok" in r.stdout, r.stderr[-3000:]
    assert (tmp_path / "model.onnx").exists()
