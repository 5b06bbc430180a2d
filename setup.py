"""Build script of resizeops: the Python packages and the compiled `resizeops._C`.

Install against the torch you will run with:

    pip install --no-build-isolation -e .     # editable, for development
    pip install --no-build-isolation .

The extension is compiled against the *installed* torch (its C++ ABI changes
with every release), which is why torch is not a build requirement in
pyproject.toml: under pip's build isolation torch is not importable, and the
package is then installed pure-Python (reference and Triton backends only),
with a warning.

Environment knobs:
    USE_CUDA=0        CPU-only extension even where CUDA is available.
    FORCE_CUDA=1      build the CUDA kernels even if the auto-detection says no
                      (e.g. a CUDA build of torch with nvcc in an odd place).
    DEBUG=1           -O0 -g (nvcc: -O0 -g -lineinfo) instead of -O3 -g0 (no
                      debug info, as in torch's wheels: Python's own CFLAGS may
                      carry -g, which costs a quarter of the C++ compile time).
    ASAN=1            the C++ sources with AddressSanitizer (-fsanitize=address
                      -O1 -g; CPU-only builds: scripts/asan_check.sh).
    TORCH_CUDA_ARCH_LIST="9.0"   GPU architectures to compile for; unset: those
                      of the visible GPUs, and with no GPU visible "8.0+PTX"
                      (A100 machine code plus PTX that the driver compiles for
                      every newer GPU). resizeops/core/_cuda_arch.py decides it.
    CUDA_HOME         the CUDA toolkit; found from nvcc when not set.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"  # relative: setuptools wants relative source paths
VERSION = "0.1.0"


def _env_flag(name):
    """True / False for an env var set to 1/0 (true/false, yes/no), None if unset."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def _warn(msg):
    bar = "!" * 78
    print(f"\n{bar}\nresizeops setup.py WARNING:\n{msg}\n{bar}\n", file=sys.stderr, flush=True)


def _is_cuda_toolkit(path):
    return bool(path) and os.path.isfile(os.path.join(path, "include", "cuda_runtime.h"))


def _nvcc_toolkit_root(nvcc):
    """The toolkit an `nvcc` really belongs to, as nvcc itself reports it.

    nvcc on PATH may be a wrapper script (e.g. /usr/local/bin/nvcc execing
    /usr/local/cuda-13.0/bin/nvcc); torch would then take /usr/local as
    CUDA_HOME and find neither cuda_runtime.h nor libcudart there.
    """
    try:
        out = subprocess.run(
            [nvcc, "--dryrun", "-E", "-x", "cu", os.devnull, "-o", os.devnull],
            capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"^#\$ _HERE_=(.+)$", out.stdout + out.stderr, re.MULTILINE)
    return os.path.dirname(m.group(1).strip()) if m else None


