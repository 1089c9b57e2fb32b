"""Safetensors files at the byte level: atomic writes, the header, tensor extents, reads.

Nothing here knows about ragged arrays; ``io`` builds ``save`` and ``load`` on these pieces.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import stat
import struct
from typing import Any, BinaryIO

import numpy as np

MAX_HEADER = 100_000_000  # the largest header safetensors itself accepts

# safetensors dtype code -> (little-endian numpy storage dtype, torch dtype name). bfloat16 is
# stored as uint16 on the host and reinterpreted by torch; numpy values cannot be bfloat16.
DTYPES = {
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
SAVABLE = sorted(name for _, name in DTYPES.values())


def fspath(path: Any, where: str) -> str:
    try:
        text = os.fspath(path)
    except TypeError:
        text = None
    if not isinstance(text, str):
        raise TypeError(f"{where}: path must be a str or os.PathLike; got {type(path).__name__}")
    if "\0" in text:  # (the OS would refuse it with a bare "embedded null byte")
        raise ValueError(f"{where}: path must not contain a NUL character; got {text!r}")
    return text


def check_regular(path: str, where: str) -> None:
    """A ``ValueError`` unless ``path`` is a regular file.

    A missing path stays ``FileNotFoundError``; a directory cannot be read, and a FIFO
    would block ``open``.
    """
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return
    kind = "directory" if stat.S_ISDIR(mode) else "a special file (device, FIFO or socket)"
    raise ValueError(f"{where}: path must be a file; got {kind} {path!r}")


def atomic_write(path: str, write: Any) -> None:
    """Run ``write(tmp)`` on a new file beside ``path``, flush it to disk, rename it to ``path``.

    A symbolic link is followed: the file it names is replaced (as ``open(path, "wb")``
    writes through it), and the link stays. An existing path that is not a regular file (a
    directory, a device such as ``/dev/null``, a FIFO, a socket) is refused, never replaced.
    The file gets the mode of the file it replaces, else the usual ``0o666`` less the umask.
    """
    target = _file_to_replace(path)
    folder, name = os.path.split(target)
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # honours the umask
    except OSError as err:  # name the user's path, not the temporary file's
        raise type(err)(
            err.errno, f"save: the folder of path must exist and be writable; got {path!r}", path
        ) from None
    try:
        try:
            mode = os.stat(target).st_mode
        except FileNotFoundError:
            mode = os.stat(tmp).st_mode
        write(tmp)
        with open(tmp, "rb+") as f:  # (before the mode, which may forbid reading or writing)
            os.fsync(f.fileno())
        os.chmod(tmp, mode & 0o7777)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _file_to_replace(path: str) -> str:
    """The absolute path ``save`` writes: ``path`` with its symbolic links followed."""
    if not path or path.endswith((os.sep, "/")) or os.path.isdir(path):
        kind = "an empty path" if not path else "the directory" if os.path.isdir(path) else ""
        kind = kind or "a path that ends in a separator (a folder's)"
        raise ValueError(f"save: path must name a file; got {kind} {path!r}")
    target = os.path.realpath(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    if not stat.S_ISREG(mode):  # /dev/null, a FIFO: replacing it would destroy it
        raise ValueError(
            f"save: path must be a regular file or a new name; got a special file (device, "
            f"FIFO or socket) {path!r}"
        )
    return target


def read_header(f: BinaryIO, size: int, where: str) -> tuple[dict[str, Any], int]:
    """The parsed JSON header and where the data starts, with the gross structure checked."""
    if size < 8:
        raise ValueError(
            f"{where}: a safetensors file starts with an 8-byte header length; "
            f"got a file of {size} bytes (empty or truncated)"
        )
    (length,) = struct.unpack("<Q", f.read(8))
    if length > min(size - 8, MAX_HEADER):
        raise ValueError(
            f"{where}: the header length field must fit in the file ({size - 8} bytes follow it); "
            f"got {length} (truncated, or not a safetensors file)"
        )
    raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except RecursionError:  # arrays nested past Python's stack
        raise ValueError(
            f"{where}: the header must be safetensors' JSON; got one nested too deep to read "
            "(corrupt, or not a safetensors file)"
        ) from None
    except ValueError as err:  # UnicodeDecodeError, JSONDecodeError
        raise ValueError(
            f"{where}: the header must be UTF-8 JSON; got undecodable bytes ({err}) "
            "(corrupt, or not a safetensors file)"
        ) from None
    if not isinstance(header, dict):
        raise ValueError(f"{where}: the header must be a JSON object; got {type(header).__name__}")
    return header, 8 + length


def check_with_safetensors(path: str, where: str) -> None:
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


def is_size(d: Any) -> bool:
    return isinstance(d, int) and not isinstance(d, bool) and d >= 0


def spec(header: dict[str, Any], name: str, data_size: int, where: str) -> tuple[str, tuple, int]:
    """``(dtype code, shape, first byte)`` of a tensor, checked to lie in the data section."""
    entry = header[name]
    try:
        code, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
        ok = code in DTYPES and all(is_size(d) for d in (*shape, begin, end))
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"{where}: tensor {name!r} must have a dtype among {sorted(DTYPES)}, a shape and "
            f"data_offsets; got {entry!r}"
        )
    itemsize = np.dtype(DTYPES[code][0]).itemsize
    if math.prod(d for d in shape if d) * itemsize >= 2**63:  # numpy counts every dim
        raise ValueError(
            f"{where}: tensor {name!r} must have a shape an array can take (under 2**63 bytes "
            f"over its nonzero dims); got shape {shape} of dtype {code}"
        )
    nbytes = math.prod(shape) * itemsize
    if not begin <= end <= data_size or end - begin != nbytes:
        raise ValueError(
            f"{where}: tensor {name!r} of shape {shape} and dtype {code} must fill bytes "
            f"{begin}..{begin + nbytes} of a data section of {data_size} bytes; "
            f"got data_offsets [{begin}, {end}]"
        )
    return code, shape, begin


def read(
    f: BinaryIO, mapped: Any, start: int, shape: tuple, dtype: np.dtype, where: str
) -> np.ndarray:
    """The array at byte ``start`` of the file: read into new memory, or viewed in ``mapped``."""
    count = int(np.prod(shape, dtype=np.int64))
    if mapped is not None:
        out = np.frombuffer(mapped, dtype, count, start).reshape(shape)
    else:
        out = np.empty(shape, dtype)
        f.seek(start)
        if f.readinto(out.reshape(-1).view(np.uint8)) != out.nbytes:
            raise ValueError(
                f"{where}: the file must hold {out.nbytes} bytes at {start}; got fewer"
            )
    if dtype.kind == "b":
        check_bools(out, start, where)
    return out


def check_bools(array: np.ndarray, start: int, where: str) -> None:
    """A ``ValueError`` unless every byte of a bool array is 0 or 1.

    One vectorised pass (a max over the bytes, no temporary array); any other byte is a
    corrupt file, and numpy would hand it out as a bool that is neither True nor False.
    """
    raw = array.reshape(-1).view(np.uint8)
    if raw.size == 0 or raw.max() <= 1:
        return
    k = int(np.flatnonzero(raw > 1)[0])
    raise ValueError(
        f"{where}: a bool tensor must hold only bytes 0 and 1; got byte {int(raw[k])} at "
        f"item {k} (byte {start + k} of the file; corrupt)"
    )
