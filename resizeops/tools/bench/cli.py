"""``python -m resizeops bench``: plan the measurements, run them, print the table, append the CSV, plot.

:func:`main` reads the options (:func:`build_parser`), plans (case, providers)
pairs (:func:`~.providers.providers_for`), measures every (case, dtype,
provider, mode) (:func:`_run_plan`; Ctrl-C or SIGTERM stops and keeps what was
measured) and writes the results (``results.py``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .cases import CASES, MODES, OPS, Case, cases_for
from .measure import _measure, copy_bandwidth
from .providers import COMPILED, EAGER, VARIANTS, providers_for, reset_compiled
from .results import _device_name, _fill_ratios, _resizeops_version, format_table, write_csv, write_plot

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,
    "fp64": torch.float64,
    "double": torch.float64,
}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _parse_dtypes(spec: Optional[str], device: torch.device) -> List[torch.dtype]:
    if not spec:
        return [torch.float32, torch.bfloat16] if device.type == "cuda" else [torch.float32]
    out = []
    for s in spec.split(","):
        s = s.strip().lower().replace("torch.", "")
        if s not in _DTYPES:
            raise ValueError(f"--dtype: unknown dtype {s!r}; expected float32, float16, bfloat16 or float64")
        if _DTYPES[s] not in out:
            out.append(_DTYPES[s])
    return out


def _split(spec: Optional[str]) -> Optional[List[str]]:
    return None if spec is None else [s.strip() for s in spec.split(",") if s.strip()]


def _variants_help() -> str:
    """The variant names for ``--backends``' help, with the ops they apply to; the experimental ones apart."""
    parts = []
    for experimental in (False, True):
        by_ops: Dict[Tuple[str, ...], List[str]] = {}
        for v in VARIANTS.values():
            if v.experimental == experimental:
                by_ops.setdefault(v.ops, []).append(v.name)
        groups = ", ".join(
            f"{', '.join(names)} [{'every op' if set(ops) == set(OPS) else ', '.join(ops)}]"
            for ops, names in by_ops.items()
        )
        if groups:
            parts.append(f"experimental, never timed on a GPU: {groups}" if experimental else groups)
    return "; ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m resizeops bench",
        description="Benchmark resizeops ops: every available backend vs the eager and compiled PyTorch reference.",
        epilog="Cases: " + ", ".join(f"{c.name} [{c.tier}]" for c in CASES.values()),
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    p.add_argument("--dtype", default=None, help="comma list, e.g. float32,bfloat16 (default: float32 on cpu, float32,bfloat16 on cuda)")
    p.add_argument("--cases", default=None, help="comma list of case names or tiers (cpu, gpu), or 'all' (default: the device's tier)")
    p.add_argument("--modes", default=",".join(MODES), help="comma list of fwd, fwd+bwd (default: both)")
    p.add_argument(
        "--backends", default=None,
        help=f"comma list of providers to run: backend names (cuda, triton, cpu, reference), {EAGER}, {COMPILED}, "
        f"variants (a backend running other kernel forms, resizeops/core/kernel_forms.py): {_variants_help()} "
        "(default: every available backend + both references; the Triton interpreter on the CPU and the variants "
        "only when named; NCHW-only variants are skipped with --channels-last)",
    )
    p.add_argument("--channels-last", action="store_true", help="feature maps in channels_last memory format")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (default: do_bench on CUDA; up to 10 / ~0.5 s on the CPU)")
    p.add_argument("--no-compile", action="store_true", help=f"skip {COMPILED} (torch.compile)")
    p.add_argument("--out", default="results", help="results folder (default: results/)")
    p.add_argument("--quick", action="store_true", help="one warm-up and one timed call per measurement (smoke test)")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p


