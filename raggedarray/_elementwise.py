"""Elementwise math on ragged arrays: operators, torch functions, numpy ufuncs, dtype shortcuts.

An elementwise operation never looks at the segments: it is one call of the values' own
backend on the flat ``values`` buffer (numpy's dtype rules for numpy values, torch's for
torch values, autograd included), and the result keeps the offsets. Beside the ragged
array an operation may take:

- Python and numpy scalars (numbers and booleans), 0-d arrays;
- arrays of the values' backend with at most ``len(item_shape)`` dimensions that broadcast
  to the item shape without changing it (``(3,)`` or ``(1,)`` against items ``(3,)``, not
  ``(4,)``; ``(3,)`` against items ``(1,)`` is refused too: an operand never grows the items);
- ragged arrays of the same backend with equal offsets (compared on their host copies, so
  a GPU is never synchronised) whose item shapes broadcast together by numpy's rule (items
  with fewer dimensions are aligned to the right, ``(1,)`` against ``(3,)`` repeats); their
  common item shape is the result's, and the non-ragged operands must fit it as above;
- for numpy-backed arrays, lists and tuples, read with ``np.asarray`` and then checked as
  arrays (numpy's own rule for array-likes); torch, which takes no lists in its operators,
  refuses them for torch-backed arrays (``TypeError``: use ``torch.as_tensor``).

Strings and bytes are not numbers: they are refused with ``TypeError`` on both backends
(also for ``==``, which numpy and torch would answer with ``False``). An operand that does
not fit the items, or one on another device, is a ``ValueError`` that names both shapes or
devices, raised before the backend runs. A numpy scalar on the left of a torch-backed array
(``np.float64(2) * x``, which numpy turns into a ufunc call) gives the reflected operator,
``x.__rmul__(np.float64(2))``, as it does for a plain tensor.

The result must be of a dtype ragged arrays hold (``_checks.check_dtype``: real numbers and
booleans): a complex, object, date or ``longdouble`` result (``x + 1j``,
``np.add(x, 1, dtype=object)``) is a ``TypeError``. The dtypes already seen to pass are
kept in a set, so the check is one lookup per operation. numpy's ``out=`` and ``where=``
are refused (results are new ragged arrays; ``where=`` without ``out=`` would leave
uninitialised memory in them).

A ``(m, ...)`` per-segment array is never broadcast implicitly (``x.broadcast(per_segment)``
says so explicitly), and numpy and torch are never mixed: an array of the other backend is
a ``TypeError`` (convert with ``x.torch()`` or ``x.numpy()``).

Which functions count as elementwise is decided in ``_pointwise``.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import numpy as np

from . import _backend, _checks
from ._pointwise import (
    BACKEND_ERRORS,
    BINARY,
    COMPARE,
    TorchWhere,
    backend_refusal,
    compare_beyond,
    int_bounds,
    not_a_number,
    numpy_scalar_on_the_left,
    refuse_ufunc_outputs,
    torch_comparison,
    torch_elementwise,
    torch_name,
    torch_number,
    torch_verdicts,
    writes_in_place,
)
from ._types import DTypeLike, RaggedFields, ValuesT

if TYPE_CHECKING:
    from typing_extensions import Self


E = TypeVar("E", bound="ElementwiseMethods")

# Python scalars (bool is an int) and numpy numbers go straight to the backend; numpy's
# other scalars (strings, dates, objects) take the checked path.
_SCALARS = (int, float, complex, np.number, np.bool_)

# Python ints within these bounds need no look on the torch fast path; larger ones are
# checked by ``torch_number``.
_SMALL_INT, _BIG_INT = -(2**62), 2**62

# Operands that are not arrays yet: read as arrays (numpy), or refused (strings; torch).
_SEQUENCES = (list, tuple, str, bytes)

# Result types and dtypes already checked (``_hold``): the fast paths look them up.
# (identity tests, not a set of types: torch 2.6's dynamo cannot trace that lookup)
_TENSOR: type | None = None  # torch.Tensor, once a result of that type has been held
_HELD_DTYPES: set[Any] = set()

# The augmented assignments' dunders (``__iadd__``, ...): torch dispatches some of them
# under their own name, others as the in-place method (``add_``).
_AUGMENTED = frozenset(f"__i{stem}__" for stem in (*BINARY, "lshift", "rshift", "matmul"))

_HINT = (
    "for other work use x.map(fn) on the flat values, the segment reductions "
    "(x.sum(), x.mean(), x.max(), ...), or x.values"
)

_WRONG_BACKEND = {
    _backend.TORCH: (
        "{where}: torch functions take torch-backed ragged arrays; got a numpy-backed one "
        "(convert with x.torch(), or use a numpy ufunc)"
    ),
    _backend.NUMPY: (
        "{where}: numpy ufuncs take numpy-backed ragged arrays; got a torch-backed one (use "
        "the torch function, e.g. torch.exp(x), or x.numpy())"
    ),
}

# ----------------------------------------------------------------------------- the core


def _no_implicit_conversion(x: Any, kind: str) -> str:
    return (
        f"{type(x).__name__}: a ragged array does not convert to {kind} implicitly; take "
        "x.values (the flat buffer), x.to_padded() (padded, with a mask) or list(x) (the "
        "segments)"
    )


def _is_ragged(a: Any) -> bool:
    return isinstance(a, ElementwiseMethods)


def elementwise(
    fn: Callable[..., Any],
    args: Any,
    kwargs: dict[str, Any],
    where: object,
    *,
    several: bool = False,
    backend: str | None = None,
) -> Any:
    """``fn(*args, **kwargs)`` with ragged arguments replaced by their values; a ragged result.

    The first ragged argument sets the backend, offsets and class of the result. A tuple of
    results (``several``: a ufunc with several outputs; a torch structseq such as frexp's)
    gives a tuple of ragged arrays. ``backend`` (torch functions, numpy ufuncs) is the one
    the first ragged argument must have; other arguments must then share it. This runs on
    every operation, so the common cases (arrays of the values' own type, scalars) are
    decided by a type check or two.
    """
    ref, depth, operands = None, -1, None
    everything = (*args, *kwargs.values()) if kwargs else args
    for a in everything:
        if isinstance(a, ElementwiseMethods):
            if ref is None:
                if backend is not None and a.backend != backend:
                    raise TypeError(_WRONG_BACKEND[backend].format(where=where))
                ref = a
            elif a is not ref:
                _check_partner(a, ref, where)
                operands = everything  # item shapes to broadcast, when they are needed
            depth = max(depth, a._values.ndim - 1)
    if ref is None:  # only called with a ragged operand among the arguments
        raise TypeError(f"{where}: needs a ragged operand")
    array = type(ref._values)
    args = [_operand(a, ref, array, depth, operands, where) for a in args]
    if kwargs:
        kwargs = {k: _operand(a, ref, array, depth, operands, where) for k, a in kwargs.items()}
    if _compares(fn) and _backend.compiling() and any(map(_traced, everything)):
        args = _exactly(args)  # (np.int64(256) traced: as eagerly, compared exactly)
    try:
        out = fn(*args, **kwargs)
    except BACKEND_ERRORS as err:  # name the shapes or devices that do not fit, or the dtype
        problem: Exception | None = None
        if isinstance(err, (RuntimeError, ValueError)):
            problem = _diagnose(ref, everything, (*args, *kwargs.values()), where)
        problem = problem or backend_refusal(err, ref, where, everything)
        if problem is not None:
            raise problem from None
        raise
    if several or (isinstance(out, tuple) and type(out) is not tuple):  # torch.return_types
        return type(out)([_result(ref, o, where) for o in out])
    return _result(ref, out, where)


def _operand(a: Any, ref: Any, array: type, depth: int, operands: Any, where: object) -> Any:
    """What the backend sees for argument ``a``: values for ragged, arrays checked, rest as is.

    ``operands`` holds all arguments when there are several ragged ones (None otherwise):
    the items an array operand must fit are then their broadcast.
    """
    if type(a) is not array:
        if isinstance(a, ElementwiseMethods):
            return _partner_values(a, depth)
        backend = _backend.backend_of(a)
        if backend is None:
            if isinstance(a, _SCALARS) and ref.backend == _backend.TORCH and not _as_is(a):
                return torch_number(a, ref._values, where)
            return a  # scalars, None, dtypes, strings: the backend's business
        if backend != ref.backend:
            if _backend.compiling() and a.ndim == 0:  # (a numpy number, traced)
                return _traced_number(a, ref._values)
            raise TypeError(
                f"{where}: operands must be {ref.backend} arrays like the ragged values; got "
                f"{_backend.describe(a)} (convert the ragged array with x.{backend}() or the "
                f"operand to {ref.backend})"
            )
    if isinstance(a, np.ndarray):
        if a.dtype.kind == "O":  # refused before numpy runs Python
            raise TypeError(
                f"{where}: array operands must hold real numbers or booleans; got "
                f"{_backend.describe(a)}"
            )
        if type(a) is not np.ndarray:  # a mask to lose, or matrix products and 2-D results
            _checks.plain_ndarray(a, str(where), "an array operand")
    elif a.is_nested or a.layout is not _backend.torch_module().strided:
        _checks.dense_tensor(a, str(where), "a tensor operand")  # (meta: the device check's)
    ndim = a.ndim
    if ndim > depth:
        raise ValueError(
            f"{where}: an array operand broadcasts against every item, so it may have at most "
            f"{depth} dims (item_shape {ref.item_shape}); got {_backend.describe(a)}. A "
            "per-segment (m, ...) operand is never broadcast implicitly: use "
            "x.broadcast(per_segment)"
        )
    if ndim:
        items = ref._values.shape[1:] if operands is None else _ragged_items(operands, where)
        shape = a.shape
        if shape != items[-ndim:] and not _fits(shape, items):
            raise ValueError(
                f"{where}: operands must broadcast against the items of shape "
                f"{tuple(items)}; got an operand of shape {tuple(shape)}"
            )
    return a


def _traced_number(a: Any, values: Any) -> Any:
    """A numpy number inside a compiled function, as the eager call reads it.

    dynamo traces ``np.float32(2)`` as a 0-d array; it is read in the graph as a 0-d
    tensor. torch's promotion treats that as it treats a Python number, except that a float
    one keeps its dtype against integer values, where a Python float gives the default
    dtype: it is cast to that.
    """
    torch = _backend.torch_module()
    number = torch.as_tensor(a, device=values.device)
    if number.dtype.is_floating_point and not values.dtype.is_floating_point:
        number = number.to(torch.get_default_dtype())
    return number


def _traced(a: Any) -> bool:
    """Whether ``a`` is what dynamo makes of a numpy number: a 0-d array (see ``_operand``)."""
    return isinstance(a, np.ndarray) and a.ndim == 0


def _compares(fn: Any) -> bool:
    """Whether ``fn`` is a comparison: an operator (``operator.lt``) or a torch one."""
    return fn in _COMPARISONS or torch_comparison(fn) is not None


_COMPARISONS = frozenset(COMPARE.values())

# A constant to a graph, as the verdicts of _classify are (torch 2.6's dynamo cannot look a
# function up in a frozenset).
_compares._dynamo_marked_constant = True  # type: ignore[attr-defined]


def _exactly(args: list[Any]) -> list[Any]:
    """Integer operands of a comparison widened to int64, where none of them wraps.

    A numpy int traced by dynamo reaches the graph as a 0-d int64 tensor, which torch casts
    to the values' dtype (``x == np.int64(256)`` on uint8 compares with 0). Eagerly it is
    read as a Python int, compared exactly; in int64 it is compared exactly too, as a
    narrower integer (or bool) is. (Not uint64 values: beyond int64 they would wrap.)
    """
    tensors = [a for a in args if _backend.is_tensor(a)]
    if not all(_within_int64(int_bounds(a.dtype)) for a in tensors):
        return args  # (floats read the number as a float, as eagerly)
    return [a.long() if _backend.is_tensor(a) else a for a in args]


def _within_int64(bounds: tuple[int, int] | None) -> bool:
    """Whether an integer (or bool) dtype of these bounds widens to int64 exactly."""
    return bounds is not None and bounds[1] <= _checks.INT64_MAX


def _as_is(number: object) -> bool:
    """Whether torch reads ``number`` right: a float, an int well inside int64.

    Other numbers go through ``torch_number`` on their way to torch values.
    """
    kind = type(number)
    return kind is float or (kind is int and _SMALL_INT <= number <= _BIG_INT)  # type: ignore[operator]


def _fits(shape: Any, items: Any) -> bool:
    """Whether an operand of ``shape`` broadcasts to ``items`` without changing them."""
    return all(s == 1 or s == t for s, t in zip(shape, items[-len(shape) :], strict=True))


def _ragged_items(operands: Any, where: object) -> tuple[int, ...]:
    """The broadcast of the ragged operands' item shapes (numpy's rule, aligned right)."""
    items: tuple[int, ...] | None = None
    for a in operands:
        if isinstance(a, ElementwiseMethods):
            theirs = tuple(a._values.shape[1:])
            items = theirs if items is None else _common_items(items, theirs, where)
    return () if items is None else items


def _common_items(mine: tuple[int, ...], theirs: tuple[int, ...], where: object) -> Any:
    if mine == theirs:
        return mine
    n = max(len(mine), len(theirs))
    a, b = (1,) * (n - len(mine)) + mine, (1,) * (n - len(theirs)) + theirs
    if not all(p == q or 1 in (p, q) for p, q in zip(a, b, strict=True)):
        raise ValueError(
            f"{where}: ragged operands must have items that broadcast together; got item "
            f"shapes {mine} and {theirs}"
        )
    return tuple(max(p, q) if 1 in (p, q) else p for p, q in zip(a, b, strict=True))


def _diagnose(ref: Any, operands: Any, seen: Any, where: object) -> ValueError | None:
    """After the backend failed: the error naming ragged items or a device that do not fit.

    ``operands`` are the arguments as given, ``seen`` as the backend saw them. None when
    neither is the cause (the caller then re-raises the backend's error). A 0-d CPU tensor
    is allowed beside any device, as torch allows it.
    """
    try:
        _ragged_items(operands, where)
    except ValueError as err:
        return err
    if not _backend.is_tensor(ref._values):
        return None
    device = ref._values.device
    for a in seen:
        if not _backend.is_tensor(a) or a.device == device:
            continue
        if a.ndim == 0 and a.device.type == "cpu":
            continue
        return ValueError(
            f"{where}: operands must be on the device of the ragged values ({device}); got "
            f"{_backend.describe(a)}"
        )
    return None


def _partner_values(a: Any, depth: int) -> Any:
    """The values of a ragged operand, its items aligned to the right against ``depth`` dims."""
    values = a._values
    if values.ndim - 1 < depth:  # as broadcasting aligns shapes
        values = values.reshape(values.shape[0], *(1,) * (depth + 1 - values.ndim), *a.item_shape)
    return values


def _check_partner(a: Any, ref: Any, where: object) -> None:
    """A second ragged operand must share the backend and the offsets (host copies)."""
    if a.backend != ref.backend:
        raise TypeError(
            f"{where}: ragged operands must share a backend; got {ref.backend} and "
            f"{a.backend} (convert one with .torch() or .numpy())"
        )
    if a._part is ref._part:  # one partition (h * h.softmax()): no host read, in a graph too
        return
    mine, theirs = ref._host, a._host
    if mine is theirs or (mine.shape == theirs.shape and _equal(mine, theirs)):
        return
    if mine.shape != theirs.shape:
        seen = f"{mine.shape[0] - 1} and {theirs.shape[0] - 1} segments"
    else:
        i = int(np.flatnonzero(mine != theirs)[0])
        seen = f"offsets[{i}] = {mine[i]} and {theirs[i]}"
    raise ValueError(f"{where}: ragged operands must have equal offsets; got {seen}")


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal host offsets; comparing bytes is faster for the short ones."""
    if a.size <= 4096:
        return a.tobytes() == b.tobytes()
    return bool(np.array_equal(a, b))


def _sequence_operand(a: Any, ref: Any, where: object) -> Any:
    """A list or tuple operand as a numpy array (numpy values); strings and torch: refused."""
    if isinstance(a, (str, bytes)):
        raise TypeError(
            f"{where}: operands must be numbers, arrays or ragged arrays; got "
            f"{type(a).__name__} {a!r:.40} (a string is not a number)"
        )
    if ref.backend == _backend.TORCH:
        raise TypeError(
            f"{where}: operands of a torch-backed ragged array must be scalars, tensors or "
            f"ragged arrays, as for torch tensors; got a {type(a).__name__} (convert it with "
            "torch.as_tensor(..., device=x.device))"
        )
    return _checks.as_numpy(a, str(where), f"a {type(a).__name__} operand")


def _wrap(ref: Any, out: Any, name: str) -> Any:
    """The fast paths' rewrap: an array type and dtype seen before, else ``_result``'s checks."""
    kind = type(out)
    # (not in a graph: it would guard on _TENSOR, and an eager call that binds it later
    # would recompile every graph traced before)
    held = kind is np.ndarray or (not _backend.compiling() and kind is _TENSOR)
    if held and out.dtype in _HELD_DTYPES:
        return ref._rewrap(out)
    return _result(ref, out, f"{type(ref).__name__}.{name}")


def _result(ref: Any, out: Any, where: object) -> Any:
    """Wrap one backend result with the offsets (the partition) of ``ref``."""
    values = ref._values
    same_kind = type(out) is type(values) or _backend.backend_of(out) == ref.backend
    if not (same_kind and out.ndim and out.shape[0] == values.shape[0]):
        raise TypeError(
            f"{where}: an elementwise call must return one row per item "
            f"({ref.num_items}); got {_backend.describe(out)}"
        )
    if _backend.compiling() or out.dtype not in _HELD_DTYPES:
        _hold(out, where)
    return ref._rewrap(out)


def _hold(out: Any, where: object) -> None:
    """Refuse a result dtype no constructor accepts; remember the ones that pass."""
    global _TENSOR
    _checks.check_dtype(out.dtype, str(where), "an elementwise result")
    if _backend.compiling():  # module state is changed eagerly only
        return
    _HELD_DTYPES.add(out.dtype)
    if _TENSOR is None and _backend.is_tensor(out):
        torch_tensor = _backend.torch_module().Tensor
        if type(out) is torch_tensor:
            _TENSOR = torch_tensor


# --------------------------------------------------------------------------- operators


def _binary(
    stem: str, op: Callable[[Any, Any], Any], *, reflected: bool = False
) -> Callable[[E, object], E]:
    # Typed as the ragged operand's class: items keep their shape against scalars and
    # arrays (and a plain RaggedArray result may be an image batch, a subclass); only a
    # ragged partner with more item dims turns an image batch's result into a RaggedArray.
    name = f"__r{stem}__" if reflected else f"__{stem}__"
    compare = stem in COMPARE

    def method(self: E, other: object) -> E:
        if isinstance(other, _SCALARS):  # the common case, kept short
            values = self._values
            if (
                type(values) is not np.ndarray
                and type(other) is not float
                and (compare or not _as_is(other))
            ):
                other, out = _torch_number(self, other, op if compare else None, name)
                if out is not None:
                    return _wrap(self, out, name)
            try:
                out = op(other, values) if reflected else op(values, other)
            except BACKEND_ERRORS as err:
                raise backend_refusal(err, self, f"{type(self).__name__}.{name}") or err from None
            return _wrap(self, out, name)
        where = f"{type(self).__name__}.{name}"
        if not _is_ragged(other) and _backend.backend_of(other) is None:
            if isinstance(other, numbers.Number):  # Fraction, Decimal: no backend reads them
                raise not_a_number(where, other)
            if not isinstance(other, _SEQUENCES):
                return NotImplemented
            other = _sequence_operand(other, self, where)
        return elementwise(op, (other, self) if reflected else (self, other), {}, where)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Elementwise ``{op.__name__}``, computed on the values (see module doc)."
    return method


def _torch_number(x: Any, other: Any, op: Any, where: object) -> tuple[Any, Any]:
    """A number beside torch values ``x`` as torch must read it, and the answer if it is one.

    ``op`` is the comparison asked (``operator.lt``), or None for other operations. The
    answer is None, or for a comparison with an int beyond the values' dtype (which torch
    would wrap) the constant result. ``where`` names the operation in messages: an
    operator's dunder name (``"__lt__"``), formatted with ``x``'s class only when one is
    raised, or a ``TorchWhere``.
    """
    values = x._values
    if not _as_is(other):  # torch misreads some numbers (see torch_number)
        other = torch_number(other, values, _label(x, where), compare=op is not None)
    if op is not None and type(other) is int:
        bounds = int_bounds(values.dtype)
        if bounds is not None and not bounds[0] <= other <= bounds[1]:
            try:
                return other, compare_beyond(op, values, other)
            except BACKEND_ERRORS as err:
                raise backend_refusal(err, x, _label(x, where)) or err from None
    return other, None


def _label(x: Any, where: object) -> object:
    """``where`` for a message: an operator's name is formatted with ``x``'s class."""
    return _MethodWhere(x, where) if isinstance(where, str) else where


class _MethodWhere:
    """``RaggedArray.__lt__`` for messages, formatted only when one is raised."""

    __slots__ = ("name", "x")

    def __init__(self, x: Any, name: str) -> None:
        self.x, self.name = x, name

    def __str__(self) -> str:
        return f"{type(self.x).__name__}.{self.name}"


def _unary(stem: str, op: Callable[[Any], Any]) -> Callable[[E], E]:
    name = f"__{stem}__"

    def method(self: E) -> E:
        try:
            out = op(self._values)
        except BACKEND_ERRORS as err:
            raise backend_refusal(err, self, f"{type(self).__name__}.{name}") or err from None
        return _wrap(self, out, name)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Elementwise ``{op.__name__}`` of the values."
    return method


# -------------------------------------------------------------------------- numpy ufuncs


def _as_ufunc_input(a: Any, x: Any, where: str) -> Any:
    return _sequence_operand(a, x, where) if isinstance(a, _SEQUENCES) else a


# -------------------------------------------------------------------------------- mixin


class ElementwiseMethods(RaggedFields[ValuesT]):
    """Mixin giving the ragged classes elementwise math, ``shape``/``ndim`` and dtype casts.

    It reads the ragged array's ``_values`` and ``_host`` and builds results with
    ``_rewrap``; it imports nothing from ``ragged.py``.
    """

    __slots__ = ()
    # ``==`` is elementwise, yet ragged arrays stay hashable by identity, as torch tensors
    # are (a dict or WeakKeyDictionary compares keys by identity before equality).
    __hash__ = object.__hash__

    __add__ = _binary("add", operator.add)
    __radd__ = _binary("add", operator.add, reflected=True)
    __sub__ = _binary("sub", operator.sub)
    __rsub__ = _binary("sub", operator.sub, reflected=True)
    __mul__ = _binary("mul", operator.mul)
    __rmul__ = _binary("mul", operator.mul, reflected=True)
    __truediv__ = _binary("truediv", operator.truediv)
    __rtruediv__ = _binary("truediv", operator.truediv, reflected=True)
    __floordiv__ = _binary("floordiv", operator.floordiv)
    __rfloordiv__ = _binary("floordiv", operator.floordiv, reflected=True)
    __mod__ = _binary("mod", operator.mod)
    __rmod__ = _binary("mod", operator.mod, reflected=True)
    __pow__ = _binary("pow", operator.pow)
    __rpow__ = _binary("pow", operator.pow, reflected=True)
    __and__ = _binary("and", operator.and_)
    __rand__ = _binary("and", operator.and_, reflected=True)
    __or__ = _binary("or", operator.or_)
    __ror__ = _binary("or", operator.or_, reflected=True)
    __xor__ = _binary("xor", operator.xor)
    __rxor__ = _binary("xor", operator.xor, reflected=True)
    __eq__ = _binary("eq", operator.eq)  # type: ignore[assignment]  # elementwise, as numpy
    __ne__ = _binary("ne", operator.ne)  # type: ignore[assignment]
    __lt__ = _binary("lt", operator.lt)
    __le__ = _binary("le", operator.le)
    __gt__ = _binary("gt", operator.gt)
    __ge__ = _binary("ge", operator.ge)
    __neg__ = _unary("neg", operator.neg)
    __pos__ = _unary("pos", operator.pos)
    __abs__ = _unary("abs", operator.abs)
    __invert__ = _unary("invert", operator.invert)

    def __contains__(self, value: object) -> bool:
        """Whether some element of some item equals ``value``, as ``value in`` an array.

        The same as ``(x == value).values.any()``, numpy's and torch's meaning of ``in``.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.arange(5), [2, 0, 3])
            >>> 4 in x, 7 in x
            (True, False)
        """
        found = self.__eq__(value)
        if found is NotImplemented:
            raise TypeError(
                f"{type(self).__name__}.__contains__: the value must be a number, an array or "
                f"a ragged array; got {type(value).__name__}"
            )
        return bool(found._values.any())

    def __bool__(self) -> bool:
        raise ValueError(
            f"{type(self).__name__}.__bool__: the truth value of a ragged array is ambiguous; "
            "use x.equal(y) to compare whole arrays, (x == y).values.all() for every item, "
            "or len(x) for the number of segments"
        )

    # ------------------------------------------------------------- torch and numpy hooks

    @classmethod
    def __torch_function__(
        cls, func: Any, types: Any, args: Any = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = {} if kwargs is None else kwargs
        verdict = torch_verdicts.get(func)
        if verdict is None:
            verdict = torch_elementwise(func)
        if not verdict:
            name = getattr(func, "__name__", "")
            in_place = name.endswith("_") and not name.endswith("__")  # relu_, Tensor.exp_
            if (in_place or name in _AUGMENTED) and args and not _is_ragged(args[0]):
                # t += x: torch turns a TypeError from Tensor.__iadd__ into NotImplemented,
                # and Python then rebinds t to t + x, leaving the tensor unchanged
                raise ValueError(
                    f"{torch_name(func)}: a tensor cannot be updated in place with a ragged "
                    "array (t += x would rebind t to a new ragged array); update the flat "
                    "buffer with x.values, or write t = t + x for a ragged result"
                )
            if in_place:
                base = name[:-1]
                new = torch_name(func)[:-1]
                torch = _backend.torch_module()
                hint = (
                    f"call {new}(...) for a new ragged array, or work"
                    if (hasattr(torch, base) or hasattr(torch.Tensor, base))
                    else "work"
                )
                raise TypeError(
                    f"{torch_name(func)}: in-place torch functions do not take ragged arrays; "
                    f"{hint} in place on x.values"
                )
            raise TypeError(
                f"{torch_name(func)}: only elementwise torch functions take ragged arrays "
                f"(torch.exp, torch.relu, torch.where, F.gelu, ...); {_HINT}"
            )
        if kwargs.get("out") is not None:
            raise TypeError(
                f"{torch_name(func)}: out= is not supported with ragged arrays (results are "
                f"new ragged arrays); got out={type(kwargs['out']).__name__}"
            )
        if (kwargs or len(args) > 1) and writes_in_place(func, args, kwargs):
            raise TypeError(
                f"{torch_name(func)}: in-place torch functions do not take ragged arrays; got "
                "inplace=True (nn.ReLU(inplace=True), say); call it with inplace=False for a "
                "new ragged array, or work in place on x.values"
            )
        if len(args) == 1 and not kwargs and func is _backend.torch_module().where:
            raise TypeError(
                "torch.where: with one argument (the condition) it gives the positions of the "
                f"True items, which is not elementwise; {_HINT} (torch.where(cond, x, y) "
                "selects elementwise)"
            )
        stem = torch_comparison(func)
        if stem is not None and kwargs and set(kwargs) <= {"input", "other", "out"}:
            named = {k: v for k, v in kwargs.items() if k != "out"}  # (out= tensors: refused)
            if len(args) + len(named) == 2 and ("input" not in named or not args):
                args = (*args, *(named[k] for k in ("input", "other") if k in named))
                kwargs = {}  # torch.lt(x, other=300) is torch.lt(x, 300): checked the same
        if stem is not None and len(args) == 2 and not kwargs and isinstance(args[1], _SCALARS):
            x = args[0]  # torch.gt(x, 300): as x > 300, torch's wrapping of 300 caught
            if _is_ragged(x) and x.backend == _backend.TORCH and type(args[1]) is not float:
                other, out = _torch_number(x, args[1], COMPARE[stem], TorchWhere(func))
                if out is not None:
                    return _result(x, out, TorchWhere(func))
                args = (x, other)
        return elementwise(func, args, kwargs, TorchWhere(func), backend=_backend.TORCH)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        where = f"numpy.{ufunc.__name__}"
        if method != "__call__":
            raise TypeError(
                f"{where}.{method}: ufunc methods (reduce, accumulate, reduceat, outer, at) do "
                f"not apply to ragged arrays; {_HINT}"
            )
        if ufunc.signature is not None:
            raise TypeError(
                f"{where}: generalized ufuncs (signature {ufunc.signature}) are not "
                f"elementwise; {_HINT}"
            )
        if kwargs:
            refuse_ufunc_outputs(where, kwargs)
        elif type(self._values) is not np.ndarray and _backend.is_tensor(self._values):
            out = numpy_scalar_on_the_left(self, ufunc, inputs)
            if out is not NotImplemented:
                return out
        for a in inputs:
            if isinstance(a, _SEQUENCES):  # array-likes, as numpy reads them
                inputs = tuple(_as_ufunc_input(b, self, where) for b in inputs)
                break
        several = ufunc.nout > 1
        return elementwise(ufunc, inputs, kwargs, where, several=several, backend=_backend.NUMPY)

    @property
    def __array_interface__(self) -> NoReturn:
        """Refuses every implicit conversion to a numpy array (``np.asarray(x)``).

        Without it numpy would read a ragged array as a sequence of its segments: a dense
        array when the lengths happen to be equal, an object array (numpy < 1.24) or an
        error when they are not.
        """
        raise TypeError(_no_implicit_conversion(self, "a numpy array"))

    def __dlpack__(self, *args: object, **kwargs: object) -> NoReturn:
        """Refuses every implicit conversion to a tensor (``torch.tensor(x)``, ``from_dlpack``).

        torch tries DLPack before reading an object as a sequence; as a sequence of its
        segments a ragged array would become a dense tensor when the lengths happen to be
        equal, with a segment of one torch item read as a number.
        """
        raise TypeError(_no_implicit_conversion(self, "a tensor"))

    def __dlpack_device__(self) -> NoReturn:
        """Refuses DLPack, as ``__dlpack__`` does (torch asks for the device first)."""
        raise TypeError(_no_implicit_conversion(self, "a tensor"))

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func is np.where and len(args) == 3 and not kwargs:  # select, elementwise
            where = "numpy.where"
            args = tuple(_as_ufunc_input(a, self, where) for a in args)
            return elementwise(np.where, args, {}, where, backend=_backend.NUMPY)
        raise TypeError(
            f"numpy.{func.__name__}: numpy functions do not take ragged arrays, only "
            f"elementwise ufuncs (np.exp(x), np.add(x, 1)) and np.where(cond, x, y) do; {_HINT}"
        )

    # ------------------------------------------------------------------- shape and dtype

    @property
    def shape(self) -> tuple[int | None, ...]:
        """``(m, None, *item_shape)``: None marks the ragged dimension (as tf.RaggedTensor).

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.zeros((5, 3)), [2, 0, 3])
            >>> x.shape, x.ndim
            ((3, None, 3), 3)
        """
        return (self._host.shape[0] - 1, None, *self._values.shape[1:])

    @property
    def ndim(self) -> int:
        """``2 + len(item_shape)``: segments, items, then the item dimensions."""
        return self._values.ndim + 1

    def astype(self, dtype: DTypeLike) -> Self:
        """``x.to(dtype=dtype)``: numpy or torch dtypes, whatever the backend.

        numpy values stay numpy (a torch dtype is mapped to numpy's where numpy has it).

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.arange(3), [1, 2])
            >>> x.astype(np.float32).dtype, x.float().dtype, x.torch().int().dtype
            (dtype('float32'), dtype('float32'), torch.int32)
        """
        where = f"{type(self).__name__}.astype"
        if dtype is None:  # (numpy's astype(None) means float64; x.to(dtype=None) no change)
            raise TypeError(f"{where}: dtype must be a numpy or torch dtype; got None")
        return self._to(None, dtype, False, where)  # type: ignore[attr-defined]

    def _cast(self, name: str) -> Self:
        if _backend.is_tensor(self._values):
            return self.to(dtype=getattr(_backend.torch_module(), name))
        if name == "bfloat16":
            raise TypeError(
                f"{type(self).__name__}.bfloat16: numpy has no bfloat16 dtype; got numpy "
                f"values of dtype {self._values.dtype} (use x.torch().bfloat16())"
            )
        return self.to(dtype=np.dtype(name))

    # The dtype shortcuts of Tensor, last in the class: their names hide the builtins.
    def float(self) -> Self:
        """Values as float32: ``x.to(dtype=float32)`` (``x`` itself when they are)."""
        return self._cast("float32")

    def double(self) -> Self:
        """Values as float64."""
        return self._cast("float64")

    def half(self) -> Self:
        """Values as float16."""
        return self._cast("float16")

    def bfloat16(self) -> Self:
        """Values as bfloat16 (torch values only: numpy has no bfloat16)."""
        return self._cast("bfloat16")

    def int(self) -> Self:
        """Values as int32, as ``Tensor.int``."""
        return self._cast("int32")

    def long(self) -> Self:
        """Values as int64."""
        return self._cast("int64")

    def bool(self) -> Self:
        """Values as bool."""
        return self._cast("bool")
