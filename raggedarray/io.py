"""Ragged arrays in files: ``save`` and ``load`` as safetensors, with optional memory mapping.

A file is an ordinary safetensors file (any safetensors reader opens it; no pickle). A file
that holds one ragged array ``x`` (format version 1)::

    tensors   "values"   (N, *item_shape)   the values' dtype, only the N items x shows
              "offsets"  (m + 1,) int64     starting at 0
    metadata  format="raggedarray", format_version="1",
              class="RaggedArray" | "RaggedImageBatch", backend="numpy" | "torch",
              item_shape="[C, H, W]" (JSON)

A file that holds a dict (format version 2) names its tensors after the keys: a ragged entry
``"x"`` is the tensors ``"x.values"`` and ``"x.offsets"``, an array entry ``"y"`` the tensor
``"y"``. Its metadata is ``format="raggedarray"``, ``format_version="2"`` and ``entries``, a
JSON list in the dict's order of ``{"key", "kind": "ragged" | "array", "backend"}`` objects,
ragged ones with ``"class"`` and ``"item_shape"`` too.

``load`` checks everything before it returns: the header, the marker, the tensors' dtypes and
shapes, the offsets invariants and that bool tensors hold only bytes 0 and 1. A truncated,
corrupt, empty or foreign file (or a directory) raises ``ValueError``; a missing file raises
``FileNotFoundError``.
"""

from __future__ import annotations

import json
import mmap as _mmap
import os
from collections.abc import Mapping
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from . import _backend, _checks, _files, _offsets
from ._backend import NUMPY, TORCH
from ._files import DTYPES, SAVABLE
from ._types import Array
from .image import RaggedImageBatch
from .ragged import RaggedArray

FORMAT = "raggedarray"
FORMAT_VERSION = "1"  # one ragged array
DICT_VERSION = "2"  # a dict of ragged arrays and arrays
_CLASSES: dict[str, type[RaggedArray]] = {c.__name__: c for c in (RaggedArray, RaggedImageBatch)}
_KINDS = "a RaggedArray, a RaggedImageBatch, a numpy array or a torch tensor"


class _Entry(NamedTuple):
    """What the metadata says about one entry of a file, checked."""

    key: str | None  # None: the one ragged array of a version 1 file
    cls: type[RaggedArray] | None  # None: a plain array
    backend: str
    item_shape: tuple[int, ...]
    names: tuple[str, ...]  # (values, offsets) for ragged entries, (array,) for arrays


