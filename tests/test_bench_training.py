"""`python -m resizeops bench-train` (resizeops.bench.training): options, the table and the CSV."""

import csv

import pytest

pytest.importorskip("torchvision")

from resizeops.bench import training as bench_training  # noqa: E402


def test_bench_train_quick_eager_writes_the_table_and_csv(tmp_path, capsys):
    code = bench_training.main(["--quick", "--modes", "eager", "--scenarios", "fixed", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "vgg11 (cifar head), 32×32, batch 4, 3 steps" in out
    assert "graphs" in out and "recompiles" in out and "breaks" in out
    rows = list(csv.DictReader(open(tmp_path / "bench-train-cpu.csv")))
    assert len(rows) == 1 and rows[0]["mode"] == "eager" and rows[0]["configs"] == "1"
    assert float(rows[0]["step_ms"]) > 0


@pytest.mark.parametrize(
    "args",
    [["--method", "elastic"], ["--modes", "jit"], ["--scenarios", "sometimes"], ["--steps", "1"]],
)
def test_bench_train_usage_errors(args, capsys):
    assert bench_training.main(args + ["--modes", "eager"] if "--modes" not in args else args) == 2
    assert "error:" in capsys.readouterr().err
