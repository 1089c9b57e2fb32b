"""``Partition``: the segments of one offsets vector, with every derived index built once.

A ragged array is its values plus a partition. Every result that keeps the offsets (``map``,
``softmax``, a dtype or device move, an elementwise op) shares the partition of its input,
so lengths, segment ids, empty-segment masks and the kernels' index structures are built
once per offsets and per device, never again after a rewrap (TensorFlow's ``RowPartition``
plays the same part for ``tf.RaggedTensor``).

Invariants::

    host        : (m + 1,) read-only int64 numpy offsets, validated; or None when only a
                  device knows them (``ra.segment_*`` called with GPU offsets)
    num_items   : N == host[-1]
    num_segments: m
    on each device, the offsets are the host ones (uploaded once, without blocking)

Nothing here imports torch at module import; kernels ask for torch-side structures with a
``torch.device`` (``ids(device)``, ``csr(dtype)``, ...).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from . import _backend, _offsets

# Items summed one after another before the partial sums are combined in float64: a float32
# sum of up to this many items has a relative error below ~6e-7 whatever the segment length
# (measured against float64 on 10^6 items of 0.1; 128 gave 9.7e-7, 256 gave 2.4e-6).
BLOCK = 64


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``.

    Its memory owner stays writable: torch's dynamo sets ``flags.writeable = True`` on the
    read-only arrays a compiled function reads (and fails where numpy refuses), so a user
    can do so too, deliberately, as with any numpy view of writable memory.
    """
    view = a.view()
    view.flags.writeable = False
    return view


def _unchanged(kept: Any, index: Any, name: str) -> bool:
    """Whether a handed-out CPU copy of the offsets or lengths still equals ``index``.

    GPU copies and segment ids (N values) are trusted to their version counter.
    """
    if kept.device.type != "cpu" or name == "ids":
        return True
    if kept.shape != index.shape or kept.dtype != index.dtype:
        return False
    try:
        return bool(_backend.torch_module().equal(kept, index))
    except (RuntimeError, AssertionError):  # a mode without data (FakeTensorMode asserts)
        return True