def save(
    path: str | os.PathLike[str], obj: RaggedArray | Mapping[str, RaggedArray | Array]
) -> None:
    """Write a ragged array, or a dict of ragged arrays and arrays, to one safetensors file.

    Only what a ragged array shows is written: a slice or gathered view saves its own segments,
    with offsets starting at 0. A dict keeps targets, parameters or ids beside the data; its
    values may be ragged arrays, numpy arrays (any shape, 0-d too, copied when not
    contiguous) and dense torch tensors. Torch tensors on any device are copied to the host
    and come back from [`load`][raggedarray.load] on the CPU; tensors that require grad are
    saved detached (their values, not their graph), and ``nn.Parameter`` comes back as a
    plain tensor.
    Nothing passed in is changed.

    The file is written to a temporary file beside ``path`` and renamed over it, so ``path``
    never holds a half-written file: after a failure it still holds what it held before (a
    memory-mapped reader of the old file keeps seeing the old file).

    Args:
        path: file to write (``str`` or ``os.PathLike``); replaced if it exists. A symbolic
            link is followed (the file it names is replaced, the link stays).
        obj: a ``RaggedArray`` or ``RaggedImageBatch``, or a dict mapping non-empty ``str``
            keys to those, numpy arrays and torch tensors. Dtypes must be ones safetensors
            stores: float16/32/64, bfloat16 (torch only), (u)int8..64, bool.

    Raises:
        TypeError: ``obj`` or one of its values is of another kind, a key is not a ``str``,
            ``path`` is not a path, or a dtype cannot be stored.
        ValueError: a key is empty, is ``"__metadata__"``, or names the same tensor as
            another entry (an array ``"x.values"`` beside a ragged ``"x"``); ``path`` is
            empty, ends in a separator, or names a directory or a special file (a device such
            as ``/dev/null``, a FIFO, a socket), which is never replaced.

    Examples:
        >>> import os, tempfile
        >>> import numpy as np
        >>> import torch
        >>> import raggedarray as ra
        >>> x = ra.RaggedArray.from_lengths(np.arange(12.0).reshape(6, 2), [2, 0, 4])
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "x.safetensors")
        ...     ra.save(path, x[1:])  # a view: only its two segments and four items are written
        ...     y = ra.load(path)
        ...     ra.save(path, {"x": x, "theta": torch.ones(3, 2), "ids": np.arange(3)})
        ...     data = ra.load(path)
        >>> y.offsets, y.values.shape, y.equal(x[1:])
        (array([0, 0, 4]), (4, 2), True)
        >>> {key: type(value).__name__ for key, value in data.items()}
        {'x': 'RaggedArray', 'theta': 'Tensor', 'ids': 'ndarray'}
    """
    where = "save"
    path = _files.fspath(path, where)
    if isinstance(obj, RaggedArray):
        tensors = _ragged_tensors(obj, ("values", "offsets"), "values")
        metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, **_describe(obj)}
        metadata["item_shape"] = json.dumps(metadata["item_shape"])
        del metadata["kind"]
    elif isinstance(obj, Mapping):  # a dict, or any mapping (written as a dict)
        tensors, entries, owners = {}, [], dict[str, str]()
        for key, value in obj.items():
            names = _entry_names(key, value, owners, where)
            if isinstance(value, RaggedArray):
                tensors.update(_ragged_tensors(value, names, f"obj[{key!r}].values"))
                entries.append({"key": key, **_describe(value)})
            else:
                tensors[key] = _host_array(value, f"obj[{key!r}]")
                entries.append({"key": key, "kind": "array", "backend": _backend_of(value)})
        metadata = {"format": FORMAT, "format_version": DICT_VERSION}
        metadata["entries"] = json.dumps(entries)
    else:
        raise TypeError(
            f"{where}: obj must be a RaggedArray, a RaggedImageBatch or a dict of str keys to "
            f"ragged arrays, numpy arrays and torch tensors; got {type(obj).__name__}"
        )
    _write(path, tensors, metadata)


