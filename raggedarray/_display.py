"""Interactive display of ragged arrays: ``show``, ``_repr_html_`` and ``str``.

``show`` draws images with matplotlib, ``_repr_html_`` is Jupyter's summary table, and
``str`` gives the values segment by segment, summarised as numpy summarises.

The mixin reads the ragged array's fields (``_values``, ``_host``) and public properties; it
imports nothing from ``ragged.py`` or ``image.py``. matplotlib is imported lazily, only by
``show``, and never through ``pyplot``: figures are built as ``matplotlib.figure.Figure``
objects, so no global pyplot state is created or changed (and no backend is switched).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _backend, _checks, _compare, _offsets
from ._types import IndexLike, RaggedFields, ValuesT

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

# Locations shown by ``show()`` when no ``segments`` are given.
DEFAULT_SHOWN = 8
# Inches per thumbnail in a new figure, and room for the row labels on the left.
_CELL = 1.0
_LABEL = 1.5
# Pixels between tiles of the mosaic drawn into an existing ``ax``.
_GAP = 1


def _import_matplotlib() -> Any:
    try:
        import matplotlib.axes
        import matplotlib.figure
    except ImportError:
        raise ImportError("show() needs matplotlib: pip install 'raggedarray[plot]'") from None
    return matplotlib


class DisplayMethods(RaggedFields[ValuesT]):
    """Mixin giving [`RaggedArray`][raggedarray.RaggedArray] its notebook display."""

    __slots__ = ()

    def show(
        self, segments: IndexLike | None = None, *, max_items: int = 8, ax: Axes | None = None
    ) -> Figure | SubFigure:
        """Draw the images of some locations as a grid of thumbnails; returns the figure.

        One row per location (segment), its first ``max_items`` images along the row. Each
        row is labelled with the location index and its ``n_i``, plus ``+k more`` when the
        row is cut; an empty location gets an empty row with its label.

        Display rules:

        - each image is rescaled to ``[0, 1]`` by its own minimum and maximum (per image,
          so faint and bright images are both visible; intensities are therefore not
          comparable across thumbnails). A constant image is drawn uniformly at its value
          clipped to ``[0, 1]`` (an all-zero image black, an all-True mask white);
          non-finite pixels are drawn black.
        - 1-channel images are drawn in grayscale, 3-channel images as RGB; any other
          channel count shows the first channel in grayscale.
        - bool and integer images are drawn like float ones; torch values may live on any
          device and may require grad. Only the drawn images are copied to the host (one
          gather, one transfer).

        Nothing is shown on screen: call ``plt.show()``, save the figure, or let a notebook
        display the returned figure. No ``pyplot`` state is touched when ``ax`` is None.

        Args:
            segments: which locations to draw: None for the first ``min(m, 8)``, an int, a
                slice, or a list / array / tensor of indices or a boolean mask (as in
                indexing, negative indices count from the end).
            max_items: at most this many images per row (an int >= 1).
            ax: an existing matplotlib ``Axes`` to draw into; the whole grid is then drawn
                as one mosaic image in it, with the row labels as its y tick labels. When
                None, a new ``matplotlib.figure.Figure`` with one small axes per thumbnail
                is created.

        Returns:
            The matplotlib ``Figure`` drawn into (``ax.figure`` when ``ax`` is given).

        Raises:
            TypeError: the array does not hold images (it is not a ``RaggedImageBatch``),
                its dtype is complex, ``max_items`` is not an int, ``segments`` is of the
                wrong kind, or ``ax`` is not a matplotlib ``Axes``.
            ValueError: ``max_items < 1``, or images to draw have no pixels.
            IndexError: a segment index is out of range.
            ImportError: matplotlib is not installed.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> rng = np.random.default_rng(0)
            >>> batch = ra.RaggedImageBatch.from_lengths(rng.random((7, 1, 8, 8)), [3, 0, 4])
            >>> fig = batch.show(max_items=2)
            >>> sum(len(a.images) for a in fig.axes)  # 2 + 0 + 2 thumbnails
            4
            >>> print(fig.axes[0].get_ylabel())
            [0] n=3
            +1 more
            >>> fig.savefig(__import__("io").BytesIO(), format="png")
        """
        where = f"{type(self).__name__}.show"
        mpl = _import_matplotlib()
        if self._item_ndim != 3 or len(self.item_shape) != 3:
            raise TypeError(
                f"{where}: needs a RaggedImageBatch, whose items are (C, H, W) images; got a "
                f"{type(self).__name__} with item_shape {self.item_shape} (3-D items can be "
                "wrapped with ra.RaggedImageBatch(x.values, x.offsets))"
            )
        count = _checks.index_of(max_items)
        if count is None:
            raise TypeError(f"{where}: max_items must be an int; got {type(max_items).__name__}")
        if count < 1:
            raise ValueError(f"{where}: max_items must be >= 1; got {count}")
        max_items = min(count, _checks.INT64_MAX)  # (any more shows every item there is)
        if ax is not None and not isinstance(ax, mpl.axes.Axes):
            raise TypeError(
                f"{where}: ax must be a matplotlib Axes or None; got {type(ax).__name__}"
            )
        dtype = self._values.dtype
        if getattr(dtype, "is_complex", False) or getattr(dtype, "kind", "") == "c":
            raise TypeError(f"{where}: images must be real-valued; got dtype {dtype}")

        rows = _select(segments, len(self), where)
        lengths = self.host_lengths
        counts = np.minimum(lengths[rows], int(max_items)) if rows.size else rows
        thumbs = _host_images(self._values, self._host[rows], counts, where)
        labels = []
        for i, n, k in zip(rows.tolist(), lengths[rows].tolist(), counts.tolist(), strict=True):
            label = f"[{i}] n={n}"
            labels.append(label + (f"\n+{n - k} more" if n > k else ""))
        title = f"{type(self).__name__}: {rows.size} of {len(self)} locations"
        if ax is not None:
            _draw_mosaic(ax, thumbs, counts, labels, title)
            return ax.figure
        return _draw_grid(mpl, thumbs, counts, labels, title)

    def __str__(self) -> str:
        """The values, one segment per row, as ``print`` shows them.

        ``repr(x)`` describes the array without its values (and never reads them); ``str``
        shows them, segment by segment in numpy's format and print options. Past numpy's
        ``threshold`` of elements (or of segments: a million empty ones), only the first and
        last ``edgeitems`` segments are shown, and only those are read (copied to the host
        from another device).

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> print(ra.RaggedArray.from_lengths(np.arange(6.0), [2, 0, 4]))
            [[0. 1.]
             []
             [2. 3. 4. 5.]]
        """
        host = self._host
        m = len(host) - 1
        options = np.get_printoptions()
        rows: list[int | None] = list(range(m))
        edge = options["edgeitems"]
        summarise = max(_size(self), m) > options["threshold"]
        if summarise and m > 2 * edge:
            rows = [*range(edge), None, *range(m - edge, m)]
        # past the threshold every segment is summarised, as numpy summarises the whole
        threshold = 0 if summarise else options["threshold"]
        texts = []
        for i in rows:
            if i is None:
                texts.append("...")
                continue
            segment = _compare.host_array(self._values[int(host[i]) : int(host[i + 1])])
            texts.append(np.array2string(segment, prefix=" ", threshold=threshold))
        return "[" + "\n ".join(texts) + "]"

    def _repr_html_(self) -> str:
        """A small HTML summary table for Jupyter (no images, never syncs a device).

        Shows the class, ``m`` and ``N``, the distribution of ``n_i`` (min, median, mean,
        max and the number of empty segments), the item shape, dtype, device, backend and
        whether the values require grad. Lengths are read from the host copy of the offsets.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.zeros((5, 2)), [2, 0, 3])
            >>> "<th>n_i</th><td>min 0, median 2, mean 1.67, max 3</td>" in x._repr_html_()
            True
        """
        lengths = self.host_lengths
        m = len(lengths)
        if m:
            spread = (
                f"min {lengths.min()}, median {np.median(lengths):g}, "
                f"mean {lengths.mean():.3g}, max {lengths.max()}"
            )
        else:
            spread = "none (no segments)"
        rows = [
            ("num_segments (m)", m),
            ("num_items (N)", self.num_items),
            ("n_i", spread),
            ("empty segments", int(np.count_nonzero(lengths == 0))),
            ("item_shape", self.item_shape),
            ("dtype", str(self.dtype).replace("torch.", "")),
            ("device", _backend.device_str(self._values)),
            ("backend", self.backend),
            ("requires_grad", self.requires_grad),
        ]
        body = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        name = html.escape(type(self).__name__)
        return (
            '<table class="raggedarray" style="text-align:left">'
            f"<caption><b>{name}</b></caption>{body}</table>"
        )


# ------------------------------------------------------------------------------ helpers


def _size(x: Any) -> int:
    """Elements in the values: ``N`` times the item size."""
    return x.num_items * int(np.prod(x.item_shape, dtype=np.int64))


def _select(segments: Any, m: int, where: str) -> np.ndarray:
    """Host int64 indices of the locations to draw (in range, negatives resolved)."""
    if segments is None:
        return np.arange(min(m, DEFAULT_SHOWN), dtype=np.int64)
    if _backend.backend_of(segments) is not None and segments.ndim == 0:
        segments = segments.item()
    if isinstance(
        segments, (bool, np.bool_, np.timedelta64, float, complex, str, bytes, dict, set)
    ):
        raise TypeError(
            f"{where}: segments must be None, an int, a slice, or a list or array of indices; "
            f"got {type(segments).__name__}"
        )
    if isinstance(segments, (int, np.integer)):
        i = int(segments)
        if not -m <= i < m:
            raise IndexError(_checks.index_range(where, m, i))
        return np.array([i + m if i < 0 else i], dtype=np.int64)
    if isinstance(segments, slice) and segments.step == 0:
        raise ValueError(f"{where}: slice step must not be zero; got {segments}")
    return _offsets.segment_index(segments, m, where)


def _host_images(values: Any, starts: np.ndarray, counts: np.ndarray, where: str) -> np.ndarray:
    """The drawn images as host float64 ``(K, H, W)`` or ``(K, H, W, 3)`` in ``[0, 1]``."""
    _, index = _offsets.spans(starts, counts)
    channels, height, width = values.shape[1:]
    if index.size and channels * height * width == 0:
        raise ValueError(
            f"{where}: images must have at least one pixel; got shape {tuple(values.shape[1:])}"
        )
    keep = slice(0, 3) if channels == 3 else slice(0, 1)
    if _backend.is_tensor(values):
        torch = _backend.torch_module()
        with torch.no_grad():
            picked = values.index_select(0, _backend.upload(index, values))[:, keep]
            images = picked.to("cpu", torch.float64).numpy()
    else:
        images = np.asarray(values[index][:, keep], dtype=np.float64)
    images = np.moveaxis(images, 1, -1)  # (K, H, W, c)
    flat = images.reshape(images.shape[0], int(np.prod(images.shape[1:])))
    finite = np.isfinite(flat)
    lo = np.where(finite, flat, np.inf).min(axis=1, initial=np.inf)
    hi = np.where(finite, flat, -np.inf).max(axis=1, initial=-np.inf)
    span = hi / 2 - lo / 2  # (in halves: hi - lo overflows for values near +-1.8e308)
    varied = span > 0
    safe_lo = np.where(np.isfinite(lo), lo, 0.0)
    scale = np.where(varied, span, 1.0)
    out = (flat / 2 - safe_lo[:, None] / 2) / scale[:, None]
    constant = ~varied & np.isfinite(lo)
    out[constant] = np.clip(flat[constant], 0.0, 1.0)
    out = np.where(finite, np.clip(out, 0.0, 1.0), 0.0).reshape(images.shape)
    return out if channels == 3 else out[..., 0]


def _draw_grid(
    mpl: Any, thumbs: np.ndarray, counts: np.ndarray, labels: list[str], title: str
) -> Any:
    """A new Figure with one small axes per cell; image cells framed, others blank."""
    nrows = max(len(labels), 1)
    ncols = max(int(counts.max()) if counts.size else 0, 1)
    width, height = _LABEL + ncols * _CELL, 0.5 + nrows * _CELL
    fig = mpl.figure.Figure(figsize=(width, height))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for cell in axes.flat:
        cell.set_xticks([])
        cell.set_yticks([])
    if not labels:
        axes[0, 0].set_axis_off()
        axes[0, 0].text(0.5, 0.5, "no locations to show", ha="center", va="center")
    position = 0
    for r, (label, k) in enumerate(zip(labels, counts.tolist(), strict=True)):
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        for c in range(ncols):
            cell = axes[r, c]
            if c < k:
                cell.imshow(thumbs[position], cmap="gray", vmin=0.0, vmax=1.0)
                position += 1
            else:
                for spine in cell.spines.values():
                    spine.set_visible(False)
        if k == 0:
            axes[r, 0].text(0.5, 0.5, "empty", ha="center", va="center", color="grey")
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(
        left=_LABEL / width,
        right=1 - 0.1 / width,
        top=1 - 0.4 / height,
        bottom=0.1 / height,
        wspace=0.05,
        hspace=0.08,
    )
    return fig


def _draw_mosaic(
    ax: Any, thumbs: np.ndarray, counts: np.ndarray, labels: list[str], title: str
) -> None:
    """The whole grid as one RGBA image in ``ax`` (transparent gaps and empty cells)."""
    nrows = len(labels)
    ncols = max(int(counts.max()) if counts.size else 0, 1)
    height, width = (max(int(d), 1) for d in thumbs.shape[1:3])
    mosaic = np.zeros((max(nrows, 1) * (height + _GAP) - _GAP, ncols * (width + _GAP) - _GAP, 4))
    position = 0
    for r, k in enumerate(counts.tolist()):
        for c in range(k):
            tile = thumbs[position]
            position += 1
            y, x = r * (height + _GAP), c * (width + _GAP)
            rgb = tile if tile.ndim == 3 else np.repeat(tile[..., None], 3, axis=-1)
            mosaic[y : y + height, x : x + width, :3] = rgb
            mosaic[y : y + height, x : x + width, 3] = 1.0
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([r * (height + _GAP) + (height - 1) / 2 for r in range(nrows)])
    ax.set_yticklabels(labels, fontsize=9)
    ax.tick_params(axis="y", length=0)
    ax.set_title(title, fontsize=10)
