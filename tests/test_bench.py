"""The benchmark harness (resizeops.bench): case definitions and `python -m resizeops bench` on the CPU."""

import csv
import math
import os

import pytest
import torch

import resizeops
from resizeops import bench
from resizeops.core.kernel_forms import DEFAULT, VARIANTS, KernelForms, Variant


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- case definitions -----------------------------------------------------------


def test_case_tiers_and_names():
    cpu = bench.cases_for(None, "cpu")
    assert [c.name for c in cpu] == ["dynopool-small", "blend-sa-small", "blend-elastic-small", "sa-cell-small"]
    assert all(c.tier == "gpu" for c in bench.cases_for("gpu"))
    assert len(bench.cases_for("all")) == len(bench.CASES)
    assert [c.name for c in bench.cases_for("blend-elastic,dynopool-small")] == ["blend-elastic", "dynopool-small"]
    with pytest.raises(ValueError, match="unknown case"):
        bench.cases_for("nope")


def test_gpu_tier_cases_parameters():
    # The sizes of the kernel targets (docs/BENCHMARKS.md), without materialising the GPU-sized inputs.
    c = bench.CASES["dynopool-cifar"]
    assert c.shape == (128, 64, 32, 32) and c.alpha == (2.0, 1.6) and c.out_shape == (128, 64, 16, 20)
    assert bench.CASES["dynopool-imagenet"].out_size == (112, 140)
    assert bench.CASES["dynopool-resnet"].out_size == (28, 35)
    sa = bench.CASES["blend-sa-cifar-vgg"]
    assert (sa.shape, sa.shape2, sa.out_size, sa.align_corners) == ((128, 64, 16, 16), (128, 64, 32, 32), (24, 24), True)
    assert bench.CASES["blend-sa-imagenet-vgg"].out_size == (168, 168)
    assert bench.CASES["blend-sa-resnet50"].out_shape == (64, 256, 42, 42)
    el = bench.CASES["blend-elastic"]
    assert (el.scales, el.align_corners, el.out_size, el.sigma) == (((2.0, 2.0), None), False, (56, 56), None)
    # Ideal bytes: fwd reads x and writes out; fwd+bwd adds grad_out, x, grad_x.
    e = 4
    x, out = 128 * 64 * 32 * 32, 128 * 64 * 16 * 20
    assert c.ideal_bytes(torch.float32, "fwd") == (x + out) * e
    assert c.ideal_bytes(torch.float32, "fwd+bwd") == (x + out + out + 2 * x) * e
    assert c.ideal_bytes(torch.bfloat16, "fwd") == (x + out) * 2
    # shape_adaptor_maxpool: x read once, out written once (the pooled map never exists).
    cell = bench.CASES["sa-cell-imagenet-vgg"]
    assert (cell.shape, cell.out_size, cell.align_corners) == ((64, 64, 224, 224), (168, 168), True)
    x, out = 64 * 64 * 224 * 224, 64 * 64 * 168 * 168
    assert cell.ideal_bytes(torch.float32, "fwd") == (x + out) * e
    assert cell.ideal_bytes(torch.float32, "fwd+bwd") == (x + out + out + 2 * x) * e


