"""Ragged arrays in files: ``save`` and ``load`` as safetensors, with optional memory mapping.

A file is an ordinary safetensors file (any safetensors reader opens it; no pickle)::

    tensors   "values"   (N, *item_shape)   the values' dtype, only the N items x shows
              "offsets"  (m + 1,) int64     starting at 0
    metadata  format="raggedarray", format_version="1",
              class="RaggedArray" | "RaggedImageBatch", backend="numpy" | "torch",
              item_shape="[C, H, W]" (JSON)

``load`` checks everything before it returns: the header, the marker, the tensors' dtypes and
shapes and the offsets invariants. A truncated, corrupt, empty or foreign file raises
``ValueError``; a missing file raises ``FileNotFoundError``.
"""

from __future__ import annotations

import contextlib
import json
import mmap as _mmap
import os
import secrets
import struct
from typing import Any, BinaryIO

import numpy as np

from . import _backend, _offsets
from ._backend import NUMPY, TORCH
from .image import RaggedImageBatch
from .ragged import RaggedArray

FORMAT = "raggedarray"
FORMAT_VERSION = "1"
_CLASSES: dict[str, type[RaggedArray]] = {c.__name__: c for c in (RaggedArray, RaggedImageBatch)}
_MAX_HEADER = 100_000_000  # the largest header safetensors itself accepts

# safetensors dtype code -> (little-endian numpy storage dtype, torch dtype name). bfloat16 is
# stored as uint16 on the host and reinterpreted by torch; numpy values cannot be bfloat16.
_DTYPES = {
    "F64": ("<f8", "float64"),
    "F32": ("<f4", "float32"),
    "F16": ("<f2", "float16"),
    "BF16": ("<u2", "bfloat16"),
    "I64": ("<i8", "int64"),
    "I32": ("<i4", "int32"),
    "I16": ("<i2", "int16"),
    "I8": ("|i1", "int8"),
    "U64": ("<u8", "uint64"),
    "U32": ("<u4", "uint32"),
    "U16": ("<u2", "uint16"),
    "U8": ("|u1", "uint8"),
    "BOOL": ("|b1", "bool"),
}
_SAVABLE = sorted(name for _, name in _DTYPES.values())


def save(path: str | os.PathLike[str], x: RaggedArray) -> None:
    """Write ``x`` to a safetensors file at ``path``, atomically.

    Only what ``x`` shows is written: a slice or gathered view saves its own segments, with
    offsets starting at 0. Torch values on any device are copied to the host (values that
    require grad are detached). The file is written to a temporary file beside ``path`` and
    renamed over it, so ``path`` never holds a half-written file: after a failure it still
    holds what it held before (a memory-mapped reader of the old file keeps seeing the old file).

    Args:
        path: file to write (``str`` or ``os.PathLike``); replaced if it exists.
        x: a ``RaggedArray`` or ``RaggedImageBatch`` of numpy or torch values of a dtype
            safetensors stores: float16/32/64, bfloat16 (torch), (u)int8..64, bool.

    Raises:
        TypeError: ``x`` is not a ragged array, ``path`` is not a path, or the dtype cannot
            be stored.

    Examples:
        >>> import os, tempfile
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> x = ra.RaggedArray.from_lengths(np.arange(12.0).reshape(6, 2), [2, 0, 4])
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "x.safetensors")
        ...     ra.save(path, x[1:])  # a view: only its two segments and four items are written
        ...     y = ra.load(path)
        >>> y.offsets, y.values.shape, y.equal(x[1:])
        (array([0, 0, 4]), (4, 2), True)
    """
    where = "save"
    if not isinstance(x, RaggedArray):
        raise TypeError(
            f"{where}: x must be a RaggedArray or RaggedImageBatch; got {type(x).__name__}"
        )
    path = _fspath(path, where)
    values = x.values
    dtype_name = str(values.dtype).replace("torch.", "")
    if dtype_name not in _SAVABLE or (x.backend == NUMPY and dtype_name == "bfloat16"):
        raise TypeError(
            f"{where}: values dtype must be one of {', '.join(_SAVABLE)}; got {dtype_name}"
        )
    offsets = np.array(x.host_offsets, dtype=np.int64)  # a view's offsets already start at 0
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": "RaggedImageBatch" if isinstance(x, RaggedImageBatch) else "RaggedArray",
        "backend": x.backend,
        "item_shape": json.dumps(list(x.item_shape)),
    }
    if x.backend == TORCH:
        import safetensors.torch

        torch = _backend.torch_module()
        values = values.detach().cpu().contiguous()
        tensors = {"values": values, "offsets": torch.from_numpy(offsets)}
        writer = safetensors.torch.save_file
    else:
        import safetensors.numpy

        tensors = {"values": np.ascontiguousarray(values), "offsets": offsets}
        writer = safetensors.numpy.save_file
    _atomic_write(path, lambda tmp: writer(tensors, tmp, metadata=metadata))