def _resolve_cuda_home():
    """Point CUDA_HOME at a real toolkit before torch.utils.cpp_extension reads it.

    torch guesses CUDA_HOME as dirname(dirname(which nvcc)). When that guess
    has no include/cuda_runtime.h, try the real path of nvcc, the toolkit nvcc
    reports, and /usr/local/cuda, and export the first real toolkit. A
    user-set CUDA_HOME / CUDA_PATH is left alone.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return
    torch_guess = os.path.dirname(os.path.dirname(nvcc))
    if _is_cuda_toolkit(torch_guess):
        return
    candidates = [
        os.path.dirname(os.path.dirname(os.path.realpath(nvcc))),
        _nvcc_toolkit_root(nvcc),
        "/usr/local/cuda",
    ]
    for cand in candidates:
        if _is_cuda_toolkit(cand):
            os.environ["CUDA_HOME"] = cand
            return


def _pip_nvidia_include_dirs(cuda_version):
    """Include dirs of the pip-installed NVIDIA CUDA packages that torch depends on.

    ATen/cuda/CUDAContext.h includes cusparse.h, cublas_v2.h, ... which a
    minimal CUDA toolkit lacks but torch's wheels bring as `nvidia-*` packages:
    one nvidia/cu<major>/include folder for CUDA 13 wheels, one
    nvidia/<lib>/include per library for CUDA 12 wheels. Found from the
    installed `nvidia` namespace package, not a fixed path.
    """
    try:
        import nvidia  # namespace package of nvidia-cublas, nvidia-cusparse, ...
    except ImportError:
        return []
    major = (cuda_version or "").split(".")[0]
    dirs = []
    for base in getattr(nvidia, "__path__", []):
        combined = os.path.join(base, f"cu{major}", "include")
        if major and os.path.isdir(combined):
            dirs.append(combined)
            continue
        dirs.extend(sorted(d for d in glob.glob(os.path.join(base, "*", "include")) if os.path.isdir(d)))
    # keep order, drop duplicates
    return list(dict.fromkeys(os.path.realpath(d) for d in dirs))


def _torch_version_tuple(version):
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _load_cuda_arch():
    """resizeops/core/_cuda_arch.py, loaded by its path: the package itself is not importable yet."""
    import importlib.util

    name = "resizeops_build_cuda_arch"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "resizeops", "core", "_cuda_arch.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _nvcc_architectures(nvcc):
    """The architectures nvcc builds for ("7.5", "8.0", ...), or None if it cannot say."""
    if nvcc is None:
        return None
    try:
        out = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    archs = _load_cuda_arch().nvcc_architectures(out.stdout) if out.returncode == 0 else []
    return archs or None


def _choose_cuda_arch(torch, nvcc):
    """The GPU architectures of a CUDA build (resizeops/core/_cuda_arch.py choose_arch_list): stops
    setup.py with the valid values when TORCH_CUDA_ARCH_LIST cannot be built."""
    cuda_arch = _load_cuda_arch()
    visible = [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]
    try:
        return cuda_arch.choose_arch_list(os.environ.get("TORCH_CUDA_ARCH_LIST"), visible, _nvcc_architectures(nvcc))
    except cuda_arch.ArchListError as e:
        raise SystemExit(f"resizeops setup.py: {e}") from None


def _sources(pattern):
    return sorted(glob.glob(os.path.join(CSRC, pattern), recursive=True))


def get_extensions():
    """Return (ext_modules, cmdclass, summary lines)."""
    debug = _env_flag("DEBUG") is True
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken torch install
        _warn(
            f"torch cannot be imported at build time ({type(exc).__name__}: {exc}).\n"
            "Installing resizeops WITHOUT its compiled extension (resizeops._C): only the\n"
            "reference and Triton backends will work. This is what pip's build isolation\n"
            "does. To build the CPU/CUDA kernels, install torch first, then reinstall with\n"
            "    pip install --no-build-isolation -e .      (or: pip install --no-build-isolation .)"
        )
        summary = [
            "torch          : not importable at build time",
            "extension      : none (pure-Python install)",
            f"debug          : {debug}",
        ]
        return [], {}, summary

    _resolve_cuda_home()
    from torch.utils import cpp_extension
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    cuda_home = cpp_extension.CUDA_HOME
    nvcc = os.path.join(cuda_home, "bin", "nvcc") if cuda_home else None
    if nvcc and not os.path.isfile(nvcc):
        nvcc = None
    use_cuda_env = _env_flag("USE_CUDA")
    force_cuda = _env_flag("FORCE_CUDA") is True
    if use_cuda_env is False:
        with_cuda, why = False, "USE_CUDA=0"
    elif force_cuda:
        with_cuda, why = True, "FORCE_CUDA=1"
    elif torch.version.cuda is None:
        with_cuda, why = False, "torch is a CPU-only build"
    elif nvcc is None:
        with_cuda, why = False, "nvcc not found (set CUDA_HOME or put nvcc on PATH)"
    else:
        with_cuda, why = True, "CUDA build of torch and nvcc found"
    if use_cuda_env is True and not with_cuda:
        _warn(f"USE_CUDA=1 but the CUDA kernels cannot be built: {why}. Set FORCE_CUDA=1 to try anyway.")

    asan = _env_flag("ASAN") is True
    # -g0 overrides a -g in Python's CFLAGS (pyenv's has one): debug info of these
    # template-heavy sources is a quarter of their compile time and most of the .so.
    opt = ["-O0", "-g"] if debug else ["-O3", "-g0"]
    if asan:
        if with_cuda:
            _warn("ASAN=1 instruments the C++ sources only; build with USE_CUDA=0 (scripts/asan_check.sh).")
        opt = ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"]
    define_macros = []
    if debug:
        define_macros.append(("RESIZEOPS_DEBUG", "1"))
    include_dirs = [os.path.join(ROOT, CSRC, "include")]
    # -fopenmp: at::parallel_for is an inline template that runs serially unless
    # the extension itself is compiled with OpenMP (torch's CPU parallel backend);
    # torch already loads the OpenMP runtime (libgomp), so linking adds nothing new.
    openmp = torch.backends.openmp.is_available() and sys.platform.startswith("linux")
    extra_cxx = list(opt) + ["-Wall", "-Wno-unused-function"] + (["-fopenmp"] if openmp else [])
    extra_nvcc = (["-O0", "-g", "-lineinfo"] if debug else ["-O3"])
    # Headers such as cusparse.h may only exist in the pip NVIDIA packages.
    # They go in as -isystem, which is searched after every -I: the toolkit's
    # own headers (cuda_runtime.h, ...) keep precedence over the copies there.
    system_include_dirs = []
    arch = None
    if with_cuda:
        define_macros.append(("RESIZEOPS_WITH_CUDA", "1"))
        # Our own -gencode flags (torch then adds none), and the targets recorded in
        # the library for build_info() (csrc/cuda/query_coords.cu).
        arch = _choose_cuda_arch(torch, nvcc)
        extra_nvcc += _load_cuda_arch().nvcc_flags(arch)
        have_cusparse = cuda_home and os.path.isfile(os.path.join(cuda_home, "include", "cusparse.h"))
        if not have_cusparse:
            system_include_dirs = _pip_nvidia_include_dirs(torch.version.cuda)
        for d in system_include_dirs:
            extra_cxx += ["-isystem", d]
            extra_nvcc += ["-isystem", d]

    sources = _sources("*.cpp") + _sources("cpu/**/*.cpp")
    if with_cuda:
        sources += _sources("cuda/**/*.cu") + _sources("cuda/**/*.cpp")

    # The limited Python API (abi3 .so) works with torch >= 2.6, whose headers
    # no longer need the full Python C API; our module stub uses only
    # PyModule_Create. torch's BuildExtension then adds -DPy_LIMITED_API.
    py_limited_api = _torch_version_tuple(torch.__version__) >= (2, 6)

    ext_cls = CUDAExtension if with_cuda else CppExtension
    kwargs = dict(
        sources=sources,
        include_dirs=list(include_dirs),  # a copy: torch appends its own dirs to it
        define_macros=define_macros,
        extra_compile_args={"cxx": extra_cxx, "nvcc": extra_nvcc} if with_cuda else {"cxx": extra_cxx},
        extra_link_args=(["-g"] if debug else []) + (["-fsanitize=address"] if asan else [])
        + (["-fopenmp"] if openmp else []),
        py_limited_api=py_limited_api,
    )
    ext = ext_cls("resizeops._C", **kwargs)

    if shutil.which("ninja") is None:
        # The `ninja` pip package's binary is on PATH only in an activated venv;
        # torch calls `ninja` by name, so expose it (else a slow serial build).
        try:
            import ninja

            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
        except (ImportError, AttributeError):
            pass
    use_ninja = shutil.which("ninja") is not None
    cmdclass = {"build_ext": BuildExtension.with_options(use_ninja=use_ninja)}

    summary = [
        f"torch          : {torch.__version__} ({os.path.dirname(torch.__file__)})",
        f"CUDA build     : {'yes, CUDA ' + torch.version.cuda if torch.version.cuda else 'no'}",
        f"CUDA_HOME      : {cuda_home}",
        f"nvcc           : {nvcc}",
        f"extension      : {'CUDA' if with_cuda else 'CPU'} ({why})",
        f"debug          : {debug}",
        f"AddressSanitizer: {asan}",
        f"GPU arch list  : {arch.arch_list} ({' + '.join(arch.targets)})" if arch else "GPU arch list  : n/a",
        f"  chosen from  : {arch.reason}" if arch else "",
        f"C++ standard   : torch's default for this torch (sources are C++17)",
        f"limited API    : {py_limited_api}",
        f"ninja          : {use_ninja}",
        f"OpenMP         : {openmp} (at::parallel_for in the CPU kernels)",
        f"extra includes : {include_dirs + system_include_dirs}",
    ]
    return [ext], cmdclass, [line for line in summary if line]


def get_packages():
    """`resizeops` from resizeops/, `resizeops.triton_kernels` from the top-level triton_kernels/.

    The Triton kernels live in the repo's top-level triton_kernels/ folder (the
    project's design card) but are installed inside the resizeops namespace:
    a top-level `triton_kernels` package would collide with the public package
    of that name.
    """
    packages = sorted(set(["resizeops"] + find_packages(where=ROOT, include=["resizeops", "resizeops.*"])))
    package_dir = {}
    if os.path.isdir(os.path.join(ROOT, "triton_kernels")):
        package_dir["resizeops.triton_kernels"] = "triton_kernels"
        packages.append("resizeops.triton_kernels")
        packages += ["resizeops.triton_kernels." + p for p in find_packages(where=os.path.join(ROOT, "triton_kernels"))]
    return packages, package_dir


ext_modules, cmdclass, summary = get_extensions()
packages, package_dir = get_packages()
print(
    "resizeops build configuration\n" + "\n".join("  " + line for line in summary),
    file=sys.stderr,
    flush=True,
)

readme = os.path.join(ROOT, "README.md")
long_description = open(readme, encoding="utf-8").read() if os.path.isfile(readme) else ""

setup(
    name="resizeops",
    version=VERSION,
    description="Learnable resizing operators for CNNs (DynOPool, Shape Adaptor, ELASTIC) "
    "with CUDA, Triton and CPU kernels for PyTorch",
    long_description=long_description,
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=packages,
    package_dir=package_dir,
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    install_requires=["torch>=2.4", "numpy", "tqdm", "matplotlib"],
    extras_require={
        "test": ["pytest", "pytest-benchmark", "expecttest", "hypothesis"],
        "triton": ["triton"],
    },
    options={"bdist_wheel": {"py_limited_api": "cp310"}} if any(e.py_limited_api for e in ext_modules) else {},
    zip_safe=False,
)
