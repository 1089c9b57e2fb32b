"""What counts as elementwise: the Python operators, torch functions and numpy ufunc calls.

Which torch functions count as elementwise comes from torch itself, as torch.nested's jagged
layout and DTensor decide it: a function is elementwise when the ATen operator of its name has
an overload tagged ``torch.Tag.pointwise`` that returns tensors and no overload tagged
``torch.Tag.reduction`` (so ``torch.max(x)`` stays a reduction). Added to those: the Python
operators below, and a few functions torch leaves untagged though they act item by item
(``_TORCH_UNTAGGED``: random ones such as dropout, and compositions such as hardswish). The
verdict is cached per function, so dispatch is one dictionary lookup. numpy ufuncs without a
core signature are elementwise by definition; their methods (``reduce``, ``accumulate``, ...)
and the generalized ufuncs (``matmul``) are not.

What the backends say when an elementwise call fails for the dtype or the numbers (an
operation the dtype lacks, a division by zero, an overflowing int) is translated here into
the package's ``TypeError`` and ``ValueError`` (``backend_refusal``), and Python ints that
torch would wrap are caught before it sees them (``torch_scalar``).
"""

from __future__ import annotations

import functools
import inspect
import operator
from typing import Any

import numpy as np

from . import _backend, _checks

# Operators as (dunder stem, function); their Tensor dunders dispatch here too.
BINARY = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
    "and": operator.and_,
    "or": operator.or_,
    "xor": operator.xor,
}
COMPARE = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
UNARY = {"neg": operator.neg, "pos": operator.pos, "abs": operator.abs, "invert": operator.invert}

# The ufunc a numpy scalar's operator calls -> the ragged array's reflected operator
# (``np.float64(2) < x`` is ``np.less(2.0, x)``, answered by ``x.__gt__(2.0)``).
REFLECTED_UFUNCS = {
    np.add: "__radd__",
    np.subtract: "__rsub__",
    np.multiply: "__rmul__",
    np.true_divide: "__rtruediv__",
    np.floor_divide: "__rfloordiv__",
    np.remainder: "__rmod__",
    np.power: "__rpow__",
    np.bitwise_and: "__rand__",
    np.bitwise_or: "__ror__",
    np.bitwise_xor: "__rxor__",
    np.equal: "__eq__",
    np.not_equal: "__ne__",
    np.less: "__gt__",
    np.less_equal: "__ge__",
    np.greater: "__lt__",
    np.greater_equal: "__le__",
}
COMPARE_NAMES = frozenset(f"__{stem}__" for stem in COMPARE)

# Elementwise torch functions without the pointwise tag (random, composed in Python, aliases).
_TORCH_UNTAGGED = (
    "special.expit",
    "dropout",
    "alpha_dropout",
    "bernoulli",
    "floor_divide",
    "nn.functional.dropout",
    "nn.functional.alpha_dropout",
    "nn.functional.hardswish",
    "nn.functional.leaky_relu",  # tagged pointwise only from torch 2.7
    "nn.functional.logsigmoid",
    "nn.functional.softsign",
    "nn.functional.tanhshrink",
    "Tensor.floor_divide",
    "special.ndtr",  # compositions of tagged ops
    "isclose",
    "isreal",
)

# torch function -> whether it is elementwise; filled on first use of each function.
torch_verdicts: dict[Any, bool] = {}


# ----------------------------------------------------------------------- torch functions


def torch_elementwise(func: Any) -> bool:
    """Whether torch function ``func`` is elementwise (cached; see the module docstring)."""
    verdict = torch_verdicts.get(func)
    if verdict is None:
        verdict = torch_verdicts[func] = _classify(func)
    return verdict


def _classify(func: Any) -> bool:
    torch = _backend.torch_module()
    if func in _torch_extras(torch):
        return True
    name = getattr(func, "__name__", "")
    if name.startswith("__") or name.endswith("_"):  # other dunders; in-place variants
        return False
    name = name.lstrip("_")
    if _pointwise_op(name, torch):
        return True
    # Aliases (torch.subtract, torch.special.erf) carry no tags: their canonical op does.
    canonical = _ALIASES.get(name, name.removeprefix("special_"))
    return canonical != name and _pointwise_op(canonical, torch)


def _pointwise_op(name: str, torch: Any) -> bool:
    """Whether ATen's ``name`` is tagged pointwise, returns tensors and does not reduce."""
    packet: Any = getattr(torch.ops.aten, name, None)
    if not hasattr(packet, "overloads"):
        return False
    overloads = [getattr(packet, o) for o in packet.overloads()]
    pointwise = any(torch.Tag.pointwise in o.tags and _returns_tensors(o) for o in overloads)
    return pointwise and not any(_reduces(o, torch) for o in overloads)


