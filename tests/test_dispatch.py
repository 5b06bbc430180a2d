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
from resizeops.core.kernel_forms import DEFAULT, VARIANTS, KernelForms


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
    """The `cpu` backend made available with recording kernels (non-deterministic backward),
    the fastest on CPU tensors (TRITON_INTERPRET unset: no triton backend there)."""
    rec = Recorder("cpu")
    backend = _dispatch.get_backend("cpu")
    monkeypatch.setattr(backend, "device_reason", lambda device: None if device.type == "cpu" else "cpu only")
    monkeypatch.setattr(backend, "kernels", {})
    _dispatch.register_kernel("cpu", "dynopool2d", rec.forward, rec.backward, deterministic_backward=False)
    monkeypatch.delenv(_dispatch.ENV_VAR, raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
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


class FormsRecorder:
    """Reference kernels that take ``forms=`` as the cuda and triton backends' kernels do,
    recording the forms of each call (None: the call passed none)."""

    def __init__(self):
        self.forms = []

    def forward(self, *args, forms=None):
        self.forms.append(forms)
        return reference.dynopool2d(*args)

    def backward(self, *args, forms=None):
        self.forms.append(forms)
        return reference.dynopool2d_backward(*args)


@pytest.fixture
def fake_triton(monkeypatch):
    """The `triton` backend made available on the CPU with a FormsRecorder for dynopool2d."""
    rec = FormsRecorder()
    backend = _dispatch.get_backend("triton")
    monkeypatch.setattr(backend, "device_reason", lambda device: None)
    monkeypatch.setattr(backend, "kernels", {})
    _dispatch.register_kernel("triton", "dynopool2d", rec.forward, rec.backward)
    monkeypatch.delenv(_dispatch.ENV_VAR, raising=False)
    return rec


def test_variant_names_select_their_backend_with_its_forms(fake_triton, monkeypatch):
    """A variant name (kernel_forms.VARIANTS) is accepted wherever a backend name is
    (argument, context manager, RESIZEOPS_BACKEND) and runs its backend's kernels with
    the variant's forms, forward and backward; the backend's own name runs them with
    the defaults."""
    rows = VARIANTS["triton-rows"].forms
    _run(backend="triton-rows")
    assert fake_triton.forms == [rows, rows]
    fake_triton.forms.clear()
    _run(backend="triton")
    assert fake_triton.forms == [None, None]
    fake_triton.forms.clear()
    with resizeops.use_backend("Triton-W8"):
        _run()
    monkeypatch.setenv(_dispatch.ENV_VAR, "triton-rows-w8")
    _run(backward=False)
    assert fake_triton.forms == [VARIANTS["triton-w8"].forms] * 2 + [VARIANTS["triton-rows-w8"].forms]


def test_variant_forms_reach_only_the_ops_it_names(fake_triton):
    """A variant runs the ops outside its ``ops`` with its backend's default kernels."""
    _dispatch.register_kernel("triton", "resize_blend", reference.resize_blend, reference.resize_blend_backward)
    blend = _dispatch.get_backend("triton").kernels["resize_blend"]
    assert VARIANTS["triton-rows"].ops == ("dynopool2d",)
    assert _dispatch.select("resize_blend", torch.device("cpu"), "triton-rows") is blend


def test_variant_names_are_not_listed_and_unknown_names_still_raise():
    """resizeops.backends() lists the backends only, and every variant names one of them
    and known ops; a variant of a backend that cannot run here fails as that backend
    does, naming the variant; an unknown name is a ValueError listing the backends."""
    assert [b.name for b in resizeops.backends()] == list(_dispatch.ORDER)
    for name, v in VARIANTS.items():
        assert v.backend in _dispatch.ORDER and v.ops and set(v.ops) <= set(_dispatch.OPS), name
    x = torch.randn(1, 1, 4, 4)
    reason = _dispatch.get_backend("cuda").not_supported_reason("dynopool2d", x.device)
    with pytest.raises(RuntimeError, match="backend 'cuda-gather' was requested but cannot run here") as info:
        resizeops.dynopool2d(x, torch.tensor([2.0, 2.0]), backend="cuda-gather")
    assert reason in str(info.value)
    expected = r"backend='cuda-fastest' is not a backend; expected one of cuda, triton, cpu, reference or 'auto'"
    with pytest.raises(ValueError, match=expected):
        resizeops.dynopool2d(x, torch.tensor([2.0, 2.0]), backend="cuda-fastest")
    with pytest.raises(ValueError, match="is not a backend"):
        with resizeops.use_backend("rows"):
            pass


def test_kernel_forms_encode_in_the_decoders_order():
    """The defaults encode to [] (every op's default); other forms to the 10 entries
    kernel_forms.h decodes, in its order."""
    assert DEFAULT == KernelForms() and DEFAULT.encode() == []
    forms = KernelForms(gather="loop", grad_x="fused", fused_winners="separable", forward="rows", lanes=4,
                        fused_tile=(2, 4), forward_tile=(8, 16), force_int64=True)  # fmt: skip
    assert forms.encode() == [2, 3, 1, 1, 4, 2, 4, 8, 16, 1]
    assert KernelForms(gather="tile").encode() == [1, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    # The Triton fields do not reach the compiled ops.
    assert KernelForms(triton_forward="rows", triton_warps=8).encode() == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(gather="tiles"), "gather"),
        (dict(grad_x="atomics"), "grad_x"),
        (dict(fused_winners="rows"), "fused_winners"),
        (dict(forward="flat"), "forward"),
        (dict(lanes=3), "lanes"),
        (dict(lanes="4"), "lanes"),
        (dict(triton_forward="tiles"), "triton_forward"),
        (dict(triton_warps=16), "triton_warps"),
        (dict(fused_tile=(3, 4)), "fused_tile"),
        (dict(fused_tile=(32, 4)), "fused_tile"),
        (dict(fused_tile=(2,)), "fused_tile"),
        (dict(fused_tile="2x4"), "fused_tile"),
        (dict(forward_tile=(2, 64)), "forward_tile"),
        (dict(forward_tile=(0, 4)), "forward_tile"),
    ],
)
def test_kernel_forms_reject_unknown_values(kwargs, field):
    """A form a kernel does not have is a ValueError naming the field: a typo must not
    silently pick a form."""
    with pytest.raises(ValueError, match=rf"KernelForms\.{field}="):
        KernelForms(**kwargs)


