"""The report as text and as a plot: :func:`table`, :func:`summary`, :func:`plot`.

``RFReport.table()``, ``.summary()``, ``str(report)`` and ``.plot()`` call these;
numbers print as integers when they are, ``∞`` for infinite receptive fields,
and a pair (H, W) as one number when both axes agree (``5``, else ``15×31``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

from .state import AXES, INF

if TYPE_CHECKING:  # pragma: no cover
    from .report import RFReport


def fmt(v: Optional[float], digits: int = 2) -> str:
    """A number of the report: ``-`` for None, ``∞``, an integer when it is one, else ``digits`` decimals."""
    if v is None:
        return "-"
    if v == INF:
        return "∞"
    if abs(v - round(v)) < 1e-9:
        return str(int(round(v)))
    return f"{v:.{digits}f}".rstrip("0").rstrip(".")


def fmt_pair(p: Optional[Sequence[Optional[float]]], sep: str = "×") -> str:
    """(H, W) as one number when both agree, else ``H×W``."""
    if p is None:
        return "-"
    a, b = fmt(p[0]), fmt(p[1])
    return a if a == b else f"{a}{sep}{b}"


def table(report: "RFReport", all_rows: bool = False) -> str:
    """The per-layer table (see :meth:`RFReport.table`)."""
    rows = [r for r in report.layers if all_rows or r.kind not in ("pointwise", "reshape")]
    head = ["layer", "op", "kernel", "stride", "m", "r_min", "r_max", "size"]
    body = [
        [r.name, r.op, fmt_pair(r.kernel), fmt_pair(r.stride),
         fmt_pair(tuple(None if v == INF else v for v in r.m)), fmt_pair(r.r_min),
         fmt_pair(r.r_max), fmt_pair(r.size)]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    widths[0] = min(widths[0], 48)
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    for b in body:
        name = b[0] if len(b[0]) <= widths[0] else "…" + b[0][-(widths[0] - 1):]
        cells = [name] + b[1:]
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    return "\n".join(lines)


def summary(report: "RFReport") -> str:
    """The derived numbers in a few lines (see :meth:`RFReport.summary`)."""
    h, w = report.input_size
    n_layers = sum(r.is_layer for r in report.layers)
    n_inf = sum(r.is_layer and r.is_infinite for r in report.layers)
    lo, hi = report.min_feasible_resolution, report.max_feasible_resolution
    lines = [
        f"{report.model} at {h}×{w}: {n_layers} layers"
        + (f" ({n_inf} after global pooling or in global-context branches: r = ∞)" if n_inf else "")
        + ("; dilation ignored" if report.ignore_dilation else "")
        + ("; infinite paths filtered" if report.filter_inf else ""),
        f"min feasible resolution: {fmt_pair(lo)}  (set by {_min_source(report)})",
        f"lower bound (rfa-toolbox): {fmt_pair(report.lower_bound_resolution)}",
        f"max feasible resolution: {fmt_pair(hi)}  (largest finite r_max)",
    ]
    bad = report.unproductive_reasons()
    if bad:
        names = ", ".join(f"{r.name} ({why})" for r, why in bad[:8]) + (f", … ({len(bad)} in all)" if len(bad) > 8 else "")
        lines.append(f"unproductive at {h}×{w}: {len(bad)} layer{'s' if len(bad) > 1 else ''}: {names}")
        lines.append("  (r_min: the input's r_min reaches the image; map: the kernel covers the whole input map)")
    else:
        lines.append(f"unproductive at {h}×{w}: none")
    under = report.underutilised()
    if under:
        names = ", ".join(r.name for r in under[:8]) + (f", … ({len(under)} in all)" if len(under) > 8 else "")
        lines.append(f"underutilised at {h}×{w} (r_min past the image): {len(under)}: {names}")
    if report.assumed_pointwise:
        lines.append("taken as pointwise (unknown ops that keep the map size; pass rules= if they do not): "
                     + ", ".join(report.assumed_pointwise))
    lines += [f"note: {t}" for t in report.notes[:3]]
    if len(report.notes) > 3:
        lines.append(f"note: … and {len(report.notes) - 3} more reshapes taken as global")
    return "\n".join(lines)


def _min_source(report: "RFReport") -> str:
    a, b = report.min_feasible_layers()
    return a if a == b else f"H: {a}; W: {b}"


def plot(report: "RFReport", path: Optional[str] = None, title: Optional[str] = None, axis: str = "h"):
    """r_min and r_max per layer on a log scale (see :meth:`RFReport.plot`); the matplotlib figure."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    i = AXES.index(axis)
    rows = [r for r in report.layers if r.is_layer and r.r_min[i] != INF]
    xs = list(range(len(rows)))
    rmin = [r.r_min[i] for r in rows]
    rmax = [r.r_max_finite[i] for r in rows]
    fig, ax = plt.subplots(figsize=(min(max(5.0, 0.12 * len(rows) + 3), 16), 3.8))
    ax.plot(xs, rmin, "-", color="C0", lw=1.5, label="r_min")
    ax.plot(xs, rmax, "--", color="C1", lw=1.2, label="r_max (finite paths)")
    inf_x = [x for x, r in zip(xs, rows) if r.r_max[i] == INF]
    if inf_x:
        top = max(rmax + [report.input_size[i]]) * 1.6
        ax.plot(inf_x, [top] * len(inf_x), "^", color="C1", ms=3, label="r_max = ∞ (global context)")
    res = report.input_size[i]
    bad = {id(r) for r in report.unproductive()}
    bad_x = [x for x, r in zip(xs, rows) if id(r) in bad]
    if bad_x:
        ax.plot(bad_x, [rows[x].r_min[i] for x in bad_x], "x", color="C3", ms=5, label="unproductive")
    ax.axhline(res, color="k", lw=1, label=f"input {res}")
    lo = report.min_feasible_resolution[i]
    ax.axhline(lo, color="C3", lw=0.8, ls=":", label=f"min feasible {fmt(lo)}")
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel(f"receptive field ({'height' if axis == 'h' else 'width'}, px)")
    if len(rows) <= 40:
        ax.set_xticks(xs)
        ax.set_xticklabels([r.name for r in rows], rotation=70, ha="right", fontsize=6)
    ax.set_title(title or f"{report.model} at {report.input_size[0]}×{report.input_size[1]}")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