# torch's aliases whose canonical ATen op has another name (``special_x`` -> ``x`` besides)
_ALIASES = {
    "absolute": "abs",
    "negative": "neg",
    "subtract": "sub",
    "multiply": "mul",
    "divide": "div",
    "arccos": "acos",
    "arccosh": "acosh",
    "arcsin": "asin",
    "arcsinh": "asinh",
    "arctan": "atan",
    "arctanh": "atanh",
    "arctan2": "atan2",
    "greater": "gt",
    "greater_equal": "ge",
    "less": "lt",
    "less_equal": "le",
    "not_equal": "ne",
    "fix": "trunc",
    "special_psi": "digamma",
    "special_gammaln": "lgamma",
    "special_gammainc": "igamma",
    "special_gammaincc": "igammac",
    "special_multigammaln": "mvlgamma",
}


# What torch.compiler.assume_constant_result(_classify) does, without importing torch: a
# graph asks for a verdict not cached yet (the first torch.mul of a process, say) and takes
# it as a constant, where tracing the ATen lookups broke the graph.
_classify._dynamo_marked_constant = True  # type: ignore[attr-defined]


def _reduces(overload: Any, torch: Any) -> bool:
    """Whether an ATen overload reduces: its ``reduction`` tag (torch >= 2.7).

    Before that tag existed: a ``dim`` argument (``max.dim``, ``sum.dim_IntList``).
    """
    tag = getattr(torch.Tag, "reduction", None)
    if tag is not None:
        return tag in overload.tags
    return any(arg.name == "dim" for arg in overload._schema.arguments)


def _returns_tensors(overload: Any) -> bool:
    returns = overload._schema.returns
    return bool(returns) and all(
        isinstance(r.type, _backend.torch_module().TensorType) for r in returns
    )


@functools.cache
def _torch_extras(torch: Any) -> frozenset[Any]:
    """The operators' Tensor dunders and the untagged elementwise functions."""
    names = [f"__{s}__" for s in (*BINARY, *COMPARE, *UNARY)]
    names += [f"__r{s}__" for s in BINARY]
    extras = {getattr(torch.Tensor, n) for n in names if hasattr(torch.Tensor, n)}
    for path in _TORCH_UNTAGGED:
        owner = torch
        for part in path.split("."):
            owner = getattr(owner, part)
        extras.add(owner)
    return frozenset(extras)


def torch_comparison(func: Any) -> str | None:
    """The ``COMPARE`` stem of a torch comparison (``torch.gt``, ``Tensor.__lt__``, ``torch.less``).

    None for every other function.
    """
    if not _comparisons:
        torch = _backend.torch_module()
        names = {stem: [stem, f"__{stem}__"] for stem in COMPARE}
        for alias, stem in _ALIASES.items():
            if stem in COMPARE:
                names[stem].append(alias)
        for stem, aliases in names.items():
            for owner in (torch, torch.Tensor):
                for name in aliases:
                    if hasattr(owner, name):
                        _comparisons[getattr(owner, name)] = stem
    return _comparisons.get(func)


_comparisons: dict[Any, str] = {}

# A constant to a graph, as the verdicts of _classify are.
torch_comparison._dynamo_marked_constant = True  # type: ignore[attr-defined]


def writes_in_place(func: Any, args: Any, kwargs: dict[str, Any]) -> bool:
    """Whether a call asks ``func`` to write into its input: ``F.relu(x, inplace=True)``.

    ``torch.nn.functional`` passes ``inplace`` on by keyword (``nn.ReLU(inplace=True)``,
    ``F.dropout``); a positional one is found from the function's signature, read once.
    """
    if "inplace" in kwargs:
        return bool(kwargs["inplace"])
    slot = _inplace_slots.get(func)
    if slot is None:
        slot = _inplace_slots[func] = _inplace_slot(func)
    return 0 <= slot < len(args) and bool(args[slot])


# torch function -> the position of its ``inplace`` parameter, -1 when it has none.
_inplace_slots: dict[Any, int] = {}


def _inplace_slot(func: Any) -> int:
    try:
        names = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):  # a builtin without a signature: no inplace parameter
        return -1
    return names.index("inplace") if "inplace" in names else -1


# A constant to a graph, as _classify's verdicts are (torch 2.6's dynamo failed inside
# inspect.signature of a builtin, ending the compile with an internal error).
_inplace_slot._dynamo_marked_constant = True  # type: ignore[attr-defined]


class TorchWhere:
    """The name of a torch function for messages, formatted only when one is raised."""

    __slots__ = ("func",)

    def __init__(self, func: Any) -> None:
        self.func = func

    def __str__(self) -> str:
        return torch_name(self.func)


