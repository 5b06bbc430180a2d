"""GPU architectures of the compiled extension: which ones a build targets, which GPUs it runs on.

Pure functions with no import of torch or of the rest of the package: ``setup.py``
loads this file by its path (the package cannot be imported before it is built),
and at run time :mod:`resizeops.core._dispatch` asks it whether the extension's GPU
code runs on a given GPU.

Notation. An *architecture list* is ``TORCH_CUDA_ARCH_LIST``'s: entries such as
``8.0``, ``8.6``, ``9.0a``, each optionally with ``+PTX``, separated by ``;`` or
spaces (``"8.0+PTX"``, ``"8.6;9.0+PTX"``), or torch's names (``Ampere``,
``Hopper``, ...). A *target* is what nvcc puts into the library for one entry:
``sm_80`` (SASS, machine code) and, with ``+PTX``, ``compute_80`` (PTX, which the
driver compiles for the GPU it runs on).

Which GPUs a target runs on (the CUDA compatibility rules):

- SASS ``sm_XY`` runs on compute capability X.Z with Z >= Y (the same major
  version only: ``sm_90`` does not run on a 10.0 GPU, ``sm_86`` not on 8.0);
- PTX ``compute_XY`` runs on every compute capability >= X.Y (the driver
  JIT-compiles it once, at first use, and caches the result);
- the arch-specific ``sm_XYa`` / ``compute_XYa`` run on X.Y only; the
  family-specific ``sm_XYf`` / ``compute_XYf`` on X.Z with Z >= Y.

The default build (no ``TORCH_CUDA_ARCH_LIST``, no visible GPU) is
:data:`DEFAULT_ARCH_LIST`: SASS for the A100 and PTX for every newer GPU, at
about the compile time of one architecture.
"""

from __future__ import annotations

import re
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple

__all__ = [
    "DEFAULT_ARCH_LIST",
    "ArchChoice",
    "ArchListError",
    "parse_arch_list",
    "choose_arch_list",
    "targets_of",
    "gencode_flags",
    "nvcc_flags",
    "parse_targets",
    "runs_on",
    "not_runnable_reason",
    "rebuild_command",
    "describe_targets",
    "nvcc_architectures",
]

#: Built when TORCH_CUDA_ARCH_LIST is unset and no GPU is visible: sm_80 SASS
#: (A100) and compute_80 PTX, which the driver compiles for every newer GPU (L4
#: and L40 8.9, H100 and H200 9.0, B200 10.0, ...). The kernels need nothing
#: newer than sm_80 (double atomicAdd: sm_60; no arch-specific instructions).
DEFAULT_ARCH_LIST = "8.0+PTX"

#: torch's names for groups of architectures (torch.utils.cpp_extension), as
#: TORCH_CUDA_ARCH_LIST accepts them. Combined names first (string replacement).
NAMED_ARCHES = (
    ("Kepler+Tesla", "3.7"),
    ("Kepler", "3.5+PTX"),
    ("Maxwell+Tegra", "5.3"),
    ("Maxwell", "5.0;5.2+PTX"),
    ("Pascal", "6.0;6.1+PTX"),
    ("Volta+Tegra", "7.2"),
    ("Volta", "7.0+PTX"),
    ("Turing", "7.5+PTX"),
    ("Ampere+Tegra", "8.7"),
    ("Ampere", "8.0;8.6+PTX"),
    ("Ada", "8.9+PTX"),
    ("Hopper", "9.0+PTX"),
    ("Blackwell+Tegra", "11.0"),
    ("Blackwell", "10.0;10.3;12.0;12.1+PTX"),
)

_ENTRY = re.compile(r"^(\d+)\.(\d+)([af]?)(\+PTX)?$")
_TARGET = re.compile(r"^(sm|compute)_(\d+)([af]?)$")

Capability = Tuple[int, int]


class ArchListError(ValueError):
    """An architecture list (or a visible GPU) that nvcc cannot build for; the message lists what is valid."""


class ArchChoice(NamedTuple):
    """What a CUDA build compiles for, and why."""

    #: the architecture list, normalised ("8.0+PTX", "8.6;9.0+PTX")
    arch_list: str
    #: its targets in order ("sm_80", "compute_80")
    targets: Tuple[str, ...]
    #: one line: where the list came from
    reason: str


def _number(major: int, minor: int) -> str:
    return f"{major}{minor}"


def nvcc_architectures(list_gpu_arch_output: str) -> List[str]:
    """The architectures in ``nvcc --list-gpu-arch``'s output ("compute_75 ..." -> ["7.5", ...]), sorted."""
    found = {int(n) for n in re.findall(r"compute_(\d+)\b", list_gpu_arch_output)}
    return [f"{n // 10}.{n % 10}" for n in sorted(found)]