def load(path: str | os.PathLike[str], *, mmap: bool = False) -> RaggedArray:
    """Read a ragged array written by [`save`][raggedarray.save], as the class and backend saved.

    Numpy files give numpy values, torch files give CPU tensors. With ``mmap=False`` the values
    are read into new, writable memory. With ``mmap=True`` the file is memory-mapped
    copy-on-write and the values are a zero-copy view of the mapping: nothing is read until it
    is touched, so files larger than memory work. Writes can never reach the file: numpy values
    are read-only, and torch values (torch has no read-only tensors) write into private
    copy-on-write pages that are dropped with the array.

    Args:
        path: the file (``str`` or ``os.PathLike``).
        mmap: map the values instead of reading them. The offsets are always read.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        TypeError: ``path`` is not a path or ``mmap`` is not a bool.
        ValueError: the file is empty, truncated or corrupt, is not a safetensors file, or is a
            safetensors file that ``save`` did not write; the message says what is wrong.

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
        ...     del y  # release the mapping before the folder goes
        RaggedImageBatch torch [2, 1] True
    """
    path = _fspath(path, "load")
    where = f"load({path!r})"
    if not isinstance(mmap, bool):
        raise TypeError(f"load: mmap must be a bool; got {type(mmap).__name__}")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        header, data_start = _read_header(f, size, where)
        _check_with_safetensors(path, where)
        cls, backend, item_shape = _read_metadata(header, where)
        data_size = size - data_start
        off_code, off_shape, off_begin = _spec(header, "offsets", data_size, where)
        if off_code != "I64" or len(off_shape) != 1 or off_shape[0] < 1:
            raise ValueError(
                f"{where}: offsets must be a 1-D int64 tensor with at least one entry; "
                f"got dtype {off_code} and shape {off_shape}"
            )
        code, shape, begin = _spec(header, "values", data_size, where)
        if len(shape) < 1 or shape[1:] != item_shape:
            raise ValueError(
                f"{where}: values must have shape (N, *item_shape) with item_shape={item_shape} "
                f"from the metadata; got shape {shape}"
            )
        if cls._item_ndim is not None and len(item_shape) != cls._item_ndim:
            raise ValueError(
                f"{where}: a {cls.__name__} has items of {cls._item_ndim} dims; "
                f"got item_shape {item_shape}"
            )
        if backend == NUMPY and code == "BF16":
            raise ValueError(f"{where}: numpy values cannot be bfloat16; got dtype BF16")
        host = _read(f, None, data_start + off_begin, off_shape, np.dtype("<i8"), where)
        _offsets.validate(host, shape[0], where)
        mapped = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_COPY) if mmap else None
        values = _read(f, mapped, data_start + begin, shape, np.dtype(_DTYPES[code][0]), where)
    if backend == TORCH:
        torch = _backend.torch_module()
        values = torch.from_numpy(values)  # writable: owned memory or copy-on-write pages
        if code == "BF16":
            values = values.view(torch.bfloat16)
    elif mapped is not None:
        values.flags.writeable = False
    return cls._make(values, None, host.astype(np.int64, copy=False))


# ---------------------------------------------------------------------------- helpers


def _fspath(path: Any, where: str) -> str:
    try:
        text = os.fspath(path)
    except TypeError:
        text = None
    if not isinstance(text, str):
        raise TypeError(f"{where}: path must be a str or os.PathLike; got {type(path).__name__}")
    return text


