"""Running the traced graph: feature-map sizes from fake tensors, receptive fields beside them.

:func:`run` executes the graph once on an input of the analysed size — on the
meta device when the model's parameters are there, else under
``FakeTensorMode`` (no real computation), else, when an op cannot run on fake
tensors (it reads values), for real on zeros. :class:`Analyzer`, a
``torch.fx.Interpreter``, keeps per node the receptive-field state of its output
(:class:`~.state.TensorRF`, or a tuple of them): the input starts the paths,
every call goes to the rules of ``rules.py`` through a :class:`~.context.Call`,
and the rows they record end up in the :class:`~.context.Context`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import torch
import torch.fx

from .context import Call, Context, fn_name
from .rules import function_rule, module_rule
from .state import AxisPaths, Tags, TensorRF, is_tensor, leaves
from .tracing import RFTraceError


class _OpFailed(Exception):
    """The model itself failed on the dummy input at ``node``."""

    def __init__(self, node: torch.fx.Node, error: BaseException) -> None:
        super().__init__(f"{node.format_node()}: {type(error).__name__}: {error}")
        self.node, self.error = node, error


class Analyzer(torch.fx.Interpreter):
    """Runs the traced graph on a fake/meta input and propagates receptive fields beside the values."""

    def __init__(self, gm: torch.fx.GraphModule, ignore_dilation: bool,
                 rules: Optional[Mapping[Any, Callable]]) -> None:  # fmt: skip
        super().__init__(gm, garbage_collect_values=False)
        self.ctx = Context(gm, ignore_dilation)
        self.user_rules = dict(rules or {})
        self.rf: Dict[torch.fx.Node, Any] = {}
        self._first_input = True

    def run_node(self, n: torch.fx.Node):
        try:
            value = super().run_node(n)
        except RFTraceError:
            raise
        except Exception as e:  # noqa: BLE001 - the model itself failed on the dummy input
            raise _OpFailed(n, e) from e
        if n.op == "placeholder":
            self.rf[n] = self._placeholder(n, value)
        elif n.op in ("call_module", "call_function", "call_method"):
            self.rf[n] = self._visit(n, value)
        else:
            self.rf[n] = None
        return value

    def _placeholder(self, n, value) -> Optional[TensorRF]:
        if not is_tensor(value):
            return None
        if not self._first_input:
            return None  # a second tensor input: analysed as a constant
        self._first_input = False
        if value.dim() < 2:
            raise RFTraceError(
                f"rf.analyze: the input must have spatial dims (…, H, W), got shape {tuple(value.shape)}"
            )
        tags: Tags = (None,) * (value.dim() - 2) + ("h", "w")
        rf = TensorRF(tags, AxisPaths.origin(), AxisPaths.origin())
        self.ctx.row(n, "input", "input", (1.0, 1.0), (1.0, 1.0), rf, value, [rf], name="input")
        return rf

    def _visit(self, n: torch.fx.Node, value):
        args = torch.fx.node.map_arg(n.args, lambda a: self.env[a])
        kwargs = torch.fx.node.map_arg(n.kwargs, lambda a: self.env[a])
        rargs = torch.fx.node.map_arg(n.args, lambda a: self.rf.get(a))
        rkwargs = torch.fx.node.map_arg(n.kwargs, lambda a: self.rf.get(a))
        operands = [(r, v) for r, v in zip(leaves((rargs, rkwargs)), leaves((args, kwargs))) if isinstance(r, TensorRF)]
        if n.op == "call_module":
            m = self.module.get_submodule(n.target)
            call = Call(n, type(m).__name__, args, kwargs, rargs, operands, value)
            return module_rule(self.ctx, call, m, self.user_rules)
        call = Call(n, fn_name(n), args, kwargs, rargs, operands, value)
        return function_rule(self.ctx, call, self.user_rules)


def run(gm: torch.fx.GraphModule, shape: Tuple[int, ...], device: torch.device, dtype: torch.dtype,
        ignore_dilation: bool, rules) -> Context:  # fmt: skip
    """Run ``gm`` on an input of ``shape``; the context holds the rows. RFTraceError when the model fails on it."""
    try:
        return _run(gm, shape, device, dtype, ignore_dilation, rules)
    except _OpFailed as e:
        where = e.node.target if e.node.op == "call_module" else e.node.name
        raise RFTraceError(
            f"rf.analyze: the model failed on a dummy input of shape {shape} at `{where}`: "
            f"{type(e.error).__name__}: {e.error} (is `input_size` / `in_channels` right for it?)"
        ) from e.error


def _run(gm, shape, device, dtype, ignore_dilation, rules) -> Context:
    if device.type == "meta":  # the parameters are meta tensors: so is the input
        a = Analyzer(gm, ignore_dilation, rules)
        with torch.no_grad():
            a.run(torch.empty(shape, device="meta", dtype=dtype))
        return a.ctx
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode
    except ImportError:  # pragma: no cover - very old torch
        FakeTensorMode = None
    if FakeTensorMode is not None:
        a = Analyzer(gm, ignore_dilation, rules)
        try:
            with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True) as mode:
                a.run(mode.from_tensor(torch.empty(shape, device=device, dtype=dtype)))
            return a.ctx
        except _OpFailed:
            pass  # an op without a fake kernel, or one that reads values: run the model for real
    a = Analyzer(gm, ignore_dilation, rules)
    with torch.no_grad():
        a.run(torch.zeros(shape, device=device, dtype=dtype))
    return a.ctx