def test_kernel_forms_force_int64_is_a_bool():
    """The test hook force_int64 takes True or False only (a TypeError naming it)."""
    with pytest.raises(TypeError, match="KernelForms.force_int64 must be a bool"):
        KernelForms(force_int64=1)


def _extension_op_calls():
    """{op name: call(forms)} for the compiled ops and the CUDA kernels' emulation, on small CPU tensors."""
    ext = torch.ops.resizeops_ext
    x, g, w = torch.randn(1, 2, 5, 6), torch.randn(1, 2, 3, 3), torch.tensor(0.5)
    blend = ([3, 3], True, None, None)
    return {
        "dynopool2d_forward": lambda f: ext.dynopool2d_forward(x, 3, 3, False, f),
        "dynopool2d_backward": lambda f: ext.dynopool2d_backward(g, x, 3, 3, False, True, True, f),
        "_dynopool2d_forward_emulated": lambda f: ext._dynopool2d_forward_emulated(x, 3, 3, False, f),
        "_dynopool2d_backward_emulated": lambda f: ext._dynopool2d_backward_emulated(g, x, 3, 3, False, True, True, f),
        "_dynopool2d_forward_form": lambda f: ext._dynopool2d_forward_form(x, 3, 3, False, f),
        "_dynopool2d_backward_form": lambda f: ext._dynopool2d_backward_form(g, x, 3, 3, False, True, f),
        "resize_blend_forward": lambda f: ext.resize_blend_forward(x, x, w, w, *blend, False, f),
        "resize_blend_backward": lambda f: ext.resize_blend_backward(
            g, x, x, w, w, *blend, True, True, True, True, False, False, f
        ),
        "_resize_blend_forward_emulated": lambda f: ext._resize_blend_forward_emulated(x, x, w, w, *blend, False, f),
        "_resize_blend_backward_emulated": lambda f: ext._resize_blend_backward_emulated(
            g, x, x, w, w, *blend, True, True, True, True, False, False, f
        ),
        "shape_adaptor_maxpool_forward": lambda f: ext.shape_adaptor_maxpool_forward(x, w, w, [3, 3], True, False, f),
        "shape_adaptor_maxpool_backward": lambda f: ext.shape_adaptor_maxpool_backward(
            g, x, w, w, [3, 3], True, True, True, True, False, f
        ),
        "_shape_adaptor_maxpool_forward_emulated": lambda f: ext._shape_adaptor_maxpool_forward_emulated(
            x, w, w, [3, 3], True, False, f
        ),
        "_shape_adaptor_maxpool_backward_emulated": lambda f: ext._shape_adaptor_maxpool_backward_emulated(
            g, x, w, w, [3, 3], True, True, True, True, False, f
        ),
    }


def test_extension_ops_reject_a_malformed_forms_list():
    """Every compiled op decodes its ``forms`` (kernel_forms.h), the CPU kernels too: a list
    of another length, or an entry out of its range, is a RuntimeError naming the entry;
    [] and KernelForms.encode() lists are accepted."""
    require_backend("cpu", "dynopool2d")
    calls = _extension_op_calls()
    for call in calls.values():
        call([])
        call(KernelForms(gather="loop", grad_x="gather", force_int64=True).encode())
        with pytest.raises(RuntimeError, match="forms must have 10 entries .* got 9"):
            call([0] * 9)
        with pytest.raises(RuntimeError, match=r"forms\[4\] \(lanes\) must be 1 or 4, got 3"):
            call([0, 0, 0, 0, 3, 0, 0, 0, 0, 0])
    call = calls["dynopool2d_forward"]
    good = [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]  # the defaults, spelled out
    for index, value, match in [
        (0, 3, r"forms\[0\] \(gather\) must be in \[0, 2\], got 3"),
        (1, -1, r"forms\[1\] \(grad_x\) must be in \[0, 3\], got -1"),
        (2, 2, r"forms\[2\] \(fused_winners\)"),
        (3, 5, r"forms\[3\] \(forward\)"),
        (4, 0, r"forms\[4\] \(lanes\)"),
        (5, 32, r"forms\[5\] \(fused_tile_h\)"),
        (6, 3, r"forms\[6\] \(a tile cap\) must be 0 or a power of two, got 3"),
        (8, 64, r"forms\[8\] \(forward_tile_w\)"),
        (9, 2, r"forms\[9\] \(force_int64\) must be in \[0, 1\], got 2"),
    ]:
        forms = list(good)
        forms[index] = value
        with pytest.raises(RuntimeError, match=match):
            call(forms)


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
