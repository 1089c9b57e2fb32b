"""Pickling and copying ragged arrays, and letting ``torch.load(weights_only=True)`` rebuild them.

A ragged array pickles as ``restore(cls, values, offsets, backend)``. When torch is loaded the
values travel as a CPU tensor even for numpy-backed arrays (sharing their memory):
``torch.save`` then stores them as raw storage beside the pickle, and torch's ``weights_only``
unpickler, which refuses numpy arrays, accepts them. Without torch they travel as a numpy
array. Either way they come back on the backend they left. The offsets travel as bytes
(little-endian int64), which every unpickler reads in place (as Python ints at protocol 3,
where bytes are an opcode torch's unpickler does not read): ``restore`` checks them while
unpickling, and torch's legacy format (``_use_new_zipfile_serialization=False``) fills the
tensors' memory only after the whole pickle is read. Pickles that carry the offsets as a
tensor or an array still load.

``restore`` and the ragged classes are registered with ``torch.serialization.add_safe_globals``,
the way torch documents for classes that are safe to rebuild. Importing raggedarray does not
import torch: when torch is not loaded yet, a one-shot import hook registers them right after
``torch.serialization`` (imported by ``import torch``) has loaded.

Between processes (multiprocessing's ``ForkingPickler``: ``DataLoader`` workers, queues,
``Process`` arguments) a ragged array travels by ``reduce_for_processes`` instead, registered
with that pickler once torch is loaded: torch's reducer puts each tensor's storage in shared
memory and passes its file descriptor, which a process being spawned reads only after the
parent has pickled everything, so nothing sent may be a temporary that dies first.
"""

from __future__ import annotations

import copy
import importlib.abc
import importlib.util
import sys
from typing import Any

import numpy as np

from . import _backend, _checks, _offsets
from ._backend import NUMPY, TORCH

_SAFE: list[Any] = []  # what torch's weights_only unpickler may rebuild


class PickleMethods:
    """``__reduce__``, ``__copy__`` and ``__deepcopy__`` of ragged arrays."""

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES.append(cls)  # a user's subclass too: multiprocessing dispatches on exact types
        if "torch" in sys.modules:
            _send_between_processes(cls)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__reduce_ex__(2)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        if type(self).__reduce__ is not PickleMethods.__reduce__:  # a subclass's own
            return self.__reduce__()  # (as object.__reduce_ex__ honours it)
        values, host = self._values, self._host  # type: ignore[attr-defined]
        backend = self.backend  # type: ignore[attr-defined]
        if backend == TORCH:
            if values.untyped_storage().nbytes() > values.nbytes:
                # torch pickles a view's whole storage; a slice of a large batch sends its part
                values = values.clone()
        elif "torch" in sys.modules:  # every dtype a ragged array holds, torch holds too
            values = _backend.tensor_from_numpy(np.ascontiguousarray(values))
        if protocol == 3:  # bytes are an opcode torch's weights_only unpickler lacks there
            offsets: Any = host.tolist()
        else:
            offsets = np.asarray(host, dtype="<i8").tobytes()  # (see the module docstring)
        return _restore_call(type(self), values, offsets, backend)

    def __copy__(self) -> Any:
        """A new ragged array over the same values and offsets (nothing is copied)."""
        return type(self)._share(self._values, self._part)  # type: ignore[attr-defined]

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        """A ragged array with copied values (``copy.deepcopy`` of them, as each backend does).

        Values that autograd computed (a view of a leaf, ``x * 2``), which torch's deepcopy
        refuses, are copied as pickling copies them: detached, still requiring grad.
        """
        values = self._values  # type: ignore[attr-defined]
        if _backend.is_tensor(values) and not values.is_leaf and id(values) not in memo:
            memo[id(values)] = values.detach().clone().requires_grad_(values.requires_grad)
        values = copy.deepcopy(values, memo)
        return type(self)._make(values, None, self._host.copy())  # type: ignore[attr-defined]


def reduce_for_processes(x: Any) -> tuple[Any, ...]:
    """How multiprocessing sends a ragged array to another process, once torch is loaded.

    Torch values go as they are, so torch shares their storage (a view shares the whole of
    it, as torch sends any view; nothing is copied); the offsets and numpy values go by
    value. ``__reduce__`` would send temporaries (the offsets as a tensor, numpy values
    wrapped in one, a view's copy) whose shared-memory descriptors close before a spawned
    process (``multiprocessing_context="spawn"`` or ``"forkserver"``) reads them.
    """
    return _restore_call(type(x), x._values, np.array(x._host), x.backend)


