"""`python -m resizeops ...` from a subprocess, as a user runs it."""

import subprocess
import sys


def _run(*args):
    return subprocess.run([sys.executable, "-m", "resizeops", *args], capture_output=True, text=True, timeout=300)


def test_info_reports_versions_extension_and_backends():
    r = _run("info")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("resizeops ")
    assert "torch " in out and "compiled extension:" in out
    for op in ("dynopool2d:", "resize_blend:"):
        assert op in out
    assert "reference  available" in out
    assert "cuda       unavailable: " in out  # with a reason


def test_usage_errors():
    assert _run().returncode == 2
    r = _run("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    assert _run("--help").returncode == 0


def test_demo_quick(tmp_path):
    # The demo's whole path (data, three variants, report, plot) in a few steps each.
    r = _run("demo", "--quick", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    for kind in ("human", "dynopool", "shape-adaptor"):
        assert f"\n{kind} " in out
    assert "MMACs" in out and "1347 train / 450 test" in out
    assert (tmp_path / "demo.png").stat().st_size > 1000
