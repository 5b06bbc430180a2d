"""The GPU architectures of the build (setup.py) and the check that the GPU code runs on a GPU.

No GPU and no full build needed: the choice is a pure function of
TORCH_CUDA_ARCH_LIST, the visible GPUs and nvcc's architectures
(resizeops/core/_cuda_arch.py, which setup.py loads by its path, as these tests do);
setup.py's own use of it is checked by running `setup.py --name`, which resolves
the build configuration and compiles nothing; the run-time check gets a faked
GPU (monkeypatch).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest
import torch

from resizeops.core import _dispatch, _extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_by_path():
    spec = importlib.util.spec_from_file_location("cuda_arch_by_path", os.path.join(ROOT, "resizeops", "core", "_cuda_arch.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


arch = _load_by_path()
# `nvcc --list-gpu-arch` of CUDA 13.0 (one per line there)
NVCC13 = """compute_75 compute_80 compute_86 compute_87 compute_88 compute_89 compute_90
compute_100 compute_110 compute_103 compute_120 compute_121"""
BUILDABLE = arch.nvcc_architectures(NVCC13)


def test_module_stands_alone():
    # setup.py loads it before resizeops (or torch) is importable: it imports neither.
    src = open(os.path.join(ROOT, "resizeops", "core", "_cuda_arch.py")).read()
    assert "import torch" not in src and "from . import" not in src and "from resizeops" not in src


def test_nvcc_architectures_parsed_and_sorted():
    assert BUILDABLE == ["7.5", "8.0", "8.6", "8.7", "8.8", "8.9", "9.0", "10.0", "10.3", "11.0", "12.0", "12.1"]
    assert arch.nvcc_architectures("") == []


# --- the choice: TORCH_CUDA_ARCH_LIST set / unset / invalid, GPUs visible or not ---


@pytest.mark.parametrize("unset", [None, "", "  "])
def test_no_gpu_and_unset_builds_the_default(unset):
    choice = arch.choose_arch_list(unset, visible=[], buildable=BUILDABLE)
    assert choice.arch_list == arch.DEFAULT_ARCH_LIST == "8.0+PTX"
    assert choice.targets == ("sm_80", "compute_80")
    assert "unset" in choice.reason and "no GPU is visible" in choice.reason
    # the default runs on every GPU from sm_80 up that a CUDA 13 torch supports
    for cap in [(8, 0), (8, 6), (8, 7), (8, 9), (9, 0), (10, 0), (10, 3), (12, 0)]:
        assert arch.runs_on(choice.targets, cap), cap
    assert not arch.runs_on(choice.targets, (7, 5))


def test_default_without_nvcc_list():
    assert arch.choose_arch_list(None, [], None).arch_list == "8.0+PTX"


def test_default_follows_an_nvcc_without_sm80():
    choice = arch.choose_arch_list(None, [], ["9.0", "10.0"])
    assert choice.arch_list == "9.0+PTX"
    with pytest.raises(arch.ArchListError, match="none of sm_80"):
        arch.choose_arch_list(None, [], ["7.5"])


@pytest.mark.parametrize(
    "value,arch_list,targets",
    [
        ("9.0", "9.0", ("sm_90",)),
        ("8.0+PTX", "8.0+PTX", ("sm_80", "compute_80")),
        ("8.6;9.0+PTX", "8.6;9.0+PTX", ("sm_86", "sm_90", "compute_90")),
        ("8.6 9.0", "8.6;9.0", ("sm_86", "sm_90")),
        (" 9.0; ;9.0 ", "9.0", ("sm_90",)),
        ("9.0a", "9.0a", ("sm_90a",)),
        ("Hopper", "9.0+PTX", ("sm_90", "compute_90")),
        ("Ampere", "8.0;8.6+PTX", ("sm_80", "sm_86", "compute_86")),
        ("10.0", "10.0", ("sm_100",)),
    ],
)
def test_set_variable_wins(value, arch_list, targets):
    for visible in ([], [(8, 0)]):  # over a visible GPU too
        choice = arch.choose_arch_list(value, visible, BUILDABLE)
        assert (choice.arch_list, choice.targets) == (arch_list, targets)
        assert "TORCH_CUDA_ARCH_LIST" in choice.reason and "set in the environment" in choice.reason


@pytest.mark.parametrize(
    "value,match",
    [
        ("7.0", "nvcc cannot build for '7.0'"),  # dropped by CUDA 13
        ("9.9", "nvcc cannot build for '9.9'"),
        ("sm_90", "'sm_90' is not an architecture"),
        ("90", "'90' is not an architecture"),
        ("9.0+ptx", "'9.0\\+ptx' is not an architecture"),
        ("Volta", "nvcc cannot build for '7.0\\+PTX'"),
        ("8.0a", "from 9.0 on"),
        (";", "names no architecture"),
    ],
)
def test_invalid_variable_is_a_clear_error_listing_the_valid_values(value, match):
    with pytest.raises(arch.ArchListError, match=match) as info:
        arch.choose_arch_list(value, [], BUILDABLE)
    msg = str(info.value)
    assert "valid:" in msg and "7.5 8.0 8.6 8.7 8.8 8.9 9.0 10.0 10.3 11.0 12.0 12.1" in msg and "+PTX" in msg
    assert isinstance(info.value, ValueError)


def test_grammar_checked_without_nvcc_list():
    assert arch.choose_arch_list("7.0", [], None).arch_list == "7.0"  # nvcc is the judge then
    with pytest.raises(arch.ArchListError, match="valid:"):
        arch.choose_arch_list("nine", [], None)


@pytest.mark.parametrize(
    "visible,arch_list",
    [
        ([(9, 0)], "9.0+PTX"),
        ([(8, 6)], "8.6+PTX"),
        ([(9, 0), (8, 0), (9, 0)], "8.0;9.0+PTX"),  # sorted, once each, PTX with the newest
        ([(13, 0)], "12.1+PTX"),  # newer than nvcc knows: its newest, as torch does
    ],
)
def test_visible_gpu_means_its_own_architecture(visible, arch_list):
    for value in (None, "native"):
        choice = arch.choose_arch_list(value, visible, BUILDABLE)
        assert choice.arch_list == arch_list
        assert "visible GPUs" in choice.reason
        for cap in visible:
            assert arch.runs_on(choice.targets, cap) or cap > (12, 1)


def test_native_without_a_gpu_and_too_old_a_gpu_are_errors():
    with pytest.raises(arch.ArchListError, match="native.*none is visible"):
        arch.choose_arch_list("native", [], BUILDABLE)
    with pytest.raises(arch.ArchListError, match="compute capability 7.0"):
        arch.choose_arch_list(None, [(7, 0)], BUILDABLE)


def test_nvcc_flags_replace_torchs_arch_flags(monkeypatch):
    # The failure this fixes: torch's own arch flags with the variable unset and no
    # GPU visible index an empty list. With ours in the nvcc flags it adds none.
    from torch.utils import cpp_extension

    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(IndexError):
        cpp_extension._get_cuda_arch_flags([])
    flags = arch.nvcc_flags(arch.choose_arch_list(None, [], BUILDABLE))
    assert flags == [
        "-gencode=arch=compute_80,code=sm_80",
        "-gencode=arch=compute_80,code=compute_80",
        "-DRESIZEOPS_CUDA_TARGETS=sm_80+compute_80",
    ]
    assert cpp_extension._get_cuda_arch_flags(["-O3"] + flags) == []
    assert arch.gencode_flags(("sm_90a",)) == ["-gencode=arch=compute_90a,code=sm_90a"]


# --- which GPUs the recorded GPU code runs on -------------------------------------


@pytest.mark.parametrize(
    "built,runs,does_not_run",
    [
        ("8.0+PTX", [(8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (12, 0)], [(7, 5)]),
        ("9.0", [(9, 0)], [(8, 0), (8, 9), (10, 0), (12, 0)]),  # SASS: within its major only
        ("8.0", [(8, 0), (8, 6), (8, 9)], [(7, 5), (9, 0), (10, 0)]),
        ("8.6", [(8, 6), (8, 9)], [(8, 0), (9, 0)]),
        ("9.0+PTX", [(9, 0), (10, 0), (12, 1)], [(8, 0), (8, 9)]),
        ("9.0a", [(9, 0)], [(8, 0), (10, 0)]),
        ("10.0f", [(10, 0), (10, 3)], [(9, 0), (12, 0)]),
        ("8.0;9.0+PTX", [(8, 0), (8, 6), (9, 0), (10, 0)], [(7, 5)]),
    ],
)
def test_compatibility_rule(built, runs, does_not_run):
    targets = arch.targets_of(built.split(";"))
    for cap in runs:
        assert arch.runs_on(targets, cap), (built, cap)
        assert arch.not_runnable_reason(targets, cap) is None
    for cap in does_not_run:
        assert not arch.runs_on(targets, cap), (built, cap)
        reason = arch.not_runnable_reason(targets, cap, "GPU 0 (X)")
        assert f"compute capability {cap[0]}.{cap[1]}" in reason and "GPU 0 (X)" in reason
        assert f"TORCH_CUDA_ARCH_LIST={cap[0]}.{cap[1]} pip install --no-build-isolation -e ." in reason


def test_recorded_targets_parsed():
    assert arch.parse_targets("sm_80,compute_80") == ("sm_80", "compute_80")
    assert arch.parse_targets("sm_80+compute_80") == ("sm_80", "compute_80")
    assert arch.parse_targets(None) is None and arch.parse_targets("unknown") is None
    with pytest.raises(ValueError):
        arch.parse_targets("8.0")
    text = arch.describe_targets(("sm_80", "compute_80"))
    assert text == (
        "sm_80 (SASS for compute capability 8.0 and newer 8.x), "
        "compute_80 (PTX for compute capability >= 8.0, compiled by the driver at first use)"
    )
    assert arch.describe_targets(("sm_90a",)) == "sm_90a (SASS for compute capability 9.0 only)"


def test_extension_status_reads_recorded_targets(monkeypatch):
    info = "torch=2.14.1;cuda=13.0;cuda_kernels=1;cuda_arch=sm_86,compute_86;debug=0"
    fields = _extension.parse_build_info(info)
    assert fields["cuda_arch"] == "sm_86,compute_86"
    assert _extension._recorded_targets(fields["cuda_arch"]) == ("sm_86", "compute_86")
    assert _extension._recorded_targets(None) is None and _extension._recorded_targets("garbage!") is None


# --- the cuda backend on a GPU its code does not run on (faked) ---------------------


def _fake_gpu(monkeypatch, built, capability, name="NVIDIA Fake"):
    status = _extension.ExtensionStatus(
        True, path="/x/_C.abi3.so", torch_built="2.14.1", cuda_built="13.0", has_cuda_kernels=True,
        cuda_arch=built, build_info="(faked)",
    )  # fmt: skip
    monkeypatch.setattr(_extension, "load", lambda: status)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(_dispatch, "_GPUS", {0: (capability, name), 1: ((8, 0), "NVIDIA A100")})
    # Kernels stand-ins (the real ones need a CUDA build): selection only, nothing runs.
    cuda_kernels = _dispatch.Kernels(lambda *a: "cuda", lambda *a: "cuda")
    for op in _dispatch.OPS:
        monkeypatch.setitem(_dispatch.get_backend("cuda").kernels, op, cuda_kernels)
    return cuda_kernels


def test_cuda_backend_refuses_a_gpu_its_code_does_not_run_on(monkeypatch):
    cuda_kernels = _fake_gpu(monkeypatch, ("sm_90",), (10, 0), "NVIDIA B200")
    reason = _dispatch._cuda_reason(torch.device("cuda"))
    assert reason is not None
    assert "sm_90" in reason and "GPU 0 (NVIDIA B200)" in reason and "compute capability 10.0" in reason
    assert "TORCH_CUDA_ARCH_LIST=10.0 pip install --no-build-isolation -e ." in reason
    # Automatic selection falls back to the next backend, as for a missing extension.
    for op in _dispatch.OPS:
        k = _dispatch.select(op, torch.device("cuda"), None)
        assert k is not cuda_kernels
        assert k in (_dispatch.get_backend("triton").kernels.get(op), _dispatch.get_backend("reference").kernels[op])
    # Asked for by name: an error naming the reason.
    with pytest.raises(RuntimeError, match="TORCH_CUDA_ARCH_LIST=10.0 pip install"):
        _dispatch.select("dynopool2d", torch.device("cuda"), "cuda")
    info = {b.name: b for b in _dispatch.backends("cuda")}
    assert not info["cuda"].available and "TORCH_CUDA_ARCH_LIST=10.0" in info["cuda"].reason
    # Per device: GPU 1 (8.0) cannot run sm_90 either; GPU 0 can run an 8.0+PTX build.
    assert "compute capability 8.0" in _dispatch._cuda_reason(torch.device("cuda", 1))


def test_cuda_backend_runs_where_the_code_runs(monkeypatch):
    cuda_kernels = _fake_gpu(monkeypatch, ("sm_80", "compute_80"), (10, 0))
    assert _dispatch._cuda_reason(torch.device("cuda")) is None
    assert _dispatch._cuda_reason(torch.device("cuda", 1)) is None
    assert _dispatch.select("resize_blend", torch.device("cuda"), None) is cuda_kernels


def test_cuda_backend_unrecorded_targets_not_checked(monkeypatch):
    _fake_gpu(monkeypatch, None, (10, 0))
    assert _dispatch._cuda_reason(torch.device("cuda")) is None


def test_info_shows_the_gpu_code(monkeypatch):
    _fake_gpu(monkeypatch, ("sm_80", "compute_80"), (9, 0))
    lines = _extension.describe()
    gpu = [line for line in lines if line.startswith("GPU code")]
    assert gpu and "sm_80 (SASS for compute capability 8.0" in gpu[0] and "compute_80 (PTX" in gpu[0]


# --- setup.py itself (resolves its configuration, compiles nothing) ----------------

needs_cuda_build_env = pytest.mark.skipif(
    torch.version.cuda is None or shutil.which("nvcc") is None,
    reason="setup.py picks GPU architectures only where a CUDA torch and nvcc exist",
)


def _setup_py(env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_CUDA_ARCH_LIST", "USE_CUDA", "FORCE_CUDA")}
    env["CUDA_VISIBLE_DEVICES"] = ""  # no GPU visible, whatever this machine has
    env.update(env_changes)
    return subprocess.run(
        [sys.executable, "setup.py", "--name"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@needs_cuda_build_env
def test_setup_py_default_with_nothing_exported():
    r = _setup_py({})
    assert r.returncode == 0, r.stderr
    assert "GPU arch list  : 8.0+PTX (sm_80 + compute_80)" in r.stderr
    assert "TORCH_CUDA_ARCH_LIST is unset and no GPU is visible" in r.stderr


@needs_cuda_build_env
def test_setup_py_variable_set_and_invalid():
    r = _setup_py({"TORCH_CUDA_ARCH_LIST": "9.0"})
    assert r.returncode == 0, r.stderr
    assert "GPU arch list  : 9.0 (sm_90)" in r.stderr
    r = _setup_py({"TORCH_CUDA_ARCH_LIST": "7.0"})
    assert r.returncode != 0
    assert "resizeops setup.py: TORCH_CUDA_ARCH_LIST='7.0'" in r.stderr and "valid:" in r.stderr
    assert "building" not in r.stdout + r.stderr  # stopped before any compile