def torch_name(func: Any) -> str:
    """``torch.exp``, ``torch.nn.functional.gelu``, ``torch.Tensor.add`` for messages."""
    name = getattr(func, "__name__", repr(func))
    qualname = getattr(func, "__qualname__", name)
    if qualname.startswith(("TensorBase.", "Tensor.")):
        return f"torch.Tensor.{name}"
    module = getattr(func, "__module__", None) or "torch"
    return f"{'torch' if module.startswith('torch._') else module}.{name}"


# A graph reads a name only to check a dtype it has not seen (dynamo cannot trace the
# attribute reads): a constant, as the verdicts of _classify are.
torch_name._dynamo_marked_constant = True  # type: ignore[attr-defined]


# -------------------------------------------------------------------------- numpy ufuncs


def refuse_ufunc_outputs(where: str, kwargs: dict[str, Any]) -> None:
    """Refuse ``out=`` and ``where=``: results are new ragged arrays, fully written."""
    if "out" in kwargs:
        out = kwargs["out"]  # numpy passes out= as a tuple, one per output
        seen = ", ".join(_backend.describe(o) for o in out) if type(out) is tuple else out
        raise TypeError(
            f"{where}: out= is not supported with ragged arrays (results are new ragged "
            f"arrays); got out={seen}"
        )
    if "where" in kwargs:
        raise TypeError(
            f"{where}: where= is not supported with ragged arrays (without out= it leaves "
            "uninitialised memory in the result; select with np.where(cond, x, y), which "
            "takes ragged arrays, instead); "
            f"got where={type(kwargs['where']).__name__}"
        )


def numpy_scalar_on_the_left(x: Any, ufunc: Any, inputs: tuple[Any, ...]) -> Any:
    """``np.float64(2) * x`` for a torch-backed ``x``: its reflected operator, or NotImplemented.

    numpy answers a scalar's operator with a ufunc call, which would refuse the torch
    values; a plain tensor gets the reflected operator there, and so does a ragged array.
    For comparisons numpy passes the scalar as a 0-d array, which is read back as the
    scalar (so ``np.array(2.0) < x`` is accepted too: the two calls cannot be told apart).
    """
    name = REFLECTED_UFUNCS.get(ufunc)
    if name is None or len(inputs) != 2 or inputs[1] is not x:
        return NotImplemented
    scalar = inputs[0]
    if type(scalar) is np.ndarray and scalar.ndim == 0 and name in COMPARE_NAMES:
        scalar = scalar[()]
    if not isinstance(scalar, np.generic):
        return NotImplemented
    return getattr(x, name)(scalar)


# ------------------------------------------------------------ the backend's refusals


# What a backend raises for an operation its dtype lacks (torch: NotImplementedError or
# RuntimeError, numpy: TypeError) or a result that overflows (numpy: OverflowError).
BACKEND_ERRORS = (RuntimeError, ValueError, TypeError, NotImplementedError, OverflowError)


def backend_refusal(
    err: Exception, ref: Any, where: object, operands: Any = ()
) -> Exception | None:
    """The backend's error about the dtype or the numbers, in this package's form; else None.

    The dtypes named are those of ``ref`` and the other ragged ``operands`` (``torch.where``'s
    condition is bool, its choices are not). None for errors that are about something else
    (the caller re-raises them as they are).
    """
    text = str(err).strip().split("\n")[0]
    names = [_checks.dtype_name(ref.dtype)]
    for a in operands:
        name = _checks.dtype_name(a.dtype) if a is not ref and hasattr(a, "_host") else None
        if name is not None and name not in names:
            names.append(name)
    dtype = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    if isinstance(err, OverflowError) or "ZeroDivisionError" in text:
        return ValueError(
            f"{where}: the operands must give numbers {dtype} values can hold; got "
            f"{type(err).__name__} from {ref.backend}: {text}"
        )
    unsupported = "not implemented" in text or "not supported" in text
    if unsupported or isinstance(err, NotImplementedError) or _no_loop(err):
        return TypeError(
            f"{where}: the operation must be defined for {dtype} values; got "
            f"{type(err).__name__} from {ref.backend}: {text}"
        )
    if isinstance(err, TypeError):  # an argument torch or numpy does not take
        return TypeError(
            f"{where}: the arguments must be ones {ref.backend} takes; got "
            f"{type(err).__name__} from {ref.backend}: {text}"
        )
    if isinstance(err, (RuntimeError, ValueError)):  # integers to negative powers, say
        return ValueError(
            f"{where}: the operands must be ones {ref.backend} computes this operation on for "
            f"{dtype} values; got {type(err).__name__} from {ref.backend}: {text}"
        )
    return None


