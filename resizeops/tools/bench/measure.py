"""Measuring one provider on one case: time, memory, and the copy bandwidth they are compared with.

:func:`_measure` is the entry point: one (provider, mode) measurement. Its parts:

* time: on CUDA ``triton.testing.do_bench`` (p20/p50/p80) when triton imports,
  else CUDA events; on the CPU ``time.perf_counter`` after one warm-up call (two
  when not ``quick``), the median of ``repeats`` calls (default: up to 10 within
  ~0.5 s, at least 3). ``quick`` is one timed call after one warm-up, for smoke
  tests. The first call's time (compilation, autotuning) is kept as ``first_ms``;
* memory (CUDA only): the peak allocated above the live inputs during one call,
  and that peak less the bytes of the call's own results (its output and, in
  ``fwd+bwd``, the inputs' gradients: :func:`_result_bytes`), the memory an
  implementation needs beyond what it must return — the "peak extra memory" of
  the DynOPool kernel targets (``docs/BENCHMARKS.md``);
* :func:`copy_bandwidth`: bytes/s of one large ``Tensor.copy_``, the denominator
  of ``frac_bw``.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .cases import Case

Quantiles = Tuple[float, float, float]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _quantiles(samples_ms: List[float]) -> Quantiles:
    """(p50, p20, p80) of the samples (linear interpolation)."""
    s = sorted(samples_ms)
    if len(s) == 1:
        return s[0], s[0], s[0]

    def q(p):
        pos = p * (len(s) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    return statistics.median(s), q(0.2), q(0.8)


def _time_host(
    fn: Callable, device: torch.device, repeats: Optional[int], budget_s: float = 0.5
) -> Tuple[Quantiles, int]:
    """perf_counter timing (synchronising CUDA around each call). Returns ((p50, p20, p80) ms, n).

    ``repeats`` None: up to 10 calls, stopping after ``budget_s`` once 3 are done.
    """
    samples: List[float] = []
    n_max = repeats if repeats else 10
    start = time.perf_counter()
    while len(samples) < n_max:
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - t0) * 1e3)
        if repeats is None and len(samples) >= 3 and time.perf_counter() - start > budget_s:
            break
    return _quantiles(samples), len(samples)


def _time_cuda_events(fn: Callable, repeats: int) -> Tuple[Quantiles, int]:
    samples = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        samples.append(a.elapsed_time(b))
    return _quantiles(samples), len(samples)


def _time(fn: Callable, device: torch.device, repeats: Optional[int], grad_to_none: Sequence[torch.Tensor]):
    """((p50, p20, p80) ms, number of samples or -1 for do_bench's own count)."""
    if device.type == "cuda":
        if repeats is None:
            try:
                from triton.testing import do_bench
            except Exception:  # noqa: BLE001 - no usable triton: CUDA events instead
                do_bench = None
            if do_bench is not None:
                p50, p20, p80 = do_bench(fn, quantiles=[0.5, 0.2, 0.8], grad_to_none=list(grad_to_none))
                return (p50, p20, p80), -1
            repeats = 100
        return _time_cuda_events(fn, repeats)
    return _time_host(fn, device, repeats)


def copy_bandwidth(device: torch.device, quick: bool = False) -> float:
    """Bytes/s of ``dst.copy_(src)`` (read + write) for a buffer far larger than the caches."""
    nbytes = (256 << 20) if device.type == "cuda" else (8 << 20 if quick else 64 << 20)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up, page faults
    (p50, _, _), _ = _time(lambda: dst.copy_(src), device, 1 if quick else (None if device.type == "cuda" else 5), ())
    return 2 * nbytes / (p50 * 1e-3)


def _result_bytes(result: Any, leaves: Sequence[torch.Tensor]) -> int:
    """Bytes of what one call leaves to its caller: the tensors it returns and the leaves' ``.grad``.

    Each storage counts once (an output and a view of it are one allocation).
    """
    seen: Dict[Tuple[str, int], int] = {}

    def add(t: Any) -> None:
        if isinstance(t, torch.Tensor):
            st = t.untyped_storage()
            seen[(str(t.device), st.data_ptr())] = st.nbytes()
        elif isinstance(t, (tuple, list)):
            for u in t:
                add(u)

    add(result)
    for t in leaves:
        add(t.grad)
    return sum(seen.values())


def _peak_mib(
    fn: Callable, device: torch.device, leaves: Sequence[torch.Tensor]
) -> Tuple[Optional[float], Optional[float]]:
    """Peak CUDA memory of one call above what was allocated before it, and that peak less the call's
    results (:func:`_result_bytes`: its outputs and gradients), in MiB; (None, None) off CUDA."""
    if device.type != "cuda":
        return None, None
    for t in leaves:
        t.grad = None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    result = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    kept = _result_bytes(result, leaves)
    del result
    for t in leaves:
        t.grad = None
    return peak / 2**20, max(peak - kept, 0) / 2**20


def _measure(case: Case, provider: str, mode: str, inputs: Dict[str, Any], device: torch.device, repeats, quick):
    """One (provider, mode) measurement: (quantiles, samples, first call ms, (peak, extra) MiB, fwd output)."""
    leaves = case.grad_leaves(inputs)
    if mode == "fwd":
        def fn():
            with torch.no_grad():
                return case.run(inputs, provider)
    else:
        grad_out = inputs["grad_out"]

        def fn():
            for t in leaves:
                t.grad = None
            out = case.run(inputs, provider)
            out.backward(grad_out)
            return out

    _sync(device)
    t0 = time.perf_counter()
    out = fn()  # warm-up: compiles the compiled provider, autotunes, faults pages in
    _sync(device)
    first_ms = (time.perf_counter() - t0) * 1e3
    if mode != "fwd":
        out = None  # only the forward's output is compared; this one would stay allocated while timing
    if not quick and device.type != "cuda":
        fn()  # a second warm-up: the first call after compiling still pays one-off costs
    q, n = _time(fn, device, 1 if quick else repeats, leaves)
    peak, extra = _peak_mib(fn, device, leaves)
    for t in leaves:
        t.grad = None
    return q, n, first_ms, (peak, extra), out