class Partition:
    """The segments of one offsets vector, with derived indices cached lazily.

    Args:
        host: validated ``(m + 1,)`` int64 host offsets, or None when only ``offsets`` (on a
            device) knows them.
        offsets: the same offsets as a tensor already on a device, kept to avoid an upload.
        num_items: ``N``; read from ``host`` when it is given.
    """

    __slots__ = ("_cache", "host", "num_items", "num_segments", "tensor")

    def __init__(
        self, host: np.ndarray | None, *, offsets: Any = None, num_items: int | None = None
    ) -> None:
        self._cache: dict[Any, Any] = {}
        if host is not None:
            if offsets is None and host.flags.writeable and "torch" in sys.modules:
                # the same memory, for graphs
                offsets = _outside_inference(lambda: _backend.tensor_from_numpy(host))
            host = host if not host.flags.writeable else _read_only(host)
            self.num_items = int(host[-1])
            self.num_segments = host.shape[0] - 1
        else:
            self.num_items = num_items  # type: ignore[assignment]  # symbolic in a graph
            self.num_segments = offsets.shape[0] - 1
        self.host = host
        # The offsets as a tensor (where they were given, or the host memory seen by torch):
        # what a compiled graph takes as its input, since it must not read numpy arrays.
        self.tensor = offsets
        if offsets is not None:
            self._cache[("offsets", str(offsets.device))] = offsets

    def in_graph(self, values: Any, num_items: Any = None) -> Partition:
        """This partition as a ``torch.compile`` graph sees it, for ``values``.

        Built from the offsets tensor alone, with ``N`` read from ``values.shape[0]`` (or
        ``num_items``): every index is derived inside the graph with a known output size,
        nothing is read on the host or cached across calls, and the sizes stay symbolic,
        so batches with other ``m`` and ``N`` reuse the graph instead of recompiling.
        """
        offsets = self.tensor
        if offsets is None:  # made before torch was imported
            offsets = _backend.tensor_from_numpy(self.host)  # type: ignore[arg-type]
        count = values.shape[0] if num_items is None else num_items
        return Partition(None, offsets=offsets.to(values.device), num_items=count)

    # ------------------------------------------------------------------------- host side

    @property
    def host_lengths(self) -> np.ndarray:
        """Read-only ``(m,)`` int64 host lengths."""
        lengths = self._cache.get("host_lengths")
        if lengths is None:
            lengths = self._cache["host_lengths"] = _read_only(_offsets.lengths(self.host))
        return lengths

    @property
    def max_length(self) -> int:
        """Length of the longest segment (0 without segments); read once, then cached.

        Every floating sum asks (``blocked``, ``wide``), so it is not recomputed per call.
        """
        longest = self._cache.get("max_length")
        if longest is None:
            longest = int(self.host_lengths.max()) if self.num_segments else 0
            self._cache["max_length"] = longest
        return longest

    @property
    def min_length(self) -> int:
        """Length of the shortest segment (0 without segments)."""
        return int(self.host_lengths.min()) if self.num_segments else 0

    @property
    def host_segment_ids(self) -> np.ndarray:
        """Read-only ``(N,)`` int64 host segment id of every item."""
        ids = self._cache.get("host_ids")
        if ids is None:
            ids = self._cache["host_ids"] = _read_only(_offsets.segment_ids(self.host))
        return ids

    # ----------------------------------------------------------------- the values' side

    def offsets_like(self, values: Any) -> Any:
        """The offsets in the backend and on the device of ``values``."""
        if not _backend.is_tensor(values):
            return self.host
        return self.offsets(values.device)

    def lengths_like(self, values: Any) -> Any:
        """``(m,)`` lengths in the backend and on the device of ``values``."""
        if not _backend.is_tensor(values):
            return self.host_lengths
        return self.lengths(values.device)

    def segment_ids_like(self, values: Any) -> Any:
        """``(N,)`` segment ids in the backend and on the device of ``values``."""
        if not _backend.is_tensor(values):
            return self.host_segment_ids
        return self.ids(values.device)

    def handed_out(self, name: str, index: Any) -> Any:
        """``index`` (this partition's ``offsets``, ``lengths`` or ``ids``) as the user gets it.

        numpy metadata is read-only and handed out as it is. torch cannot mark a tensor
        read-only, and the partition's own tensors share the host memory (CPU) and every
        ragged array over these offsets, so the user gets a copy: one per device, kept and
        handed out again (``x.offsets is x.offsets``, so nested tensors built from it share
        one ragged size) until an in-place write bumps its version counter, after which the
        next access makes a fresh one. Writing into what was handed out changes nothing
        here. Inside a compiled graph it is a plain copy.

        Writes into the offsets or lengths that bypass the version counter (through
        ``.numpy()``, DLPack or ``.data``) are caught on the CPU by comparing the kept copy
        with the partition's own (O(m), ~3 us); on a GPU that comparison would wait for the
        device, and for segment ids it would read N values at every access, so there only
        torch's in-place operations are seen.
        """
        if not _backend.is_tensor(index):
            return index
        if _backend.compiling():
            return index.clone()
        key = ("handed out", name, index.device)
        kept = self._cache.get(key)
        if kept is not None and kept[0]._version == kept[1] and _unchanged(kept[0], index, name):
            return kept[0]
        copy = _outside_inference(index.clone)
        self._cache[key] = (copy, copy._version)
        return copy

    # --------------------------------------------------------------------- torch side

    def _get(self, key: Any, build: Any) -> Any:
        if _backend.compiling():  # a graph keeps no tensor of its own beyond one call
            return build()
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = _outside_inference(build)
        return value

    def offsets(self, device: Any) -> Any:
        """``(m + 1,)`` int64 offsets tensor on ``device`` (uploaded once, no sync)."""
        key = ("offsets", str(device))
        value = self._cache.get(key)
        if value is None:
            torch = _backend.torch_module()
            like = torch.empty(0, device=device)
            upload = _outside_inference(lambda: _backend.upload(self.host, like))
            value = self._cache[key] = upload
        return value

    def lengths(self, device: Any) -> Any:
        """``(m,)`` int64 lengths on ``device``."""

        def build() -> Any:
            if self.host is not None:
                return _backend.upload(self.host_lengths, _like(device))
            offsets = self.offsets(device)
            return offsets[1:] - offsets[:-1]

        return self._get(("lengths", str(device)), build)

    def ids(self, device: Any) -> Any:
        """``(N,)`` int64 segment id of every item on ``device`` (built there, no sync)."""

        def build() -> Any:
            torch = _backend.torch_module()
            return torch.repeat_interleave(
                torch.arange(self.num_segments, device=device),
                self.lengths(device),
                output_size=self.num_items,
            )

        return self._get(("ids", str(device)), build)

    def empty(self, device: Any) -> Any | None:
        """``(m,)`` bool mask of empty segments, or None when the host knows there are none."""

        def build() -> Any | None:
            if self.host is None or self.min_length == 0:
                return self.lengths(device) == 0
            return None

        key = ("empty", str(device))
        if _backend.compiling():
            return build()
        if key not in self._cache:
            self._cache[key] = _outside_inference(build)
        return self._cache[key]

    def counts(self, dtype: Any, device: Any) -> Any:
        """``(m, 1)`` lengths as ``dtype``, clamped to at least 1 (safe to divide by)."""
        return self._get(
            ("counts", dtype, str(device)),
            lambda: self.lengths(device).clamp(min=1).to(dtype).unsqueeze(1),
        )

    def blocked(self) -> bool:
        """Whether sums need two levels (some segment may be longer than ``BLOCK``)."""
        return self.host is None or self.max_length > BLOCK

    def blocks(self, device: Any) -> tuple[Any, Any, int]:
        """Blocks of at most ``BLOCK`` items, each inside one segment, for accurate sums.

        Item ``j`` of segment ``s`` goes to block ``j // BLOCK + s``: the label grows with
        ``j``, items share it exactly when they share both the global block and the segment,
        and it stays below ``P = ceil(N / BLOCK) + m``. Returns ``(item_block, block_segment,
        P)`` where ``block_segment[p]`` is the segment of block ``p``, or ``m`` for labels
        that no item uses (a spare row the caller drops). Built on the device, no sync.
        """

        def build() -> tuple[Any, Any, int]:
            torch = _backend.torch_module()
            ids = self.ids(device)
            num_blocks = -(-self.num_items // BLOCK) + self.num_segments
            item_block = torch.arange(self.num_items, device=device)
            # "trunc" equals "floor" here (no negative index) and sidesteps an inductor bug:
            # its vectorised floor division of an int64 arange gave garbage on CPU (2.13)
            item_block = torch.div(item_block, BLOCK, rounding_mode="trunc").add_(ids)
            block_segment = torch.full((num_blocks,), self.num_segments, device=device)
            block_segment.scatter_(0, item_block, ids)
            return item_block, block_segment, num_blocks

        return self._get(("blocks", str(device)), build)

    def block_runs(self, device: Any) -> tuple[Any, Any, int]:
        """The blocks of [`blocks`][raggedarray._partition.Partition.blocks] as runs, on ``device``.

        Returns ``(block_lengths, block_offsets, used)``: the ``(P,)`` number of items of
        every block label (0 for the spare ones), and ``(m + 1,)`` offsets into the labels
        such that segment ``s`` owns labels ``block_offsets[s]`` to ``block_offsets[s + 1]``
        (its own blocks, then spare labels, whose sums are 0); ``used`` is the last offset.
        Labels grow with the items, so ``torch.segment_reduce`` runs over both levels.
        """

        def build() -> tuple[Any, Any, int]:
            torch = _backend.torch_module()
            item_block, _, num_blocks = self.blocks(device)
            lengths = torch.zeros(num_blocks, dtype=torch.int64, device=device)
            lengths.index_add_(0, item_block, torch.ones_like(item_block))
            # segment s's first label is start_s // BLOCK + s (see blocks)
            labels = torch.div(self.offsets(device), BLOCK, rounding_mode="trunc")
            labels += torch.arange(self.num_segments + 1, device=device)
            return lengths, labels, self.num_items // BLOCK + self.num_segments

        return self._get(("block runs", str(device)), build)

    def csr(self, dtype: Any) -> Any:
        """The CPU ``(m, N)`` CSR matrix of ones of ``dtype`` (one 1 per item)."""

        def build() -> Any:
            return _csr(self.offsets("cpu"), self.num_items, dtype)

        return self._get(("csr", dtype), build)

    def wide(self) -> bool:
        """Whether a segment may span more than ``BLOCK`` blocks (its blocks need float64).

        Up to ``BLOCK`` blocks (``BLOCK**2`` items) the block sums add up in float32 within
        ~9e-7 relative (measured on 4 096 items of 0.1, the worst case); longer segments add
        their blocks in float64.
        """
        return self.host is None or self.max_length > BLOCK * BLOCK

    def block_csr(self, dtype: Any) -> tuple[Any, Any]:
        """A CPU CSR matrix summing items into blocks, and the segment of each extra block.

        Row ``s < m`` of the ``(m + extra, N)`` matrix sums the first ``BLOCK`` items of
        segment ``s``; the ``extra`` rows after them sum the following runs of ``BLOCK``
        items of the longer segments, in order. So the product's first ``m`` rows are
        already the sums of every segment of at most ``BLOCK`` items, and the extra rows
        are added onto their segments (second element, ``(extra,)`` int64) by one
        ``index_add_`` over a few rows, where a second sparse product over all blocks cost a
        fixed ~12 µs.
        """

        def build() -> tuple[Any, Any]:
            torch = _backend.torch_module()
            lengths = self.host_lengths
            position = _offsets.positions(self.host)
            head = np.minimum(lengths, BLOCK)
            rest = lengths - head
            runs = -(-rest // BLOCK)  # extra blocks of each segment
            run_lengths = np.full(int(runs.sum()), BLOCK, dtype=np.int64)
            ends = np.cumsum(runs)[runs > 0] - 1
            run_lengths[ends] = rest[runs > 0] - (runs[runs > 0] - 1) * BLOCK
            crow = np.concatenate([[0], np.cumsum(head), head.sum() + np.cumsum(run_lengths)])
            columns = np.concatenate(
                [np.flatnonzero(position < BLOCK), np.flatnonzero(position >= BLOCK)]
            )
            items = _csr(torch.from_numpy(crow), self.num_items, dtype, columns=columns)
            extra = np.repeat(np.arange(self.num_segments, dtype=np.int64), runs)
            return items, torch.from_numpy(extra)

        return self._get(("block_csr", dtype), build)


def _outside_inference(build: Any) -> Any:
    """``build()`` with ``torch.inference_mode`` off, where it is on.

    The partition's tensors are kept and shared by every array over the same offsets;
    built as inference tensors, they would fail every later use under autograd (saved for
    backward, or a version counter read) once the inference block has ended.
    """
    torch = _backend.loaded_torch()
    if torch is not None and torch.is_inference_mode_enabled():
        with torch.inference_mode(False):
            return build()
    return build()


def _like(device: Any) -> Any:
    return _backend.torch_module().empty(0, device=device)


def _csr(crow: Any, num_columns: int, dtype: Any, weights: Any = None, columns: Any = None) -> Any:
    """A CSR matrix of ``num_columns`` columns with rows ``crow``.

    Row ``r`` holds the columns ``columns[crow[r]:crow[r + 1]]`` (host int64; by default
    consecutive, ``0..num_columns - 1``). Its entries are ones, or ``weights`` (one per
    entry) where given.
    """
    import warnings

    torch = _backend.torch_module()
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            crow,
            torch.arange(num_columns) if columns is None else torch.from_numpy(columns),
            torch.ones(num_columns, dtype=dtype) if weights is None else weights.to(dtype),
            size=(crow.shape[0] - 1, num_columns),
            check_invariants=False,
        )
