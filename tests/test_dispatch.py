"""Backend dispatch (docs/SEMANTICS.md, Backends): reporting, selection order, explicit errors, determinism."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import require_backend

import resizeops
from resizeops import reference
from resizeops.core import _dispatch


def test_backends_report_every_backend_fastest_first():
    infos = resizeops.backends()
    assert [b.name for b in infos] == ["cuda", "triton", "cpu", "reference"]
    for b in infos:
        assert b.available == (b.reason == "")
    ref = infos[-1]
    assert ref.available and set(ref.ops) == {"dynopool2d", "resize_blend", "shape_adaptor_maxpool"}
    cpu = resizeops.backends("cpu")
    assert "CUDA tensors only" in cpu[0].reason
    assert str(cpu[-1]).startswith("reference")
    with pytest.raises(ValueError, match="backends"):
        resizeops.backends(op="conv2d")


def test_triton_needs_the_interpreter_on_cpu(monkeypatch):
    triton = _dispatch.get_backend("triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reason = triton.device_reason(torch.device("cpu"))
    assert "TRITON_INTERPRET=1" in reason or "cannot be imported" in reason
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton.device_reason(torch.device("cpu")) in (None, reason)


@pytest.mark.parametrize("name", ["cuda", "triton"])
def test_explicit_unavailable_backend_raises_with_reason(monkeypatch, name):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = torch.randn(1, 1, 4, 4)
    reason = _dispatch.get_backend(name).not_supported_reason("dynopool2d", x.device)
    with pytest.raises(RuntimeError, match=f"backend '{name}' was requested but cannot run here") as info:
        resizeops.dynopool2d(x, torch.tensor([2.0, 2.0]), backend=name)
    assert reason in str(info.value)


class Recorder:
    """Wraps the reference kernels on a stand-in backend and records each call."""

    def __init__(self, name):
        self.name, self.calls = name, []

    def forward(self, *args):
        self.calls.append("forward")
        return reference.dynopool2d(*args)

    def backward(self, *args):
        self.calls.append("backward")
        return reference.dynopool2d_backward(*args)


@pytest.fixture
def fake_cpu(monkeypatch):
    """The `cpu` backend made available with recording kernels (non-deterministic backward)."""
    rec = Recorder("cpu")
    backend = _dispatch.get_backend("cpu")
    monkeypatch.setattr(backend, "device_reason", lambda device: None if device.type == "cpu" else "cpu only")
    monkeypatch.setattr(backend, "kernels", {})
    _dispatch.register_kernel("cpu", "dynopool2d", rec.forward, rec.backward, deterministic_backward=False)
    monkeypatch.delenv(_dispatch.ENV_VAR, raising=False)
    return rec


def _run(backend=None, backward=True):
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    alpha = torch.tensor([1.5, 2.0], requires_grad=True)
    out = resizeops.dynopool2d(x, alpha, backend=backend)
    if backward:
        out.sum().backward()
    return out


def test_auto_picks_the_fastest_available(fake_cpu):
    _run()
    assert fake_cpu.calls == ["forward", "backward"]
    assert [b.name for b in resizeops.backends("cpu", op="dynopool2d") if b.available] == ["cpu", "reference"]


def test_selection_order_argument_context_env(fake_cpu, monkeypatch):
    monkeypatch.setenv(_dispatch.ENV_VAR, "reference")
    _run()
    assert fake_cpu.calls == []  # the environment variable beats automatic selection
    with resizeops.use_backend("cpu"):
        _run()
    assert fake_cpu.calls == ["forward", "backward"]  # the context manager beats the environment
    with resizeops.use_backend("cpu"):
        _run(backend="reference")
    assert fake_cpu.calls == ["forward", "backward"]  # the argument beats the context manager
    monkeypatch.delenv(_dispatch.ENV_VAR)
    with resizeops.use_backend("cpu"):
        with resizeops.use_backend("reference"):
            _run()
        assert fake_cpu.calls == ["forward", "backward"]  # the innermost context wins
        with resizeops.use_backend("auto"):
            _run()
    assert fake_cpu.calls == ["forward", "backward"] * 2


def test_backward_follows_the_backend_of_the_forward(fake_cpu):
    with resizeops.use_backend("cpu"):
        out = _run(backward=False)
    out.sum().backward()  # outside the context: still the backend the forward asked for
    assert fake_cpu.calls == ["forward", "backward"]


def test_env_var_names_are_checked(monkeypatch):
    monkeypatch.setenv(_dispatch.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match="RESIZEOPS_BACKEND='fastest' is not a backend"):
        _run()
    monkeypatch.setenv(_dispatch.ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match="backend 'cuda' was requested"):
        _run()
    monkeypatch.setenv(_dispatch.ENV_VAR, "auto")
    _run()


def test_use_backend_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"use_backend\(name\)='cudnn' is not a backend"):
        with resizeops.use_backend("cudnn"):
            pass
    assert _dispatch._STACK == []


def test_deterministic_mode_routes_auto_selection(fake_cpu):
    torch.use_deterministic_algorithms(True)
    _run()
    # The forward stays on the fastest backend; the backward moves to a deterministic one.
    assert fake_cpu.calls == ["forward"]


def test_deterministic_mode_refuses_an_explicit_nondeterministic_backend(fake_cpu):
    torch.use_deterministic_algorithms(True)
    with pytest.raises(RuntimeError, match="not deterministic"):
        _run(backend="cpu")
    torch.use_deterministic_algorithms(True, warn_only=True)
    with pytest.warns(UserWarning, match="not deterministic"):
        _run(backend="cpu")
    assert fake_cpu.calls == ["forward", "forward", "backward"]


def test_no_deterministic_backend_is_an_error_naming_each_reason(fake_cpu, monkeypatch):
    monkeypatch.setitem(
        _dispatch.get_backend("reference").kernels,
        "dynopool2d",
        _dispatch.Kernels(reference.dynopool2d, reference.dynopool2d_backward, lambda d: False),
    )
    torch.use_deterministic_algorithms(True)
    with pytest.raises(RuntimeError, match="no backend can run") as info:
        _run()
    msg = str(info.value)
    assert "cpu: its backward is not deterministic" in msg and "reference: its backward is not deterministic" in msg
    torch.use_deterministic_algorithms(True, warn_only=True)
    with pytest.warns(UserWarning, match="no backend has a deterministic backward"):
        _run()


def test_reference_backward_is_deterministic_on_cpu():
    torch.use_deterministic_algorithms(True)
    x = torch.randn(2, 3, 17, 13, requires_grad=True)
    alpha = torch.tensor([1.3, 0.8], requires_grad=True)
    grads = []
    for _ in range(2):
        out = resizeops.dynopool2d(x, alpha)
        grads.append(torch.autograd.grad(out, (x, alpha), torch.ones_like(out)))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_register_kernel_checks_names():
    with pytest.raises(ValueError, match="unknown backend"):
        _dispatch.register_kernel("opencl", "dynopool2d", None, None)
    with pytest.raises(ValueError, match="unknown op"):
        _dispatch.register_kernel("cpu", "conv2d", None, None)


def test_index_width_hook_rejects_unknown_values(monkeypatch):
    # RESIZEOPS_FORCE_INT64_INDEXING is '0' or '1': a typo ('yes', 'true') must not
    # silently pick a path. The C++ kernels check it per call, the Triton wrappers too.
    # On the CPU the CUDA kernels' serial emulation reads it (the cpu backend's own
    # kernels have one index width).
    require_backend("cpu", "dynopool2d")
    monkeypatch.setenv("RESIZEOPS_FORCE_INT64_INDEXING", "yes")
    x = torch.randn(1, 2, 5, 6)
    with pytest.raises(RuntimeError, match="RESIZEOPS_FORCE_INT64_INDEXING must be '0' or '1', got 'yes'"):
        torch.ops.resizeops_ext._dynopool2d_forward_cells(x, 3, 3, False)
    pytest.importorskip("triton")
    from resizeops.triton_kernels import dynopool as triton_dynopool

    with pytest.raises(ValueError, match="RESIZEOPS_FORCE_INT64_INDEXING must be '0' or '1', got 'yes'"):
        triton_dynopool.force_int64_indexing()
    for ok, expected in (("1", True), ("0", False), ("", False)):
        monkeypatch.setenv("RESIZEOPS_FORCE_INT64_INDEXING", ok)
        assert triton_dynopool.force_int64_indexing() is expected


def test_cpu_instruction_set_switch_rejects_unknown_values():
    # RESIZEOPS_CPU_ISA is read once per process by the C++ kernels: checked in a child.
    require_backend("cpu", "dynopool2d")
    code = (
        "import torch, resizeops\n"
        "try:\n"
        "    resizeops.dynopool2d(torch.randn(1, 2, 9, 9), torch.tensor([2.0, 2.0]), backend='cpu')\n"
        "except RuntimeError as e:\n"
        "    print(str(e).splitlines()[0])\n"
    )
    env = dict(os.environ, RESIZEOPS_CPU_ISA="avx512")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "RESIZEOPS_CPU_ISA must be 'native' or 'default', got 'avx512'" in out.stdout, out.stdout + out.stderr
    for ok in ("native", "default"):
        env["RESIZEOPS_CPU_ISA"] = ok
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and out.stdout == "", out.stdout + out.stderr