def load(
    path: str | os.PathLike[str], *, mmap: bool = False
) -> RaggedArray | dict[str, RaggedArray | Array]:
    """Read what [`save`][raggedarray.save] wrote: a ragged array, or a dict, as it was saved.

    A ragged array comes back as the class and backend it was saved as, a dict as a dict
    with the same keys in the same order, each value of the same class, backend, dtype and
    shape. Numpy entries give numpy arrays, torch entries CPU tensors. With ``mmap=False``
    everything is read into new, writable memory. With ``mmap=True`` the file is memory-mapped
    copy-on-write and every array and ragged values buffer is a zero-copy view of the mapping:
    nothing is read until it is touched, so files larger than memory work. Writes can never
    reach the file: numpy arrays are read-only, and torch tensors (torch has no read-only
    tensors) write into private copy-on-write pages that are dropped with the tensor.

    The file must not change underneath a mapping: pages not yet touched are the file's own,
    so overwriting the file in place changes the mapped arrays (undefined contents), and
    truncating it kills the process with ``SIGBUS`` on the next touch of a page past the new
    end. [`save`][raggedarray.save] does neither: it writes a temporary file and renames it
    over ``path``, so an existing mapping keeps the old file (the old inode lives while it is
    mapped).

    Args:
        path: the file (``str`` or ``os.PathLike``).
        mmap: map the arrays instead of reading them. Offsets are always read, and so are
            bool arrays, once, to check that every byte is 0 or 1.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        TypeError: ``path`` is not a path or ``mmap`` is not a bool.
        ValueError: ``path`` is a directory (or another non-regular file), the file is
            empty, truncated or corrupt (a bool byte other than 0 or 1, say), is not a
            safetensors file, or is a safetensors file that ``save`` did not write; the
            message says what is wrong.

    Examples:
        >>> import os, tempfile
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> x = ra.RaggedImageBatch.from_list([np.ones((2, 3, 4, 4)), np.zeros((1, 3, 4, 4))])
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "images.safetensors")
        ...     ra.save(path, x.torch())
        ...     y = ra.load(path, mmap=True)
        ...     print(type(y).__name__, y.backend, y.lengths.tolist(), y.equal(x))
        ...     ra.save(path, {"images": x, "labels": np.array([3, 7])})
        ...     data = ra.load(path, mmap=True)
        ...     print(data["images"].equal(x), data["labels"], data["labels"].flags.writeable)
        ...     del y, data  # release the mappings before the folder goes
        RaggedImageBatch torch [2, 1] True
        True [3 7] False
    """
    path = _files.fspath(path, "load")
    where = f"load({path!r})"
    mmap = _checks.read_bool(mmap, "mmap", "load")
    _files.check_regular(path, "load")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        header, data_start = _files.read_header(f, size, where)
        _files.check_with_safetensors(path, where)
        entries = _read_entries(header, where)
        mapped = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_COPY) if mmap else None
        file = (f, mapped, header, data_start, size - data_start)
        loaded = {
            e.key: _load_entry(file, e, where if e.key is None else f"{where}[{e.key!r}]")
            for e in entries
        }
    return loaded.get(None, loaded)  # a version 1 file holds one ragged array


# ------------------------------------------------------------------------------ saving


def _describe(x: RaggedArray) -> dict[str, Any]:
    return {
        "kind": "ragged",
        "class": "RaggedImageBatch" if isinstance(x, RaggedImageBatch) else "RaggedArray",
        "backend": x.backend,
        "item_shape": list(x.item_shape),
    }


def _entry_names(key: Any, value: Any, owners: dict[str, str], where: str) -> tuple[str, ...]:
    """The tensor names of entry ``key``, checked against those of the entries before it."""
    if not isinstance(key, str):
        raise TypeError(f"{where}: dict keys must be str; got {type(key).__name__} {key!r}")
    if not key or key == "__metadata__":
        raise ValueError(
            f"{where}: dict keys must be non-empty and not '__metadata__' (safetensors "
            f"reserves it); got {key!r}"
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where}: dict keys must be encodable as UTF-8; got {key!r}") from None
    names = (f"{key}.values", f"{key}.offsets") if isinstance(value, RaggedArray) else (key,)
    for name in names:
        if name in owners:
            raise ValueError(
                f"{where}: every entry needs tensor names of its own (a ragged entry 'k' is "
                f"stored as 'k.values' and 'k.offsets'); got {name!r} from both key "
                f"{owners[name]!r} and key {key!r}"
            )
        owners[name] = key
    return names


def _ragged_tensors(x: RaggedArray, names: tuple[str, ...], what: str) -> dict[str, Any]:
    """The host values and offsets of what ``x`` shows (a view's offsets start at 0)."""
    values = _host_array(x.values, what)
    offsets = np.array(x.host_offsets, dtype=np.int64)
    if _backend.is_tensor(values):
        offsets = _backend.torch_module().from_numpy(offsets)
    return {names[0]: values, names[1]: offsets}


def _backend_of(value: Any) -> str:
    return NUMPY if isinstance(value, np.ndarray) else TORCH


