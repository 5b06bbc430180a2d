"""The results: one row (a dict of :data:`CSV_FIELDS`) per measurement, as a table, a CSV and a plot.

Columns: ``ratio_vs_eager`` = eager-reference time / provider time (>1 is faster
than eager; :func:`_fill_ratios`); ``frac_copy_bw`` = ideal bytes / time / copy
bandwidth (ideal bytes: read every input and write every output once, see
``Case.ideal_bytes``); ``peak_mib`` and ``extra_mib`` (CUDA only): the call's
peak memory above its inputs, and that peak less its own results; ``max_err`` =
max |provider − eager-reference| of the forward output; ``first_ms`` the first
call (compilation included). ``python -m resizeops bench`` appends the rows to
``<out>/bench-<device>.csv`` (:func:`write_csv`, with timestamp, device name,
torch and resizeops versions) and plots them to ``<out>/bench-<device>.png``
(:func:`write_plot`).
"""

from __future__ import annotations

import csv
import os
import platform
import sys
from typing import Any, Dict, List

import torch

from .providers import EAGER

CSV_FIELDS = [
    "timestamp", "device", "device_name", "torch", "resizeops", "case", "op", "shapes", "dtype", "layout",
    "mode", "provider", "ms_p50", "ms_p20", "ms_p80", "samples", "first_ms", "ratio_vs_eager",
    "ideal_bytes", "copy_gbps", "frac_copy_bw", "peak_mib", "extra_mib", "max_err",
    "error",
]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    proc = platform.processor() or platform.machine()
    return f"{proc} ({os.cpu_count()} CPUs, {torch.get_num_threads()} threads)"


def _resizeops_version() -> str:
    try:
        import resizeops

        return getattr(resizeops, "__version__", "")
    except Exception:  # noqa: BLE001
        return ""


def _fill_ratios(rows: List[Dict[str, Any]]) -> None:
    eager = {
        (r["case"], r["dtype"], r["layout"], r["mode"]): r["ms_p50"]
        for r in rows
        if r["provider"] == EAGER and r["ms_p50"] is not None
    }
    for r in rows:
        base = eager.get((r["case"], r["dtype"], r["layout"], r["mode"]))
        r["ratio_vs_eager"] = base / r["ms_p50"] if base and r["ms_p50"] else None


def _fmt(v, spec: str) -> str:
    return "" if v is None else format(v, spec)


def format_table(rows: List[Dict[str, Any]], bw_label: str = "frac_bw") -> str:
    """The results as an aligned text table."""
    head = ["case", "dtype", "layout", "mode", "provider", "ms(p50)", "ratio", bw_label, "peak_MiB", "extra_MiB",
            "max_err"]
    body = []
    for r in rows:
        if r["error"]:
            body.append([r["case"], r["dtype"], r["layout"], r["mode"], r["provider"], "error", "", "", "", "",
                         r["error"][:60]])
            continue
        body.append([
            r["case"], r["dtype"], r["layout"], r["mode"], r["provider"],
            _fmt(r["ms_p50"], ".3f"), _fmt(r["ratio_vs_eager"], ".2f"), _fmt(r["frac_copy_bw"], ".2f"),
            "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.1f}",
            "n/a" if r.get("extra_mib") is None else f"{r['extra_mib']:.1f}", _fmt(r["max_err"], ".1e"),
        ])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    numeric = {5, 6, 7, 8, 9, 10}
    lines = []
    for i, line in enumerate([head] + body):
        cells = [str(c).rjust(w) if j in numeric and i > 0 else str(c).ljust(w) for j, (c, w) in enumerate(zip(line, widths))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_csv(path: str, rows: List[Dict[str, Any]]) -> None:
    """Append ``rows`` to ``path``, writing the header when the file is new.

    A file written with other columns (an older resizeops) is first renamed to ``<name>.<n>.csv``, kept
    whole, so that no row lands under another column's header.
    """
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    if not new:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        if header != CSV_FIELDS:
            stem, n = os.path.splitext(path)[0], 1
            while os.path.exists(f"{stem}.{n}.csv"):
                n += 1
            os.replace(path, f"{stem}.{n}.csv")
            print(f"bench: {path} had other columns; kept as {stem}.{n}.csv", file=sys.stderr)
            new = True
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})


def write_plot(path: str, rows: List[Dict[str, Any]], title: str) -> None:
    """Grouped bars: speed-up over eager-reference per case/mode (one bar per provider)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["ratio_vs_eager"] is not None]
    multi = len({(r["dtype"], r["layout"]) for r in ok}) > 1
    groups: List[tuple] = []
    for r in ok:
        g = (r["case"], r["mode"], r["dtype"], r["layout"])
        if g not in groups:
            groups.append(g)
    providers: List[str] = []
    for r in ok:
        if r["provider"] not in providers:
            providers.append(r["provider"])
    value = {((r["case"], r["mode"], r["dtype"], r["layout"]), r["provider"]): r["ratio_vs_eager"] for r in ok}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2), 4.5))
    width = 0.8 / max(1, len(providers))
    for i, p in enumerate(providers):
        xs = [j + (i - (len(providers) - 1) / 2) * width for j in range(len(groups))]
        ys = [value.get((g, p), 0.0) for g in groups]
        ax.bar(xs, ys, width, label=p)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    labels = [f"{c}\n{m}" + (f"\n{d} {l}" if multi else "") for c, m, d, l in groups]
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
    ax.set_ylabel("speed-up vs eager-reference (>1 faster)")
    ax.set_title(title, fontsize=9)
    if providers:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