def _valid_values_text(buildable: Optional[Sequence[str]]) -> str:
    names = ", ".join(name for name, _ in NAMED_ARCHES if "+" not in name)
    archs = " ".join(buildable) if buildable else "8.0 8.6 8.9 9.0 10.0 12.0 ..."
    return (
        f"valid: one or more of {archs} (the architectures this nvcc builds for), each optionally "
        "with +PTX (PTX that the driver compiles for newer GPUs) or an 'a' suffix (arch-specific, e.g. 9.0a), "
        f"separated by ';' or spaces, e.g. '{DEFAULT_ARCH_LIST}' or '8.6;9.0+PTX'; or torch's names ({names}); "
        "or 'native' (the visible GPUs)"
    )


def parse_arch_list(value: str, buildable: Optional[Sequence[str]] = None) -> List[str]:
    """The entries of an architecture list, names expanded: "Ampere" -> ["8.0", "8.6+PTX"].

    ``buildable``: the architectures nvcc builds for (:func:`nvcc_architectures`);
    None skips that check. Raises :class:`ArchListError`, listing the valid values,
    for anything else (``native`` is resolved by :func:`choose_arch_list`).
    """
    text = value.replace(" ", ";")
    for name, arches in NAMED_ARCHES:
        text = text.replace(name, arches)
    entries = [e.strip() for e in text.split(";") if e.strip()]
    if not entries:
        raise ArchListError(f"TORCH_CUDA_ARCH_LIST={value!r} names no architecture; {_valid_values_text(buildable)}")
    out: List[str] = []
    for entry in entries:
        m = _ENTRY.match(entry)
        if m is None:
            raise ArchListError(
                f"TORCH_CUDA_ARCH_LIST={value!r}: {entry!r} is not an architecture; {_valid_values_text(buildable)}"
            )
        if buildable is not None and f"{int(m.group(1))}.{int(m.group(2))}" not in buildable:
            raise ArchListError(
                f"TORCH_CUDA_ARCH_LIST={value!r}: nvcc cannot build for {entry!r}; {_valid_values_text(buildable)}"
            )
        if m.group(3) and int(m.group(1)) < 9:
            raise ArchListError(
                f"TORCH_CUDA_ARCH_LIST={value!r}: {entry!r}: arch- and family-specific targets ('a', 'f') "
                f"exist from 9.0 on; {_valid_values_text(buildable)}"
            )
        normalised = f"{int(m.group(1))}.{int(m.group(2))}{m.group(3)}{m.group(4) or ''}"
        if normalised not in out:
            out.append(normalised)
    return out


def targets_of(entries: Iterable[str]) -> Tuple[str, ...]:
    """The targets of architecture-list entries: ["8.0+PTX"] -> ("sm_80", "compute_80")."""
    targets: List[str] = []
    for entry in entries:
        m = _ENTRY.match(entry)
        if m is None:
            raise ArchListError(f"{entry!r} is not an architecture-list entry")
        num = _number(int(m.group(1)), int(m.group(2))) + m.group(3)
        for t in [f"sm_{num}"] + ([f"compute_{num}"] if m.group(4) else []):
            if t not in targets:
                targets.append(t)
    return tuple(targets)


def gencode_flags(targets: Iterable[str]) -> List[str]:
    """nvcc's flags for targets: sm_80 -> -gencode=arch=compute_80,code=sm_80; compute_80 -> ...,code=compute_80."""
    flags = []
    for t in targets:
        kind, num, suffix = _split_target(t)
        flags.append(f"-gencode=arch=compute_{num}{suffix},code={kind}_{num}{suffix}")
    return flags


def nvcc_flags(choice: ArchChoice) -> List[str]:
    """The nvcc flags of a build for ``choice``: its -gencode flags (torch then adds none of its
    own) and -DRESIZEOPS_CUDA_TARGETS, which records the targets in the library (build_info();
    '+'-separated: nvcc splits a -D value at commas)."""
    return gencode_flags(choice.targets) + ["-DRESIZEOPS_CUDA_TARGETS=" + "+".join(choice.targets)]


def _split_target(target: str) -> Tuple[str, str, str]:
    m = _TARGET.match(target)
    if m is None:
        raise ValueError(f"{target!r} is not a GPU target (sm_XY or compute_XY)")
    return m.group(1), m.group(2), m.group(3)


def _visible_entries(visible: Sequence[Capability], buildable: Optional[Sequence[str]]) -> List[str]:
    """torch's rule for the visible GPUs: each one's architecture (capped at the newest nvcc
    builds for), sorted, PTX with the last so that newer GPUs run it too."""
    newest = max((tuple(int(p) for p in a.split(".")) for a in buildable), default=None) if buildable else None
    oldest = min((tuple(int(p) for p in a.split(".")) for a in buildable), default=None) if buildable else None
    caps = []
    for cap in visible:
        cap = (int(cap[0]), int(cap[1]))
        if oldest is not None and cap < oldest:
            raise ArchListError(
                f"a visible GPU has compute capability {cap[0]}.{cap[1]}, older than any architecture this nvcc "
                f"builds for; set TORCH_CUDA_ARCH_LIST to the GPUs to build for; {_valid_values_text(buildable)}"
            )
        if newest is not None and cap > newest:
            cap = newest
        if cap not in caps:
            caps.append(cap)
    entries = [f"{major}.{minor}" for major, minor in sorted(caps)]
    entries[-1] += "+PTX"
    return entries