@pytest.mark.parametrize("name", [c.name for c in bench.cases_for("cpu")])
@pytest.mark.parametrize("channels_last", [False, True])
def test_make_inputs_shapes(name, channels_last):
    case = bench.CASES[name]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    inp = case.make_inputs("cpu", torch.bfloat16, requires_grad=False, channels_last=channels_last)
    first = "x1" if case.op == "resize_blend" else "x"
    assert case.make_inputs("cpu", torch.bfloat16, channels_last=channels_last)[first].equal(inp[first])  # deterministic
    if case.op == "shape_adaptor_maxpool":
        assert tuple(inp["x"].shape) == case.shape and inp["x"].is_contiguous(memory_format=fmt)
        assert tuple(inp["size"]) == case.out_size
        assert inp["w1"].item() == pytest.approx(case.k * (1 - case.sigma))
    elif case.op == "dynopool2d":
        x = inp["x"]
        assert tuple(x.shape) == case.shape and x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=fmt)
        assert inp["alpha"].shape == (2,) and inp["alpha"].dtype == torch.float32
        assert tuple(inp["out_size"]) == resizeops.dynopool2d_output_size(case.shape[2:], case.alpha)
    else:
        assert tuple(inp["x1"].shape) == case.shape and tuple(inp["x2"].shape) == case.shape2
        assert inp["x1"].is_contiguous(memory_format=fmt) and inp["x2"].is_contiguous(memory_format=fmt)
        assert tuple(inp["size"]) == case.out_size
        if case.sigma is not None:  # Shape Adaptor: w1 = 2(1 - σ), w2 = 2σ as 0-d tensors
            assert inp["w1"].dim() == 0 and inp["w1"].item() == pytest.approx(2 * (1 - case.sigma))
            assert inp["w2"].item() == pytest.approx(2 * case.sigma)
        else:
            assert (inp["w1"], inp["w2"]) == (1.0, 1.0)
    assert "grad_out" not in inp and not case.grad_leaves(inp)

    g = case.make_inputs("cpu", torch.float32, requires_grad=True, channels_last=channels_last)
    assert tuple(g["grad_out"].shape) == case.out_shape
    leaves = case.grad_leaves(g)
    n_leaves = {"dynopool2d": 2, "shape_adaptor_maxpool": 3}.get(case.op, 4 if case.sigma is not None else 2)
    assert len(leaves) == n_leaves
    providers = ("reference", bench.EAGER) + ((bench.POOL_THEN_BLEND,) if case.op == "shape_adaptor_maxpool" else ())
    for provider in providers:
        out = case.run(g, provider)
        assert tuple(out.shape) == case.out_shape
        assert out.is_contiguous(memory_format=fmt)
        out.backward(g["grad_out"])
        assert all(t.grad is not None and t.grad.shape == t.shape for t in leaves)


def _probe(monkeypatch, name, backend="reference", forms=KernelForms(), ops=("dynopool2d",), nchw_only=False):
    """Register a variant ``name`` of ``backend`` in the backend registry for the test."""
    monkeypatch.setitem(VARIANTS, name, Variant(name, backend, forms, ops, "a test's probe", nchw_only=nchw_only))
    return name


def test_providers_for_cpu():
    case = bench.CASES["dynopool-small"]
    available = [b.name for b in resizeops.backends("cpu", op="dynopool2d") if b.available and b.name != "triton"]
    assert bench.providers_for(case, "cpu") == available + [bench.EAGER, bench.COMPILED]
    assert bench.providers_for(case, "cpu", compile=False) == available + [bench.EAGER]
    notes = []
    assert bench.providers_for(case, "cpu", wanted=["cuda", bench.EAGER], notes=notes) == [bench.EAGER]
    assert notes and "cuda" in notes[0]
    # The bench's variants are the backend registry's.
    assert bench.VARIANTS is VARIANTS
    assert bench.NCHW_ONLY == tuple(n for n, v in VARIANTS.items() if v.nchw_only)
    assert {"cuda-rows", "cuda-separable", "cuda-fused-separable", "triton-rows"} <= set(bench.NCHW_ONLY)


def test_variants_run_only_when_named_and_only_for_their_ops(monkeypatch):
    dyno, blend = bench.CASES["dynopool-small"], bench.CASES["blend-sa-small"]
    _probe(monkeypatch, "ref-probe")
    _probe(monkeypatch, "ref-all-probe", ops=bench.OPS)
    for case in (dyno, blend):
        assert not set(bench.providers_for(case, "cpu")) & set(VARIANTS)  # never unless named
    wanted = ["ref-probe", "ref-all-probe", bench.EAGER]
    assert bench.providers_for(dyno, "cpu", wanted=wanted) == ["ref-probe", "ref-all-probe", bench.EAGER]
    assert bench.providers_for(blend, "cpu", wanted=wanted) == ["ref-all-probe", bench.EAGER]
    # The registry's own: cuda-tile applies to every op, cuda-lanes to dynopool2d only.
    assert VARIANTS["cuda-tile"].ops == tuple(bench.OPS) and VARIANTS["cuda-lanes"].ops == ("dynopool2d",)