def _no_loop(err: Exception) -> bool:
    """Whether numpy said its ufunc has no loop for these dtypes (a ``UFuncTypeError``)."""
    return any(kind.__name__ == "UFuncTypeError" for kind in type(err).__mro__)


def compare_beyond(op: Any, values: Any, other: int) -> Any:
    """``op(values, other)`` for an int ``other`` beyond the range of integer ``values``; else None.

    torch wraps such an int to the values' dtype (``x < 300`` on uint8 compared with 44,
    ``x == 65537`` on uint16 with 1, ``x == -1`` on uint64 with its maximum), where numpy
    answers exactly. Beyond the range every item compares the same way, so the answer is a
    constant; an empty comparison runs first, so a dtype torch cannot compare is refused
    as it is for numbers in range.
    """
    bounds = int_bounds(values.dtype)
    if bounds is None or bounds[0] <= other <= bounds[1]:
        return None
    op(values[:0], 0)  # (torch's refusal for uint16 < 5 also for uint16 < 70000)
    above = other > bounds[1]
    truth = {
        operator.eq: False,
        operator.ne: True,
        operator.lt: above,
        operator.le: above,
        operator.gt: not above,
        operator.ge: not above,
    }[op]
    torch = _backend.torch_module()
    return torch.full(values.shape, truth, dtype=torch.bool, device=values.device)


def int_bounds(dtype: Any) -> tuple[int, int] | None:
    """(min, max) of a torch integer or bool dtype; None for the others."""
    try:
        return _bounds[dtype]
    except KeyError:
        pass
    torch = _backend.torch_module()
    bounds: tuple[int, int] | None = None
    if dtype is torch.bool:
        bounds = (0, 1)
    elif not (dtype.is_floating_point or dtype.is_complex):
        info = torch.iinfo(dtype)
        bounds = (int(info.min), int(info.max))
    _bounds[dtype] = bounds
    return bounds


_bounds: dict[Any, tuple[int, int] | None] = {}


# A constant to a graph (dynamo guards on the dtype), as the verdicts of _classify are.
int_bounds._dynamo_marked_constant = True  # type: ignore[attr-defined]


def torch_number(other: Any, values: Any, where: object, *, compare: bool = False) -> Any:
    """A number operand of torch ``values`` as the Python number torch reads correctly.

    torch reads numpy scalars by their Python value, but not always right: an ``np.bool_``
    as a float (an int64 sum rounded, ``mask & np.True_`` refused), an ``np.complex64`` as
    its real part, an ``np.longdouble`` past float64 as inf. So numpy's numbers become
    Python ones (a bool, an int, a float or a complex), as do int subclasses (an
    ``IntEnum``), and ``longdouble``/``clongdouble``, which torch has no dtype for, are
    refused. Ints are range-checked by ``torch_scalar``, except for a comparison
    (``compare``), whose ints in int64 are answered exactly by ``compare_beyond``.
    """
    if isinstance(other, (bool, np.bool_)):
        return bool(other)
    if isinstance(other, np.timedelta64):  # (a numpy int subclass)
        raise not_a_number(where, other)
    if isinstance(other, (int, np.integer)):
        other = int(other)
        if compare and _checks.INT64_MIN <= other <= _checks.INT64_MAX:
            return other
        return torch_scalar(other, values, where)
    if isinstance(other, np.inexact):
        if other.dtype.itemsize > (8 if isinstance(other, np.floating) else 16):
            raise TypeError(
                f"{where}: torch has no dtype for numpy {other.dtype} operands; got "
                f"{type(other).__name__} {other!r:.40} (convert it with float(v) or "
                "complex(v), or use numpy-backed values)"
            )
        return complex(other) if isinstance(other, np.complexfloating) else float(other)
    return other


def not_a_number(where: object, other: Any) -> TypeError:
    """The refusal of a number operand no backend reads as a number (Fraction, timedelta)."""
    return TypeError(
        f"{where}: number operands must be Python or numpy ints, floats or bools; "
        f"got {type(other).__name__} {other!r:.40} (convert it, e.g. float(v))"
    )


def torch_scalar(other: int, values: Any, where: object) -> Any:
    """A Python int for torch values: torch wraps one beyond int64 silently.

    (``x < 2**63`` is all False on int64 values.) Such an int is a float against floating
    values and refused against integers.
    """
    if not _checks.INT64_MIN <= other <= _checks.INT64_MAX:
        if values.dtype.is_floating_point:
            return float(other)
        raise ValueError(
            f"{where}: an integer operand must fit in int64 for "
            f"{_checks.dtype_name(values.dtype)} values; got {other}"
        )
    return other