def _host_array(a: Any, what: str) -> Any:
    """A contiguous, native-order host copy or view of an array, its dtype checked."""
    where = "save"
    backend = _backend.backend_of(a)
    if backend is None:
        hint = " (np.asarray makes it a 0-d array)" if isinstance(a, np.generic) else ""
        raise TypeError(f"{where}: {what} must be {_KINDS}; got {type(a).__name__}{hint}")
    if backend == NUMPY:
        _checks.plain_ndarray(a, where, what)  # a masked array's mask would be lost
        name = a.dtype.name
        if name not in SAVABLE or name == "bfloat16":
            raise TypeError(
                f"{where}: {what} dtype must be one of {', '.join(SAVABLE)} "
                f"(bfloat16: torch only); got {a.dtype} (numpy)"
            )
        a = _backend.native_order(a)
        if not a.flags.c_contiguous or min(a.strides, default=0) < 0:  # empty ones may be both
            a = a.copy(order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
        return a
    if a.is_nested or a.layout != _backend.torch_module().strided:
        hint = " (RaggedArray.from_nested makes a nested tensor ragged)" if a.is_nested else ""
        raise TypeError(
            f"{where}: {what} must be a dense (strided) tensor; got layout {a.layout}"
            f"{' (nested)' if a.is_nested else ''}{hint}"
        )
    if a.device.type == "meta":
        raise ValueError(f"{where}: {what} must hold data; got a tensor on the meta device")
    name = str(a.dtype).replace("torch.", "")
    if name not in SAVABLE:
        raise TypeError(f"{where}: {what} dtype must be one of {', '.join(SAVABLE)}; got {name}")
    return a.detach().cpu().resolve_neg().contiguous()


def _write(path: str, tensors: dict[str, Any], metadata: dict[str, str]) -> None:
    """One file through safetensors' torch writer when any tensor is torch, else numpy's."""
    if not any(_backend.is_tensor(t) for t in tensors.values()):
        import safetensors.numpy

        writer: Any = safetensors.numpy.save_file
    else:
        import safetensors.torch

        writer, tensors = safetensors.torch.save_file, _unshared(tensors)
    _files.atomic_write(path, lambda tmp: writer(tensors, tmp, metadata=metadata))


def _unshared(tensors: dict[str, Any]) -> dict[str, Any]:
    """Tensors with storages of their own (safetensors refuses shared ones): copies if need be."""
    out, seen = {}, set()
    for name, t in tensors.items():
        if not _backend.is_tensor(t):
            t = _backend.tensor_from_numpy(t)
        storage = t.untyped_storage().data_ptr()
        if t.numel() and storage in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


# ----------------------------------------------------------------------------- loading


def _read_entries(header: dict[str, Any], where: str) -> list[_Entry]:
    """The checked entries of the file's metadata, and its tensor names checked against them."""
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        seen = "no metadata" if not isinstance(meta, dict) else f"metadata keys {sorted(meta)}"
        raise ValueError(
            f"{where}: a raggedarray file must carry the metadata format={FORMAT!r}; got {seen} "
            "(a safetensors file not written by raggedarray.save?)"
        )
    version = meta.get("format_version")
    if version == FORMAT_VERSION:
        item_shape = _json(meta.get("item_shape"))
        entries = [_ragged_entry(None, meta, item_shape, ("values", "offsets"), where)]
    elif version == DICT_VERSION:
        entries = _dict_entries(meta.get("entries"), where)
    else:
        raise ValueError(
            f"{where}: format_version must be {FORMAT_VERSION!r} or {DICT_VERSION!r} (a file "
            f"from a newer raggedarray?); got {version!r}"
        )
    names = sorted(k for k in header if k != "__metadata__")
    expected = sorted(name for e in entries for name in e.names)
    if names != expected:
        listed = [repr(name) for name in expected] or ["none"]
        text = ", ".join(listed[:-1]) + " and " * (len(listed) > 1) + listed[-1]
        raise ValueError(f"{where}: the tensors must be {text}; got {names}")
    return entries


def _json(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):  # (nested past Python's stack)
        return None


def _dict_entries(text: Any, where: str) -> list[_Entry]:
    specs = _json(text)
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise ValueError(f"{where}: entries must be a JSON list of objects; got {text!r:.80}")
    entries, keys = [], set()
    for spec in specs:
        key = spec.get("key")
        if not isinstance(key, str) or not key or key in keys:
            raise ValueError(
                f"{where}: every entry must have its own non-empty str key; got {key!r}"
            )
        keys.add(key)
        if spec.get("kind") == "ragged":
            names = (f"{key}.values", f"{key}.offsets")
            entries.append(_ragged_entry(key, spec, spec.get("item_shape"), names, where))
        elif spec.get("kind") == "array":
            entries.append(_Entry(key, None, _backend_name(spec, where), (), (key,)))
        else:
            raise ValueError(
                f"{where}: entry {key!r} must be of kind 'ragged' or 'array'; "
                f"got {spec.get('kind')!r}"
            )
    return entries


def _backend_name(spec: dict[str, Any], where: str) -> str:
    backend = spec.get("backend")
    if backend not in (NUMPY, TORCH):
        raise ValueError(f"{where}: backend must be 'numpy' or 'torch'; got {backend!r}")
    return backend


def _ragged_entry(
    key: str | None, spec: dict[str, Any], item_shape: Any, names: tuple[str, ...], where: str
) -> _Entry:
    name = spec.get("class")
    cls = _CLASSES.get(name) if isinstance(name, str) else None  # (a forged list: unhashable)
    if cls is None:
        raise ValueError(
            f"{where}: class must be one of {sorted(_CLASSES)}; got {spec.get('class')!r}"
        )
    backend = _backend_name(spec, where)
    if not isinstance(item_shape, list) or not all(_files.is_size(d) for d in item_shape):
        raise ValueError(
            f"{where}: item_shape must be a JSON list of sizes; got {spec.get('item_shape')!r}"
        )
    return _Entry(key, cls, backend, tuple(item_shape), names)


def _load_entry(file: tuple[BinaryIO, Any, dict[str, Any], int, int], e: _Entry, where: str) -> Any:
    f, mapped, header, data_start, data_size = file
    code, shape, begin = _files.spec(header, e.names[0], data_size, where)
    if e.backend == NUMPY and code == "BF16":
        raise ValueError(f"{where}: numpy values cannot be bfloat16; got dtype BF16")
    if e.cls is None:
        array = _files.read(f, mapped, data_start + begin, shape, np.dtype(DTYPES[code][0]), where)
        return _as_backend(array, code, e.backend, mapped)
    off_code, off_shape, off_begin = _files.spec(header, e.names[1], data_size, where)
    if off_code != "I64" or len(off_shape) != 1 or off_shape[0] < 1:
        raise ValueError(
            f"{where}: offsets must be a 1-D int64 tensor with at least one entry; "
            f"got dtype {off_code} and shape {off_shape}"
        )
    if len(shape) < 1 or shape[1:] != e.item_shape:
        raise ValueError(
            f"{where}: values must have shape (N, *item_shape) with item_shape={e.item_shape} "
            f"from the metadata; got shape {shape}"
        )
    if e.cls._item_ndim is not None and len(e.item_shape) != e.cls._item_ndim:
        raise ValueError(
            f"{where}: a {e.cls.__name__} has items of {e.cls._item_ndim} dims; "
            f"got item_shape {e.item_shape}"
        )
    host = _files.read(f, None, data_start + off_begin, off_shape, np.dtype("<i8"), where)
    _offsets.validate(host, shape[0], where)
    values = _files.read(f, mapped, data_start + begin, shape, np.dtype(DTYPES[code][0]), where)
    values = _as_backend(values, code, e.backend, mapped)
    return e.cls._make(values, None, host.astype(np.int64, copy=False))


def _as_backend(array: np.ndarray, code: str, backend: str, mapped: Any) -> Any:
    """A host array read from the file as the backend it was saved from."""
    if backend == TORCH:
        torch = _backend.torch_module()
        tensor = torch.from_numpy(array)  # writable: owned memory or copy-on-write pages
        return tensor.view(torch.bfloat16) if code == "BF16" else tensor
    if mapped is not None:
        array.flags.writeable = False
    return array