def _settings(args) -> Tuple[torch.device, List[torch.dtype], List[Case], List[str]]:
    """(device, dtypes, cases, modes) from the options; ValueError naming the bad option."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible")
    dtypes = _parse_dtypes(args.dtype, device)
    cases = cases_for(args.cases, device)
    modes = _split(args.modes) or list(MODES)
    for m in modes:
        if m not in MODES:
            raise ValueError(f"--modes: unknown mode {m!r}; expected {', '.join(MODES)}")
    if args.repeats is not None and args.repeats < 1:
        raise ValueError("--repeats must be >= 1")
    return device, dtypes, cases, modes


def _measure_row(case: Case, provider: str, mode: str, dtype: torch.dtype, inputs: Dict[str, Any],
                 device: torch.device, args, common: Dict[str, Any], bw: float, layout: str,
                 expected: Dict[str, torch.Tensor]) -> Dict[str, Any]:  # fmt: skip
    """One row of the results: the measurement, or the error that stopped it (the others go on).

    ``expected`` caches the eager reference's forward output under "fwd" for ``max_err``.
    """
    row = dict(common)
    row.update(
        case=case.name, op=case.op, shapes=case.summary(), dtype=_dtype_name(dtype), layout=layout,
        mode=mode, provider=provider, ms_p50=None, ms_p20=None, ms_p80=None, samples=None,
        first_ms=None, ratio_vs_eager=None, ideal_bytes=case.ideal_bytes(dtype, mode),
        frac_copy_bw=None, peak_mib=None, extra_mib=None, max_err=None, error="",
    )
    try:
        (p50, p20, p80), n, first, (peak, extra), out = _measure(
            case, provider, mode, inputs, device, args.repeats, args.quick
        )
        row.update(ms_p50=p50, ms_p20=p20, ms_p80=p80, samples=n, first_ms=round(first, 3), peak_mib=peak,
                   extra_mib=extra)
        row["frac_copy_bw"] = row["ideal_bytes"] / (p50 * 1e-3) / bw if p50 > 0 else None
        if mode == "fwd" and out is not None:
            if "fwd" not in expected:
                with torch.no_grad():
                    expected["fwd"] = case.run(inputs, EAGER).double()
            row["max_err"] = (out.double() - expected["fwd"]).abs().max().item() if out.numel() else 0.0
    except Exception as e:  # noqa: BLE001 - one failing provider must not stop the others
        row["error"] = f"{type(e).__name__}: {e}".replace("\n", " ")
    return row


def _run_plan(plan: List[Tuple[Case, List[str]]], dtypes: List[torch.dtype], modes: List[str], device: torch.device,
              args, common: Dict[str, Any], bw: float, layout: str,
              total: int) -> Tuple[List[Dict[str, Any]], bool]:  # fmt: skip
    """Every (case, dtype, provider, mode) of the plan: (rows, whether Ctrl-C / SIGTERM stopped it)."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency of the benchmarks
        tqdm = None
    rows: List[Dict[str, Any]] = []
    bar = tqdm(total=total, desc="bench", unit="run", file=sys.stderr, dynamic_ncols=True) if tqdm else None
    # Ctrl-C or a SIGTERM (e.g. from `timeout`) stops the run but keeps what was measured.
    interrupted = False
    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for case, provs in plan:
            for dtype in dtypes:
                if COMPILED in provs:
                    reset_compiled()  # one fresh compilation per case / dtype / layout
                by_mode = {
                    m: case.make_inputs(device, dtype, requires_grad=(m == "fwd+bwd"), channels_last=args.channels_last)
                    for m in modes
                }
                expected: Dict[str, torch.Tensor] = {}
                for provider in provs:
                    for mode in modes:
                        if bar is not None:
                            bar.set_postfix_str(f"{case.name} {_dtype_name(dtype)} {provider} {mode}", refresh=False)
                        rows.append(_measure_row(case, provider, mode, dtype, by_mode[mode], device, args, common,
                                                 bw, layout, expected))  # fmt: skip
                        if bar is not None:
                            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return rows, interrupted


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m resizeops bench``: run, print a table, append to the CSV, plot. 0 on success."""
    args = build_parser().parse_args(None if argv is None else [str(a) for a in argv])
    if args.list:
        for c in CASES.values():
            print(f"{c.name:<24} [{c.tier}] {c.op:<13} {c.summary()}  ({c.description})")
        return 0
    try:
        device, dtypes, cases, modes = _settings(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    wanted = _split(args.backends)
    layout = "NHWC" if args.channels_last else "NCHW"

    notes: List[str] = []
    plan = []
    for case in cases:
        provs = providers_for(case, device, wanted, compile=not args.no_compile, notes=notes,
                              channels_last=args.channels_last)
        plan.append((case, provs))
    for n in dict.fromkeys(notes):
        print(n, file=sys.stderr)
    total = sum(len(p) for _, p in plan) * len(dtypes) * len(modes)
    if total == 0:
        print("error: nothing to run (check --backends / --cases)", file=sys.stderr)
        return 2

    t_start = time.perf_counter()
    bw = copy_bandwidth(device, quick=args.quick)
    common = {
        "timestamp": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": _device_name(device),
        "torch": torch.__version__,
        "resizeops": _resizeops_version(),
        "copy_gbps": round(bw / 1e9, 3),
    }
    rows, interrupted = _run_plan(plan, dtypes, modes, device, args, common, bw, layout, total)
    if interrupted:
        print(f"interrupted: keeping the {len(rows)} of {total} measurements done", file=sys.stderr)
    elapsed = time.perf_counter() - t_start
    _fill_ratios(rows)

    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, f"bench-{device.type}.csv")
    png_path = os.path.join(args.out, f"bench-{device.type}.png")
    write_csv(csv_path, rows)
    if not args.no_plot:
        write_plot(png_path, rows, f"resizeops {common['resizeops']} on {common['device_name']}, torch {torch.__version__}")

    print(
        f"resizeops {common['resizeops']} bench on {device} ({common['device_name']}), torch {torch.__version__}; "
        f"copy bandwidth {bw / 1e9:.1f} GB/s; {elapsed:.1f} s"
    )
    print("ratio = eager-reference ms / provider ms (>1 faster); frac_bw = ideal bytes / ms / copy bandwidth"
          + ("; peak_MiB, extra_MiB: CUDA only" if device.type != "cuda" else ""))
    print(format_table(rows))
    print(f"results appended to {csv_path}" + ("" if args.no_plot else f"; plot {png_path}"))
    errors = [r for r in rows if r["error"]]
    for r in errors:
        print(f"error: {r['case']} {r['dtype']} {r['mode']} {r['provider']}: {r['error']}", file=sys.stderr)
    if interrupted:
        return 130
    return 1 if errors else 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