def _restore_call(cls: type, values: Any, offsets: Any, backend: str) -> tuple[Any, ...]:
    """``(restore, args)`` for pickle.

    pickle cannot write uint16-64 tensors (torch 2.13): they travel as their signed twins
    (the same bits, a view of the same storage) and are viewed back by ``restore``.
    """
    signed = _backend.signed_view(values)
    if signed is values:
        return (restore, (cls, values, offsets, backend))
    return (restore, (cls, signed, offsets, backend, _checks.dtype_name(values.dtype)))


_CLASSES: list[type] = []  # every ragged class, for ``_send_between_processes``


def _send_between_processes(*classes: type) -> None:
    from multiprocessing.reduction import ForkingPickler  # (loaded already by torch)

    for cls in classes:
        ForkingPickler.register(cls, reduce_for_processes)


_UNSIGNED = {"uint16": "int16", "uint32": "int32", "uint64": "int64"}


def restore(cls: type, values: Any, offsets: Any, backend: str, unsigned: str | None = None) -> Any:
    """Rebuild a pickled ragged array, checking what the pickle holds first.

    ``unsigned`` names the dtype of values that travelled as their signed twin.
    """
    where = "raggedarray: unpickling"
    if not (isinstance(cls, type) and issubclass(cls, PickleMethods)):
        raise TypeError(f"{where}: cls must be a ragged array class; got {cls!r}")
    if backend not in (NUMPY, TORCH) or _backend.backend_of(values) is None:
        raise TypeError(
            f"{where}: values must be a numpy array or tensor for backend 'numpy' or 'torch'; "
            f"got {_backend.describe(values)} for backend {backend!r}"
        )
    if unsigned is not None:
        values = _unsigned_view(values, unsigned, where)
    if backend == NUMPY and _backend.is_tensor(values):
        values = _numpy_of(values, where)
    elif backend == TORCH and not _backend.is_tensor(values):
        raise TypeError(f"{where}: torch values must be a tensor; got {_backend.describe(values)}")
    _checks.check_values(values, where, cls._item_ndim)  # type: ignore[attr-defined]
    if isinstance(offsets, bytes):
        offsets = _offsets_from_bytes(offsets, where)
    host = _offsets.read_offsets(offsets, where)
    _offsets.validate(host, values.shape[0], where)
    return cls._make(values, None, host)  # type: ignore[attr-defined]


def _numpy_of(values: Any, where: str) -> np.ndarray:
    """The numpy values that travelled as a tensor (a CPU tensor of a dtype numpy holds)."""
    _checks.dense_tensor(values, where, "values")  # (a meta tensor: map_location="meta")
    try:
        return values.detach().cpu().numpy()
    except TypeError:  # bfloat16
        raise TypeError(
            f"{where}: numpy values must travel as a tensor of a dtype numpy holds; got "
            f"{_backend.describe(values)}"
        ) from None


def _offsets_from_bytes(raw: bytes, where: str) -> np.ndarray:
    if len(raw) % 8:
        raise ValueError(
            f"{where}: offsets must travel as little-endian int64 bytes; got {len(raw)} bytes, "
            "not a multiple of 8"
        )
    return np.frombuffer(raw, dtype="<i8").astype(np.int64)


def _unsigned_view(values: Any, unsigned: Any, where: str) -> Any:
    """Values that travelled as the signed twin of ``unsigned``, viewed back."""
    signed = _UNSIGNED.get(unsigned) if isinstance(unsigned, str) else None
    if signed is None or _checks.dtype_name(values.dtype) != signed:
        raise TypeError(
            f"{where}: unsigned values must travel as their signed twin ({_UNSIGNED}); "
            f"got {unsigned!r} for values of dtype {_checks.dtype_name(values.dtype)}"
        )
    if _backend.is_tensor(values):
        return values.view(getattr(_backend.torch_module(), unsigned))
    return values.view(np.dtype(unsigned))


# ------------------------------------------------------ torch.load(weights_only=True)


def allow_in_torch_load(*classes: type) -> None:
    """Let ``torch.load(weights_only=True)`` rebuild these classes, now or when torch loads."""
    if not _SAFE:
        _SAFE.append(restore)
    _SAFE.extend(classes)
    if "torch.serialization" in sys.modules:
        _register()
    elif not any(isinstance(f, _TorchHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchHook())


def _register() -> None:
    add = getattr(sys.modules["torch.serialization"], "add_safe_globals", None)
    if add is not None:  # torch < 2.4 has no weights_only allowlist (nor that default)
        add(list(_SAFE))
    _send_between_processes(*_CLASSES)


class _TorchHook(importlib.abc.MetaPathFinder):
    """Registers the safe globals once ``torch.serialization`` has run, then removes itself."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "torch.serialization":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            del loader.exec_module  # the loader's own method again
            _register()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
