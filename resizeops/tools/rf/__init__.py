"""Receptive-field analysis of a model (the receptive-field refinement paper, §3).

``resizeops.rf.analyze(model, input_size=(224, 224))`` traces ``model`` with
``torch.fx`` (no TorchScript, no system binaries), propagates per node and per
spatial axis the set of receptive fields over all paths from the input, and
returns an :class:`RFReport`: per layer its kernel, stride, r_min, r_max, the
cumulative stride and the feature-map size at ``input_size``; the minimal and
maximal feasible input resolution; the unproductive layers at a resolution; a
table and a plot. ``python -m resizeops rf MODEL`` prints them. What is computed
is defined in ``docs/SEMANTICS.md``, "Receptive fields"; the design choices are
in ``docs/DESIGN.md``, "Receptive-field analysis".

Feature-map sizes come from running the traced graph on a fake (or meta) input
of ``input_size``: no real computation, so the whole zoo of torchvision
classifiers is analysed in about a second each on the CPU.

The package, in the order a call runs through it:

=================  ===========================================================
``analysis.py``    :func:`analyze`: the entry point; start here
``tracing.py``     the model → a ``torch.fx`` graph (resizers as leaves,
                   ELASTIC blocks traced through); :class:`RFTraceError`
``interpreter.py`` runs the graph on a fake input, one rule per node
``context.py``     what a rule works with: the call, kernels applied to a
                   state, the rows it records
``rules.py``       the per-op rules: kernel and stride of each layer
``layout.py``      ops that move, merge or drop spatial dims (reshape,
                   permute, index, reduce, pointwise joins)
``state.py``       the per-tensor state: paths {m: (r_min, r_max)} per axis,
                   which dims are H and W (the recurrence)
``report.py``      :class:`RFLayer`, :class:`RFReport` and the derived numbers
``render.py``      the report's table, summary and plot
``cli.py``         :func:`load_model`, :func:`main` (``python -m resizeops rf``)
=================  ===========================================================

To teach the analysis a new layer, add a rule to ``rules.py``
(``MODULE_RULES`` for a module class, ``FUNCTION_RULES`` for a function).
"""

from .analysis import analyze
from .cli import load_model, main
from .report import LAYER_KINDS, UNPRODUCTIVE_RULES, RFLayer, RFReport
from .state import AxisPaths as _Axis  # rf._Axis: the per-axis path set, for tests of the recurrence
from .tracing import RFTraceError

__all__ = ["analyze", "RFReport", "RFLayer", "RFTraceError", "load_model", "main"]