def _atomic_write(path: str, write: Any) -> None:
    """Run ``write(tmp)`` on a new file beside ``path``, flush it to disk, rename it to ``path``.

    The file gets the mode of the file it replaces, else the usual ``0o666`` less the umask.
    """
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # honours the umask
    try:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = os.stat(tmp).st_mode
        write(tmp)
        os.chmod(tmp, mode & 0o7777)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _read_header(f: BinaryIO, size: int, where: str) -> tuple[dict[str, Any], int]:
    """The parsed JSON header and where the data starts, with the gross structure checked."""
    if size < 8:
        raise ValueError(
            f"{where}: a safetensors file starts with an 8-byte header length; "
            f"got a file of {size} bytes (empty or truncated)"
        )
    (length,) = struct.unpack("<Q", f.read(8))
    if length > min(size - 8, _MAX_HEADER):
        raise ValueError(
            f"{where}: the header length field must fit in the file ({size - 8} bytes follow it); "
            f"got {length} (truncated, or not a safetensors file)"
        )
    raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except ValueError as err:  # UnicodeDecodeError, JSONDecodeError
        raise ValueError(
            f"{where}: the header must be UTF-8 JSON; got undecodable bytes ({err}) "
            "(corrupt, or not a safetensors file)"
        ) from None
    if not isinstance(header, dict):
        raise ValueError(f"{where}: the header must be a JSON object; got {type(header).__name__}")
    return header, 8 + length


def _check_with_safetensors(path: str, where: str) -> None:
    """Let safetensors itself judge the file (header, tensor extents, coverage)."""
    import safetensors

    try:
        with safetensors.safe_open(path, framework="np") as f:
            f.metadata()
    except OSError:
        raise
    except Exception as err:  # SafetensorError and whatever a version raises for bad files
        raise ValueError(
            f"{where}: the file must be valid safetensors; got {type(err).__name__}: {err}"
        ) from err


def _read_metadata(header: dict[str, Any], where: str) -> tuple[type[RaggedArray], str, tuple]:
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        seen = "no metadata" if not isinstance(meta, dict) else f"metadata keys {sorted(meta)}"
        raise ValueError(
            f"{where}: a raggedarray file must carry the metadata format={FORMAT!r}; got {seen} "
            "(a safetensors file not written by raggedarray.save?)"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{where}: format_version must be {FORMAT_VERSION!r} (a file from a newer "
            f"raggedarray?); got {meta.get('format_version')!r}"
        )
    cls = _CLASSES.get(meta.get("class"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(
            f"{where}: class must be one of {sorted(_CLASSES)}; got {meta.get('class')!r}"
        )
    backend = meta.get("backend")
    if backend not in (NUMPY, TORCH):
        raise ValueError(f"{where}: backend must be 'numpy' or 'torch'; got {backend!r}")
    try:
        item_shape = tuple(json.loads(meta["item_shape"]))
    except (KeyError, TypeError, ValueError):
        item_shape = None
    if item_shape is None or not all(_is_size(d) for d in item_shape):
        raise ValueError(
            f"{where}: item_shape must be a JSON list of sizes; got {meta.get('item_shape')!r}"
        )
    names = sorted(k for k in header if k != "__metadata__")
    if names != ["offsets", "values"]:
        raise ValueError(f"{where}: the tensors must be 'offsets' and 'values'; got {names}")
    return cls, backend, item_shape


def _is_size(d: Any) -> bool:
    return isinstance(d, int) and not isinstance(d, bool) and d >= 0


def _spec(header: dict[str, Any], name: str, data_size: int, where: str) -> tuple[str, tuple, int]:
    """``(dtype code, shape, first byte)`` of a tensor, checked to lie in the data section."""
    entry = header[name]
    try:
        code, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
        ok = code in _DTYPES and all(_is_size(d) for d in (*shape, begin, end))
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"{where}: tensor {name!r} must have a dtype among {sorted(_DTYPES)}, a shape and "
            f"data_offsets; got {entry!r}"
        )
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(_DTYPES[code][0]).itemsize
    if not begin <= end <= data_size or end - begin != nbytes:
        raise ValueError(
            f"{where}: tensor {name!r} of shape {shape} and dtype {code} must fill bytes "
            f"{begin}..{begin + nbytes} of a data section of {data_size} bytes; "
            f"got data_offsets [{begin}, {end}]"
        )
    return code, shape, begin


def _read(
    f: BinaryIO, mapped: Any, start: int, shape: tuple, dtype: np.dtype, where: str
) -> np.ndarray:
    """The array at byte ``start`` of the file: read into new memory, or viewed in ``mapped``."""
    count = int(np.prod(shape, dtype=np.int64))
    if mapped is not None:
        return np.frombuffer(mapped, dtype, count, start).reshape(shape)
    out = np.empty(shape, dtype)
    f.seek(start)
    if f.readinto(out.reshape(-1).view(np.uint8)) != out.nbytes:
        raise ValueError(f"{where}: the file must hold {out.nbytes} bytes at {start}; got fewer")
    return out