def choose_arch_list(
    env_value: Optional[str],
    visible: Sequence[Capability] = (),
    buildable: Optional[Sequence[str]] = None,
) -> ArchChoice:
    """The architectures a CUDA build compiles for.

    ``env_value``: TORCH_CUDA_ARCH_LIST (None or blank: unset); it wins when set
    ("native": the visible GPUs). Else the visible GPUs' compute capabilities
    (``visible``), as torch picks them. Else :data:`DEFAULT_ARCH_LIST`.
    ``buildable``: what nvcc builds for (:func:`nvcc_architectures`; None: not
    checked). Raises :class:`ArchListError` for a value nvcc cannot build.
    """
    value = (env_value or "").strip()
    if value and value != "native":
        entries = parse_arch_list(value, buildable)
        reason = f"TORCH_CUDA_ARCH_LIST={value!r} (set in the environment)"
    elif visible:
        entries = _visible_entries(visible, buildable)
        caps = ", ".join(f"{int(a)}.{int(b)}" for a, b in visible)
        reason = f"the visible GPUs (compute capability {caps})" + (
            ", TORCH_CUDA_ARCH_LIST=native" if value else "; TORCH_CUDA_ARCH_LIST is unset"
        )
    elif value == "native":
        raise ArchListError(
            f"TORCH_CUDA_ARCH_LIST='native' needs a visible GPU and none is visible; {_valid_values_text(buildable)}"
        )
    else:
        default = DEFAULT_ARCH_LIST
        if buildable is not None and default.split("+")[0] not in buildable:
            # An nvcc without sm_80: its oldest architecture at or above it instead.
            newer = [a for a in buildable if tuple(map(int, a.split("."))) >= (8, 0)]
            if not newer:
                raise ArchListError(f"this nvcc builds for none of sm_80 and newer; {_valid_values_text(buildable)}")
            default = newer[0] + "+PTX"
        entries = [default]
        reason = (
            "TORCH_CUDA_ARCH_LIST is unset and no GPU is visible: the default, SASS for one architecture "
            "plus PTX that the driver compiles for every newer GPU (A100 8.0, L4/L40 8.9, H100/H200 9.0, "
            "B200 10.0, ...); set TORCH_CUDA_ARCH_LIST (e.g. 9.0) for SASS of your GPU"
        )
    return ArchChoice(";".join(entries), targets_of(entries), reason)


def parse_targets(text: Optional[str]) -> Optional[Tuple[str, ...]]:
    """The targets a build recorded ("sm_80,compute_80" or "sm_80+compute_80"); None when not recorded."""
    if not text or text in ("none", "unknown"):
        return None
    targets = tuple(t for t in re.split(r"[,+\s]+", text.strip()) if t)
    for t in targets:
        _split_target(t)
    return targets or None


def _target_runs_on(target: str, capability: Capability) -> bool:
    kind, num, suffix = _split_target(target)
    major, minor = int(num[:-1]), int(num[-1])
    cap_major, cap_minor = int(capability[0]), int(capability[1])
    if suffix == "a":
        return (cap_major, cap_minor) == (major, minor)
    if kind == "compute" and not suffix:
        return (cap_major, cap_minor) >= (major, minor)
    # SASS, and the family-specific targets: the same major version, same or newer minor.
    return cap_major == major and cap_minor >= minor


def runs_on(targets: Iterable[str], capability: Capability) -> bool:
    """Whether a library with these targets runs on a GPU of this compute capability."""
    return any(_target_runs_on(t, capability) for t in targets)


def rebuild_command(capability: Capability) -> str:
    """The command that rebuilds the extension for a GPU of this compute capability."""
    return f"TORCH_CUDA_ARCH_LIST={int(capability[0])}.{int(capability[1])} pip install --no-build-isolation -e ."


def describe_targets(targets: Sequence[str]) -> str:
    """One line for `info`: "sm_80 (SASS for compute capability 8.0 and newer 8.x), compute_80 (PTX for >= 8.0, ...)"."""
    parts = []
    for t in targets:
        kind, num, suffix = _split_target(t)
        cap = f"{int(num[:-1])}.{int(num[-1])}"
        if suffix == "a":
            where = f"{cap} only"
        elif kind == "compute" and not suffix:
            where = f">= {cap}, compiled by the driver at first use"
        else:
            where = f"{cap} and newer {int(num[:-1])}.x"
        parts.append(f"{t} ({'SASS' if kind == 'sm' else 'PTX'} for compute capability {where})")
    return ", ".join(parts)


def not_runnable_reason(
    targets: Optional[Sequence[str]], capability: Capability, gpu: str = "this GPU"
) -> Optional[str]:
    """Why a library with these targets cannot run on the GPU (None: it can, or the targets are unknown)."""
    if not targets or runs_on(targets, capability):
        return None
    cap = f"{int(capability[0])}.{int(capability[1])}"
    return (
        f"the extension holds GPU code for {', '.join(targets)} only, none of which runs on {gpu} "
        f"(compute capability {cap}); rebuild it for this GPU, in the resizeops source tree: "
        f"{rebuild_command(capability)}"
    )
