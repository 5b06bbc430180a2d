"""Kernel forms: the one place where a backend's equivalent ways of computing an op are chosen.

Some kernels can compute an op in more than one way (tiles or a loop in a
gather, atomics or a gather for DynOPool's grad_x, one or four channels per
CUDA thread, ...). The way one call takes is a :class:`KernelForms`: the
defaults are the forms a GPU run measured fastest, and nothing else changes
them. Other forms are reached only through the named :data:`VARIANTS` of the
backend registry, passed as the backend name (``backend="cuda-lanes"``), which
the benchmarks, the profiler and the GPU run script use to time one form
against another, and through :class:`KernelForms` objects the tests pass to the
kernels directly (the test hooks: the 64-bit index path, smaller tiles).

The forms reach the compiled kernels as the last argument of every
``resizeops_ext`` op (:meth:`KernelForms.encode`, decoded by
``csrc/include/resizeops/kernel_forms.h``) and the Triton kernels as keyword
arguments: no environment variable is read per call.

Variants whose forms no GPU has timed are marked ``experimental``: they are
kept, tested only when asked for (``pytest --experimental``), and left out of
the user docs until a GPU run decides them (docs/PERF_NOTES.md, "Kernel forms").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

_CHOICES = {
    "gather": ("auto", "tile", "loop"),
    "grad_x": ("auto", "gather", "scatter", "fused"),
    "fused_winners": ("cell", "separable"),
    "forward": ("cell", "rows", "separable"),
    "lanes": (1, 4),
    "triton_forward": ("flat", "rows"),
    "triton_warps": (4, 8),
}
# Tile caps the kernels accept (test hooks): (rows, columns) at most.
_TILE_LIMITS = {"fused_tile": (16, 64), "forward_tile": (16, 32)}


@dataclass(frozen=True)
class KernelForms:
    """The forms of one call; every field's default is the measured default.

    CUDA kernels (and their serial CPU emulation):

    * ``gather``: the gathers' 3×3 tiles or a loop per pixel (DynOPool's
      backward pass 2, the blend and Shape Adaptor gathers). ``"auto"``: each
      kernel's measured default (DynOPool tiles for 4- and 8-byte types, loops
      otherwise).
    * ``grad_x``: DynOPool's grad_x by atomics (``"scatter"``), a fixed-order
      gather, or the experimental ``"fused"`` kernel. ``"auto"``: scatter for
      float32/float64, gather for 16-bit types and under
      ``torch.use_deterministic_algorithms(True)``.
    * ``fused_winners`` (experimental): how the fused backward finds its winners.
    * ``forward`` (experimental ``"rows"``, ``"separable"``): DynOPool's NCHW forward.
    * ``lanes`` (experimental 4): channels of a cell per thread.

    Triton kernels: ``triton_forward`` (experimental ``"rows"``: DynOPool's NCHW
    forward in 2-D tiles) and ``triton_warps`` (experimental 8).

    Test hooks: ``force_int64`` (the 64-bit index path on small tensors, CUDA
    and Triton), ``fused_tile`` and ``forward_tile`` ((rows, cols) caps, powers
    of two, on the tiles of the fused backward and the separable forward, so
    that small test images span many tiles).
    """

    gather: str = "auto"
    grad_x: str = "auto"
    fused_winners: str = "cell"
    forward: str = "cell"
    lanes: int = 1
    triton_forward: str = "flat"
    triton_warps: int = 4
    force_int64: bool = False
    fused_tile: Optional[Tuple[int, int]] = None
    forward_tile: Optional[Tuple[int, int]] = None

    def __post_init__(self):
        for name, valid in _CHOICES.items():
            value = getattr(self, name)
            # (type check first: True == 1 and "4" != 4, but neither is a lane count)
            if type(value) is not type(valid[0]) or value not in valid:
                raise ValueError(f"KernelForms.{name}={value!r}; expected one of {', '.join(map(repr, valid))}")
        if not isinstance(self.force_int64, bool):
            raise TypeError(f"KernelForms.force_int64 must be a bool, got {self.force_int64!r}")
        for name, (max_h, max_w) in _TILE_LIMITS.items():
            tile = getattr(self, name)
            if tile is None:
                continue
            ok = (
                isinstance(tile, tuple)
                and len(tile) == 2
                and all(isinstance(t, int) and t >= 1 and t & (t - 1) == 0 for t in tile)
                and tile[0] <= max_h
                and tile[1] <= max_w
            )
            if not ok:
                raise ValueError(
                    f"KernelForms.{name}={tile!r}; expected None or (rows, cols), powers of two up to ({max_h}, {max_w})"
                )

    def encode(self) -> list:
        """The ``int[] forms`` argument of the ``resizeops_ext`` ops (kernel_forms.h
        ``KernelForms::decode``, same order); empty for the defaults."""
        if self == DEFAULT:
            return []
        fused = self.fused_tile or (0, 0)
        forward = self.forward_tile or (0, 0)
        return [
            _CHOICES["gather"].index(self.gather),
            _CHOICES["grad_x"].index(self.grad_x),
            _CHOICES["fused_winners"].index(self.fused_winners),
            _CHOICES["forward"].index(self.forward),
            self.lanes,
            fused[0],
            fused[1],
            forward[0],
            forward[1],
            int(self.force_int64),
        ]


DEFAULT = KernelForms()


@dataclass(frozen=True)
class Variant:
    """A named kernel form of a backend, selectable as ``backend=<name>``."""

    name: str
    backend: str
    forms: KernelForms
    #: the ops whose kernels take these forms (the others run the backend's defaults)
    ops: Tuple[str, ...]
    #: what it is, and where it stands
    about: str
    #: True while no GPU run has timed it: tested only with ``pytest --experimental``
    experimental: bool = False
    #: True if it differs from the defaults for NCHW outputs only (channels_last takes the default)
    nchw_only: bool = False


_DYNOPOOL = ("dynopool2d",)
_ALL = ("dynopool2d", "resize_blend", "shape_adaptor_maxpool")

VARIANTS: Dict[str, Variant] = {
    v.name: v
    for v in (
        # Measured alternatives of the defaults (the A/B runs that set them).
        Variant(
            "cuda-gather", "cuda", KernelForms(grad_x="gather"), _DYNOPOOL,
            "DynOPool's grad_x by the fixed-order gather (the default under deterministic "
            "algorithms and for 16-bit types); scatter is 1.85x faster fwd+bwd in float32 (H200)",
        ),
        Variant(
            "cuda-tile", "cuda", KernelForms(gather="tile", grad_x="gather"), _ALL,
            "the gathers in 3x3 tiles: DynOPool's default for 4/8-byte types; 30-40% slower for the blends (H200)",
        ),
        Variant(
            "cuda-loop", "cuda", KernelForms(gather="loop", grad_x="gather"), _ALL,
            "the gathers as a loop per pixel: the blends' default; DynOPool 5-14% slower in 4/8-byte types (H200)",
        ),
        # EXPERIMENTAL: built, tested by the emulation, never timed on a GPU.
        Variant(
            "cuda-lanes", "cuda", KernelForms(lanes=4), _DYNOPOOL,
            "4 channels of a cell per thread (2 in float64), vector loads where aligned", experimental=True,
        ),
        Variant(
            "cuda-fused", "cuda", KernelForms(grad_x="fused"), _DYNOPOOL,
            "DynOPool's backward in one kernel per tile of input pixels (deterministic, every dtype)",
            experimental=True,
        ),
        Variant(
            "cuda-fused-lanes", "cuda", KernelForms(grad_x="fused", lanes=4), _DYNOPOOL,
            "the fused backward with phase A's lanes form in channels_last", experimental=True,
        ),
        Variant(
            "cuda-rows", "cuda", KernelForms(forward="rows"), _DYNOPOOL,
            "DynOPool's NCHW forward, 4 adjacent cells of a row per thread", experimental=True, nchw_only=True,
        ),
        Variant(
            "cuda-separable", "cuda", KernelForms(forward="separable"), _DYNOPOOL,
            "DynOPool's NCHW forward, one block per tile of cells sharing vertical interpolations",
            experimental=True, nchw_only=True,
        ),
        Variant(
            "cuda-fused-separable", "cuda",
            KernelForms(forward="separable", grad_x="fused", fused_winners="separable"), _DYNOPOOL,
            "the separable forward and the fused backward finding its winners separably", experimental=True,
            nchw_only=True,
        ),
        Variant(
            "triton-rows", "triton", KernelForms(triton_forward="rows"), _DYNOPOOL,
            "DynOPool's NCHW Triton forward in 2-D tiles", experimental=True, nchw_only=True,
        ),
        Variant(
            "triton-w8", "triton", KernelForms(triton_warps=8), _DYNOPOOL,
            "DynOPool's Triton forwards with 8 warps per program", experimental=True,
        ),
        Variant(
            "triton-rows-w8", "triton", KernelForms(triton_forward="rows", triton_warps=8), _DYNOPOOL,
            "the 2-D-tile Triton forward with 8 warps", experimental=True, nchw_only=True,
        ),
    )
}  # fmt: skip