def test_variant_of_an_unavailable_backend_is_skipped_with_a_note():
    case = bench.CASES["dynopool-small"]
    assert "cuda-lanes" not in bench.providers_for(case, "cpu")
    notes = []
    assert bench.providers_for(case, "cpu", wanted=["cuda-lanes", bench.EAGER], notes=notes) == [bench.EAGER]
    assert len(notes) == 1 and notes[0].startswith("dynopool2d: 'cuda-lanes' skipped: backend 'cuda' is not available")
    # ... and not for an op it does not apply to (it would not run there anyway).
    notes = []
    assert bench.providers_for(bench.CASES["blend-sa-small"], "cpu", wanted=["cuda-lanes"], notes=notes) == []
    assert notes == []


def test_nchw_only_variants_are_skipped_in_channels_last(monkeypatch):
    case = bench.CASES["dynopool-small"]
    wanted = [_probe(monkeypatch, "ref-rows-probe", nchw_only=True), _probe(monkeypatch, "ref-probe")]
    assert bench.providers_for(case, "cpu", wanted=wanted) == wanted
    notes = []
    assert bench.providers_for(case, "cpu", wanted=wanted, channels_last=True, notes=notes) == ["ref-probe"]
    assert notes == ["dynopool2d: 'ref-rows-probe' skipped: NCHW only (in channels_last it is the default)"]


def _record_forms(monkeypatch, op="dynopool2d"):
    """Make the reference backend's ``op`` kernels take ``forms=`` (as the cuda and triton ones do)
    and record, per call, ("fwd" or "bwd", the forms); returns the record."""
    from resizeops.core import _dispatch

    kernels = _dispatch.get_backend("reference").kernels
    real = kernels[op]
    seen = []

    def forward(*args, forms=DEFAULT):
        seen.append(("fwd", forms))
        return real.forward(*args)

    def backward(*args, forms=DEFAULT):
        seen.append(("bwd", forms))
        return real.backward(*args)

    monkeypatch.setitem(kernels, op, _dispatch.Kernels(forward, backward, real.deterministic_backward))
    return seen


def test_variant_runs_its_backend_with_its_forms(monkeypatch):
    # A variant provider is the public op called with backend=<variant name>: the dispatcher
    # runs the variant's backend with its forms, forward and backward; nothing else is set.
    seen = _record_forms(monkeypatch)
    lanes = KernelForms(lanes=4)
    _probe(monkeypatch, "ref-lanes-probe", forms=lanes)
    case = bench.CASES["dynopool-small"]
    inputs = case.make_inputs("cpu", requires_grad=True)
    environ = dict(os.environ)
    bench._measure(case, "ref-lanes-probe", "fwd+bwd", inputs, torch.device("cpu"), 1, True)
    assert seen and set(seen) == {("fwd", lanes), ("bwd", lanes)}
    assert dict(os.environ) == environ
    seen.clear()
    bench._measure(case, "reference", "fwd+bwd", inputs, torch.device("cpu"), 1, True)
    assert seen and set(seen) == {("fwd", DEFAULT), ("bwd", DEFAULT)}


@pytest.mark.parametrize("case,provider", [("dynopool-small", "cuda-lanes"), ("blend-sa-small", "cuda-tile")])
def test_case_run_passes_the_variant_name_as_the_backend(case, provider, monkeypatch):
    case = bench.CASES[case]
    public = getattr(resizeops, case.op)
    backends = []

    def spy(*args, backend=None):
        backends.append(backend)
        return public(*args, backend="reference")

    monkeypatch.setattr(resizeops, case.op, spy)
    case.run(case.make_inputs("cpu"), provider)
    assert backends == [provider]


# --- the CLI ----------------------------------------------------------------------


