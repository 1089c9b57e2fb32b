"""Elementwise math on ragged arrays: operators, torch functions, numpy ufuncs, dtype shortcuts.

An elementwise operation never looks at the segments: it is one call of the values' own
backend on the flat ``values`` buffer (numpy's dtype rules for numpy values, torch's for
torch values, autograd included), and the result keeps the offsets. Beside the ragged
array an operation may take:

- Python and numpy scalars, 0-d arrays;
- arrays of the values' backend with at most ``len(item_shape)`` dimensions: they broadcast
  against every item, exactly as ``values`` (``(N, *item_shape)``) broadcasts against them;
- ragged arrays of the same backend with equal offsets (compared on their host copies, so
  a GPU is never synchronised); items with fewer dimensions are aligned to the right, as
  broadcasting aligns shapes.

A ``(m, ...)`` per-segment array is never broadcast implicitly (``x.broadcast(per_segment)``
says so explicitly), and numpy and torch are never mixed: an array of the other backend is
a ``TypeError`` (convert with ``x.torch()`` or ``x.numpy()``).

Which torch functions count as elementwise comes from torch itself, as torch.nested's jagged
layout and DTensor decide it: a function is elementwise when the ATen operator of its name has
an overload tagged ``torch.Tag.pointwise`` that returns tensors and no overload tagged
``torch.Tag.reduction`` (so ``torch.max(x)`` stays a reduction). Added to those: the Python
operators below, and a few functions torch leaves untagged though they act item by item
(``_TORCH_UNTAGGED``: random ones such as dropout, and compositions such as hardswish). The
verdict is cached per function, so dispatch is one dictionary lookup. numpy ufuncs without a
core signature are elementwise by definition; their methods (``reduce``, ``accumulate``, ...)
and the generalized ufuncs (``matmul``) are not.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from . import _backend
from ._types import DTypeLike, RaggedFields

if TYPE_CHECKING:
    from typing_extensions import Self

    from .ragged import RaggedArray

E = TypeVar("E", bound="ElementwiseMethods")

# Python scalars (bool is an int) and numpy scalars go straight to the backend.
_SCALARS = (int, float, complex, np.generic)

# Operators as (dunder stem, function); their Tensor dunders dispatch here too.
_BINARY = {
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
_COMPARE = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
_UNARY = {"neg": operator.neg, "pos": operator.pos, "abs": operator.abs, "invert": operator.invert}

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
)

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
        "the torch function, e.g. torch.exp(x), or x.numpy(); for a numpy scalar s, write "
        "x * s or float(s) * x)"
    ),
}

# torch function -> whether it is elementwise; filled on first use of each function.
_torch_verdicts: dict[Any, bool] = {}


# ----------------------------------------------------------------------------- the core


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
    ref, depth = None, -1
    for a in (*args, *kwargs.values()) if kwargs else args:
        if isinstance(a, ElementwiseMethods):
            if ref is None:
                ref = a
            depth = max(depth, a._values.ndim - 1)
    if ref is None:  # only called with a ragged operand among the arguments
        raise TypeError(f"{where}: needs a ragged operand")
    array = type(ref._values)
    if backend is not None and ref.backend != backend:
        raise TypeError(_WRONG_BACKEND[backend].format(where=where))
    args = [_operand(a, ref, array, depth, where) for a in args]
    if kwargs:
        kwargs = {k: _operand(a, ref, array, depth, where) for k, a in kwargs.items()}
    out = fn(*args, **kwargs)
    if several or (isinstance(out, tuple) and type(out) is not tuple):  # torch.return_types
        return type(out)([_result(ref, o, where) for o in out])
    return _result(ref, out, where)


def _operand(a: Any, ref: Any, array: type, depth: int, where: object) -> Any:
    """What the backend sees for argument ``a``: values for ragged, arrays checked, rest as is."""
    if type(a) is not array:
        if isinstance(a, ElementwiseMethods):
            return _partner_values(a, ref, depth, where)
        backend = _backend.backend_of(a)
        if backend is None:
            return a  # scalars, None, dtypes, strings: the backend's business
        if backend != ref.backend:
            raise TypeError(
                f"{where}: operands must be {ref.backend} arrays like the ragged values; got "
                f"{_backend.describe(a)} (convert the ragged array with x.{backend}() or the "
                f"operand to {ref.backend})"
            )
    if a.ndim > depth:
        raise ValueError(
            f"{where}: an array operand broadcasts against every item, so it may have at most "
            f"{depth} dims (item_shape {ref.item_shape}); got {_backend.describe(a)}. A "
            "per-segment (m, ...) operand is never broadcast implicitly: use "
            "x.broadcast(per_segment)"
        )
    return a


def _partner_values(a: Any, ref: Any, depth: int, where: object) -> Any:
    """The values of a ragged operand, its items aligned to the right against ``depth`` dims."""
    if a is not ref:
        _check_partner(a, ref, where)
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


def _result(ref: Any, out: Any, where: object) -> Any:
    """Wrap one backend result with the offsets (the partition) of ``ref``."""
    values = ref._values
    same_kind = type(out) is type(values) or _backend.backend_of(out) == ref.backend
    if same_kind and out.ndim and out.shape[0] == values.shape[0]:
        return ref._rewrap(out)
    raise TypeError(
        f"{where}: an elementwise call must return one row per item "
        f"({ref.num_items}); got {_backend.describe(out)}"
    )


# --------------------------------------------------------------------------- operators


def _binary(
    stem: str, op: Callable[[Any, Any], Any], *, reflected: bool = False
) -> Callable[[E, object], RaggedArray]:
    name = f"__r{stem}__" if reflected else f"__{stem}__"

    def method(self: E, other: object) -> RaggedArray:
        if isinstance(other, _SCALARS):  # the common case, kept short
            values = self._values
            out = op(other, values) if reflected else op(values, other)
            return self._rewrap(out)
        if not _is_ragged(other) and _backend.backend_of(other) is None:
            return NotImplemented
        where = f"{type(self).__name__}.{name}"
        return elementwise(op, (other, self) if reflected else (self, other), {}, where)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Elementwise ``{op.__name__}``, computed on the values (see module doc)."
    return method


def _unary(stem: str, op: Callable[[Any], Any]) -> Callable[[E], RaggedArray]:
    def method(self: E) -> RaggedArray:
        return self._rewrap(op(self._values))

    method.__name__ = method.__qualname__ = f"__{stem}__"
    method.__doc__ = f"Elementwise ``{op.__name__}`` of the values."
    return method


def _caster(dtype: str, doc: str) -> Callable[[E], E]:
    def method(self: E) -> E:
        return self._cast(dtype)

    method.__doc__ = doc
    return method


# ----------------------------------------------------------------------- torch functions


def torch_elementwise(func: Any) -> bool:
    """Whether torch function ``func`` is elementwise (cached; see the module docstring)."""
    verdict = _torch_verdicts.get(func)
    if verdict is None:
        verdict = _torch_verdicts[func] = _classify(func)
    return verdict


def _classify(func: Any) -> bool:
    torch = _backend.torch_module()
    if func in _torch_extras(torch):
        return True
    name = getattr(func, "__name__", "")
    if name.startswith("__") or name.endswith("_"):  # other dunders; in-place variants
        return False
    packet: Any = getattr(torch.ops.aten, name.lstrip("_"), None)
    if not hasattr(packet, "overloads"):
        return False
    overloads = [getattr(packet, o) for o in packet.overloads()]
    pointwise = any(torch.Tag.pointwise in o.tags and _returns_tensors(o) for o in overloads)
    return pointwise and not any(_reduces(o, torch) for o in overloads)


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
    names = [f"__{s}__" for s in (*_BINARY, *_COMPARE, *_UNARY)]
    names += [f"__r{s}__" for s in _BINARY]
    extras = {getattr(torch.Tensor, n) for n in names if hasattr(torch.Tensor, n)}
    for path in _TORCH_UNTAGGED:
        owner = torch
        for part in path.split("."):
            owner = getattr(owner, part)
        extras.add(owner)
    return frozenset(extras)


class _TorchWhere:
    """The name of a torch function for messages, formatted only when one is raised."""

    __slots__ = ("func",)

    def __init__(self, func: Any) -> None:
        self.func = func

    def __str__(self) -> str:
        return _torch_name(self.func)


def _torch_name(func: Any) -> str:
    """``torch.exp``, ``torch.nn.functional.gelu``, ``torch.Tensor.add`` for messages."""
    name = getattr(func, "__name__", repr(func))
    qualname = getattr(func, "__qualname__", name)
    if qualname.startswith(("TensorBase.", "Tensor.")):
        return f"torch.Tensor.{name}"
    module = getattr(func, "__module__", None) or "torch"
    return f"{'torch' if module.startswith('torch._') else module}.{name}"


# -------------------------------------------------------------------------------- mixin


class ElementwiseMethods(RaggedFields):
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
        verdict = _torch_verdicts.get(func)
        if verdict is None:
            verdict = torch_elementwise(func)
        if not verdict:
            raise TypeError(
                f"{_torch_name(func)}: only elementwise torch functions take ragged arrays "
                f"(torch.exp, torch.relu, torch.where, F.gelu, ...); {_HINT}"
            )
        if kwargs.get("out") is not None:
            raise TypeError(
                f"{_torch_name(func)}: out= is not supported with ragged arrays (results are "
                f"new ragged arrays); got out={type(kwargs['out']).__name__}"
            )
        return elementwise(func, args, kwargs, _TorchWhere(func), backend=_backend.TORCH)

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
        if "out" in kwargs:
            raise TypeError(
                f"{where}: out= is not supported with ragged arrays (results are new ragged "
                f"arrays); got out={type(kwargs['out']).__name__}"
            )
        several = ufunc.nout > 1
        return elementwise(ufunc, inputs, kwargs, where, several=several, backend=_backend.NUMPY)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        raise TypeError(
            f"numpy.{func.__name__}: numpy functions do not take ragged arrays, only "
            f"elementwise ufuncs do (np.exp(x), np.add(x, 1)); {_HINT}"
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
        return self.to(dtype=dtype)

    def _cast(self, name: str) -> Self:
        if _backend.is_tensor(self._values):
            return self.to(dtype=getattr(_backend.torch_module(), name))
        if name == "bfloat16":
            raise TypeError(
                f"{type(self).__name__}.bfloat16: numpy has no bfloat16 dtype; got numpy "
                f"values of dtype {self._values.dtype} (use x.torch().bfloat16())"
            )
        return self.to(dtype=np.dtype(name))

    float = _caster("float32", "Values as float32 (``x.to(dtype=float32)``).")
    double = _caster("float64", "Values as float64.")
    half = _caster("float16", "Values as float16.")
    bfloat16 = _caster("bfloat16", "Values as bfloat16 (torch values only: numpy has none).")
    int = _caster("int32", "Values as int32, as ``Tensor.int``.")
    long = _caster("int64", "Values as int64.")
    bool = _caster("bool", "Values as bool.")
