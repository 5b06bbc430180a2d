"""The DynOPool kernel targets from benchmark CSVs, as a markdown table.

    python scripts/targets.py results/gpu_check      # every CSV below a folder
    python scripts/targets.py a.csv b.csv ...

Reads the CSVs ``python -m resizeops bench`` writes and prints, for the
ImageNet-VGG case (``dynopool-imagenet``) per dtype and layout found, where each
GPU target of the DynOPool kernels stands, per CUDA provider (the default ``cuda`` and,
where they ran, the variants of the cuda backend that take DynOPool's kernel forms:
``resizeops.core.kernel_forms.VARIANTS``, ``cuda-lanes``, ``cuda-fused``, ...):

- forward: fraction of the copy bandwidth at the ideal bytes (target >= 75%);
- forward+backward: ``compiled-reference`` time / provider time (target >= 5x);
- peak memory of forward+backward: provider / ``eager-reference`` (target <= 1/3),
  once as measured above the inputs (``peak_mib``) and once less the call's own
  results, its output and gradients (``extra_mib``: the memory beyond what any
  implementation must return, the target's "peak extra memory");
- Triton within 1.5x of CUDA: best Triton time / best CUDA time, forward and
  forward+backward (``triton`` and its DynOPool variants, ``triton-rows``, ...);

and the CPU target (``dynopool-small``, float32: ``cpu`` >= 3x faster than the
eager reference, forward+backward). Rows of a later CSV replace those of an
earlier one for the same (case, dtype, layout, mode, provider). Cells are "-"
where the measurement is missing. ``gpu_check.sh`` prints it last.
"""

from __future__ import annotations

import csv
import glob
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from resizeops.core.kernel_forms import VARIANTS


def _providers(backend: str) -> Tuple[str, ...]:
    """``backend`` and its variants that take DynOPool's forms, in the registry's order."""
    return (backend,) + tuple(n for n, v in VARIANTS.items() if v.backend == backend and "dynopool2d" in v.ops)


CUDA, TRITON = _providers("cuda"), _providers("triton")
EAGER, COMPILED = "eager-reference", "compiled-reference"

Key = Tuple[str, str, str, str, str]  # case, dtype, layout, mode, provider


def load(paths: Sequence[str]) -> Tuple[Dict[Key, dict], List[str]]:
    """The rows of the CSVs under ``paths`` (files or folders), by key; and the device names seen."""
    files: List[str] = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(glob.glob(os.path.join(p, "**", "*.csv"), recursive=True))
        elif os.path.isfile(p):
            files.append(p)
    rows: Dict[Key, dict] = {}
    devices: List[str] = []
    for f in files:
        with open(f, newline="") as fh:
            for r in csv.DictReader(fh):
                if r.get("error"):
                    continue
                rows[(r["case"], r["dtype"], r["layout"], r["mode"], r["provider"])] = r
                if r.get("device_name") and r["device_name"] not in devices:
                    devices.append(r["device_name"])
    return rows, devices


def _num(r: Optional[dict], k: str) -> Optional[float]:
    try:
        v = float(r[k]) if r is not None and r.get(k) not in (None, "") else None
    except ValueError:
        return None
    return v if v == v else None  # NaN -> None


def _fmt(v: Optional[float], fmt: str, unit: str = "") -> str:
    return "-" if v is None else format(v, fmt) + unit


def gpu_table(rows: Dict[Key, dict], case: str = "dynopool-imagenet") -> str:
    """The markdown table of the DynOPool kernels' GPU targets for ``case``; empty if it has no rows."""
    configs = sorted({(k[1], k[2]) for k in rows if k[0] == case}, key=lambda c: (c[0] != "float32", c[1] != "NCHW"))
    if not configs:
        return ""

    def get(dtype, layout, mode, provider):
        return rows.get((case, dtype, layout, mode, provider))

    def per_cuda(fn) -> List[str]:
        cells = []
        for dtype, layout in configs:
            parts = [f"{p} {fn(dtype, layout, p)}" for p in CUDA if get(dtype, layout, "fwd+bwd", p) or get(dtype, layout, "fwd", p)]
            cells.append(", ".join(parts) or "-")
        return cells

    def frac(dtype, layout, p):
        return _fmt(None if (v := _num(get(dtype, layout, "fwd", p), "frac_copy_bw")) is None else 100 * v, ".0f", "%")

    def vs_compiled(dtype, layout, p):
        c, t = _num(get(dtype, layout, "fwd+bwd", COMPILED), "ms_p50"), _num(get(dtype, layout, "fwd+bwd", p), "ms_p50")
        return _fmt(c / t if c and t else None, ".2f", "×")

    def peak(dtype, layout, p, key="peak_mib"):
        e, m = _num(get(dtype, layout, "fwd+bwd", EAGER), key), _num(get(dtype, layout, "fwd+bwd", p), key)
        return _fmt(m / e if e and m is not None else None, ".2f")

    def extra(dtype, layout, p):
        return peak(dtype, layout, p, "extra_mib")

    def best(dtype, layout, mode, providers):
        ts = [t for p in providers if (t := _num(get(dtype, layout, mode, p), "ms_p50"))]
        return min(ts) if ts else None

    triton = []
    for dtype, layout in configs:
        parts = []
        for mode in ("fwd", "fwd+bwd"):
            t, c = best(dtype, layout, mode, TRITON), best(dtype, layout, mode, CUDA)
            parts.append(_fmt(t / c if t and c else None, ".2f", "×"))
        triton.append(" / ".join(parts))
    head = ["target"] + [f"{d} {'channels_last' if lay == 'NHWC' else lay}" for d, lay in configs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, cells in [
        ("CUDA forward ≥ 75% of copy bandwidth", per_cuda(frac)),
        ("CUDA fwd+bwd ≥ 5× faster than `torch.compile(reference)`", per_cuda(vs_compiled)),
        ("peak memory of fwd+bwd ≤ 1/3 of the reference's (above the inputs)", per_cuda(peak)),
        ("peak extra memory of fwd+bwd ≤ 1/3 of the reference's (above the inputs and results)", per_cuda(extra)),
        ("Triton within 1.5× of CUDA (best of each; forward / fwd+bwd)", triton),
    ]:
        lines.append("| " + " | ".join([name] + cells) + " |")
    return "\n".join(lines)


def cpu_line(rows: Dict[Key, dict], case: str = "dynopool-small") -> str:
    """The DynOPool CPU target: the ``cpu`` backend's fwd+bwd speed-up over eager (float32)."""
    for layout in ("NCHW", "NHWC"):
        r = rows.get((case, "float32", layout, "fwd+bwd", "cpu"))
        e = rows.get((case, "float32", layout, "fwd+bwd", EAGER))
        t, b = _num(r, "ms_p50"), _num(e, "ms_p50")
        if t and b:
            return f"CPU target ({case}, float32 {layout}, fwd+bwd): cpu {b / t:.2f}× faster than eager (target ≥ 3×)"
    return ""


def main(argv: Sequence[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[0])
        print("usage: python scripts/targets.py <folder or CSV> ...")
        return 2
    rows, devices = load(argv)
    table, cpu = gpu_table(rows), cpu_line(rows)
    if not table and not cpu:
        print("targets: no dynopool-imagenet or dynopool-small rows in", ", ".join(argv))
        return 1
    if devices:
        print("device:", "; ".join(devices))
    if table:
        print("The DynOPool kernel targets, dynopool-imagenet:")
        print(table)
    if cpu:
        print(cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