def test_main_quick_all_cpu_cases(tmp_path, capsys):
    assert bench.main(["--quick", "--no-compile", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    csv_path, png_path = tmp_path / "bench-cpu.csv", tmp_path / "bench-cpu.png"
    assert csv_path.exists() and png_path.exists() and png_path.stat().st_size > 1000
    rows = _rows(csv_path)
    expected = [
        (c.name, p, m)
        for c in bench.cases_for("cpu")
        for p in bench.providers_for(c, "cpu", compile=False)
        for m in bench.MODES
    ]
    assert [(r["case"], r["provider"], r["mode"]) for r in rows] == expected
    table = out[out.index("case "):]
    for case, provider, mode in expected:
        assert any(
            line.split()[:5] == [case, "float32", "NCHW", mode, provider] for line in table.splitlines()
        ), (case, provider, mode)
    for r in rows:
        assert r["error"] == ""
        assert float(r["ms_p50"]) > 0 and r["torch"] == torch.__version__ and r["resizeops"] == resizeops.__version__
        assert 0 < float(r["frac_copy_bw"]) and r["peak_mib"] == "" and r["extra_mib"] == ""
        if r["provider"] == bench.EAGER:
            assert float(r["ratio_vs_eager"]) == 1.0
        if r["mode"] == "fwd":
            assert float(r["max_err"]) < 1e-4

    # A second run appends (one header).
    assert bench.main(["--quick", "--no-compile", "--out", str(tmp_path), "--cases", "dynopool-small",
                       "--modes", "fwd", "--backends", bench.EAGER, "--channels-last", "--dtype", "bfloat16"]) == 0
    rows2 = _rows(csv_path)
    assert len(rows2) == len(rows) + 1
    assert (rows2[-1]["layout"], rows2[-1]["dtype"], rows2[-1]["provider"]) == ("NHWC", "bfloat16", bench.EAGER)


def test_main_compiled_reference_smallest_case(tmp_path, capsys):
    # torch.compile on the smallest case only: two compilations (fwd, fwd+bwd).
    assert bench.main(["--quick", "--cases", "blend-elastic-small", "--out", str(tmp_path), "--no-plot"]) == 0
    rows = _rows(tmp_path / "bench-cpu.csv")
    compiled = [r for r in rows if r["provider"] == bench.COMPILED]
    assert [r["mode"] for r in compiled] == list(bench.MODES)
    assert all(r["error"] == "" for r in compiled)
    assert float(compiled[0]["max_err"]) < 1e-4
    assert not (tmp_path / "bench-cpu.png").exists()


def test_main_runs_a_named_variant(tmp_path, monkeypatch, capsys):
    seen = _record_forms(monkeypatch)
    _probe(monkeypatch, "ref-probe", forms=KernelForms(lanes=4))
    argv = ["--quick", "--no-compile", "--no-plot", "--out", str(tmp_path), "--cases", "dynopool-small,blend-sa-small",
            "--modes", "fwd", "--backends", f"ref-probe,cuda-lanes,{bench.EAGER}"]  # fmt: skip
    assert bench.main(argv) == 0
    assert "dynopool2d: 'cuda-lanes' skipped: backend 'cuda' is not available" in capsys.readouterr().err
    rows = _rows(tmp_path / "bench-cpu.csv")
    assert [(r["case"], r["provider"]) for r in rows] == [
        ("dynopool-small", "ref-probe"), ("dynopool-small", bench.EAGER), ("blend-sa-small", bench.EAGER)
    ]
    assert rows[0]["error"] == "" and float(rows[0]["max_err"]) < 1e-4
    assert seen and set(seen) == {("fwd", KernelForms(lanes=4))}
    backends = next(a for a in bench.build_parser()._actions if "--backends" in a.option_strings)
    assert "ref-probe" in backends.help  # --help lists the registry's variants


@pytest.mark.parametrize(
    "argv", [["--cases", "nope"], ["--dtype", "int8"], ["--modes", "bwd"], ["--backends", "cuda"], ["--repeats", "0"]]
)
def test_main_usage_errors(tmp_path, argv, capsys):
    assert bench.main(["--quick", "--no-compile", "--out", str(tmp_path), *argv]) == 2
    assert "error" in capsys.readouterr().err


def test_quantiles():
    assert bench._quantiles([3.0]) == (3.0, 3.0, 3.0)
    p50, p20, p80 = bench._quantiles([float(i) for i in range(11)])
    assert (p50, p20, p80) == (5.0, 2.0, 8.0)
    assert math.isclose(bench._quantiles([1.0, 2.0])[0], 1.5)


def test_result_bytes_counts_outputs_and_gradients_once():
    # extra_MiB = peak less what the call returns: its output (each storage once, views
    # included) and the leaves' gradients; leaves without a gradient add nothing.
    x = torch.zeros(10, 4, requires_grad=True)
    a = torch.zeros(3, requires_grad=True)
    x.grad = torch.ones(10, 4)
    out = torch.zeros(5, 8, dtype=torch.float64)
    assert bench._result_bytes(out, [x, a]) == 5 * 8 * 8 + 10 * 4 * 4
    assert bench._result_bytes((out, out[1:], out.t()), [x]) == 5 * 8 * 8 + 10 * 4 * 4
    assert bench._result_bytes(None, [a]) == 0
    a.grad = torch.ones(3)
    assert bench._result_bytes([out], [x, a]) == 5 * 8 * 8 + 10 * 4 * 4 + 3 * 4
    assert bench._peak_mib(lambda: out, torch.device("cpu"), [x]) == (None, None)


def test_write_csv_keeps_a_file_with_other_columns(tmp_path, capsys):
    # Appending under an older header would put values under the wrong columns: the old
    # file is kept whole under another name and a new one is started.
    path = tmp_path / "bench-cpu.csv"
    path.write_text("case,peak_mib,error\nold,1.0,\n", encoding="utf-8")
    row = {k: None for k in bench.CSV_FIELDS}
    row.update(case="new", extra_mib=2.5)
    bench.write_csv(str(path), [row])
    bench.write_csv(str(path), [row])
    assert (tmp_path / "bench-cpu.1.csv").read_text(encoding="utf-8") == "case,peak_mib,error\nold,1.0,\n"
    rows = _rows(path)
    assert [(r["case"], r["extra_mib"]) for r in rows] == [("new", "2.5"), ("new", "2.5")]
    assert "kept as" in capsys.readouterr().err
    path.write_text("case\nolder\n", encoding="utf-8")
    bench.write_csv(str(path), [row])
    assert (tmp_path / "bench-cpu.2.csv").read_text(encoding="utf-8") == "case\nolder\n"


def test_main_list(capsys):
    assert bench.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in bench.CASES)


def _targets_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("targets", os.path.join(os.path.dirname(__file__), "..", "scripts", "targets.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_targets_table_from_bench_csvs(tmp_path):
    # scripts/targets.py (printed last by gpu_check.sh): the DynOPool kernel targets' table from the
    # benchmark's CSV rows; a later CSV's row replaces an earlier one's.
    targets = _targets_module()

    def row(dtype, layout, mode, provider, ms, frac="", peak="", extra=""):
        return {"case": "dynopool-imagenet", "dtype": dtype, "layout": layout, "mode": mode, "provider": provider,
                "ms_p50": ms, "frac_copy_bw": frac, "peak_mib": peak, "extra_mib": extra, "device_name": "GPU X",
                "error": ""}

    first = [row("float32", "NCHW", "fwd", "cuda", 0.6, 0.42), row("float32", "NCHW", "fwd+bwd", "cuda", 9.0, "", 1000)]
    later = [
        row("float32", "NCHW", "fwd", "cuda", 0.5, 0.50),
        row("float32", "NCHW", "fwd+bwd", "cuda", 2.0, "", 1000, 60),
        row("float32", "NCHW", "fwd", "cuda-fused", 0.5, 0.50),
        row("float32", "NCHW", "fwd+bwd", "cuda-fused", 1.0, "", 800),
        row("float32", "NCHW", "fwd", "triton", 1.0),
        row("float32", "NCHW", "fwd+bwd", "triton", 3.0),
        row("float32", "NCHW", "fwd+bwd", "compiled-reference", 7.0),
        row("float32", "NCHW", "fwd+bwd", "eager-reference", 8.0, "", 2700, 1500),
        row("bfloat16", "NHWC", "fwd", "cuda", 0.6, 0.2),
    ]
    for name, rows in (("a.csv", first), ("b.csv", later)):
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    got, devices = targets.load([str(tmp_path)])
    assert devices == ["GPU X"]
    table = targets.gpu_table(got)
    lines = table.splitlines()
    assert lines[0] == "| target | float32 NCHW | bfloat16 channels_last |"
    assert "cuda 50%, cuda-fused 50%" in lines[2] and "cuda 20%" in lines[2]
    assert "cuda 3.50×, cuda-fused 7.00×" in lines[3]  # 7.0 / 2.0 and 7.0 / 1.0
    assert "cuda 0.37, cuda-fused 0.30" in lines[4]  # 1000 / 2700, 800 / 2700
    assert "cuda 0.04, cuda-fused -" in lines[5] and "above the inputs and results" in lines[5]  # 60 / 1500
    assert "| 2.00× / 3.00× |" in lines[6]  # Triton vs the best CUDA: 1.0 / 0.5, 3.0 / 1.0
    assert targets.cpu_line(got) == ""
    assert targets.main([str(tmp_path)]) == 0
    assert targets.main([str(tmp_path / "missing")]) == 1
