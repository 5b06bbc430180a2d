"""Benchmarks of the resizeops ops: ``python -m resizeops bench [options]``.

Every provider of an op (each available backend, the eager and the compiled
PyTorch reference, and, when named, the variants: a backend's other kernel
forms) runs the same named case side by side, in two modes: ``fwd``
(inference) and ``fwd+bwd``. Per measurement: the time (p20/p50/p80), its
ratio to the eager reference, the fraction of the copy bandwidth at the ideal
bytes, on CUDA the peak and the extra memory, and the forward's largest error
against the eager reference.
Results are appended to ``<out>/bench-<device>.csv`` and plotted to
``<out>/bench-<device>.png``; ``benchmarks/`` runs the same cases under
pytest-benchmark.

The package:

================  ============================================================
``cases.py``      the named cases (:class:`Case`, :data:`CASES`,
                  :func:`cases_for`) and the modes: start here to add a case
``providers.py``  who runs a case (:func:`providers_for`), among them the
                  variants of the backend registry (:data:`VARIANTS`)
``measure.py``    timing, peak and extra memory, copy bandwidth
``results.py``    the table, the CSV and the plot; what each column means
``cli.py``        ``python -m resizeops bench`` (:func:`main`)
``deploy.py``     deployment cases: a frozen model in PyTorch, as an ATen
                  program and in ONNX Runtime (:data:`DEPLOY_CASES`)
``training.py``   ``python -m resizeops bench-train``: training a converted
                  model eager and under ``torch.compile``
================  ============================================================
"""

from .cases import CASES, MODES, OPS, TIERS, Case, cases_for
from .cli import _parse_dtypes, build_parser, main
from .deploy import DEPLOY_CASES, DEPLOY_EAGER, DEPLOY_PROVIDERS, DeployCase
from .measure import _measure, _peak_mib, _quantiles, _result_bytes, copy_bandwidth
from .providers import (
    COMPILED,
    EAGER,
    NCHW_ONLY,
    POOL_THEN_BLEND,
    VARIANTS,
    compiled_reference,
    providers_for,
    reset_compiled,
)
from .results import CSV_FIELDS, format_table, write_csv, write_plot

__all__ = [
    "Case",
    "CASES",
    "MODES",
    "EAGER",
    "COMPILED",
    "POOL_THEN_BLEND",
    "DeployCase",
    "DEPLOY_CASES",
    "DEPLOY_PROVIDERS",
    "cases_for",
    "providers_for",
    "compiled_reference",
    "main",
]
