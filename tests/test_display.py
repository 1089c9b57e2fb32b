"""``show`` (thumbnail grids, headless with Agg) and the Jupyter ``_repr_html_`` summary.

Structure is checked against a loop over the per-location lengths: a grid draws
``min(n_i, max_items)`` images on the row of each shown location.
"""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from conftest import LENGTHS, PLACES, TORCH_PLACES, on, requires_cuda

import raggedarray as ra

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def batch(place=("numpy", "cpu"), lengths=LENGTHS, channels=1, size=6, dtype="float32", seed=0):
    """A RaggedImageBatch of random images with the given n_i on ``place``."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((int(sum(lengths)), channels, size, size)).astype(dtype)
    return ra.RaggedImageBatch.from_lengths(on(values, place), list(lengths))


def rows_of(fig):
    """The axes grid of a figure made by ``show`` (rows x columns, in order)."""
    axes = fig.axes
    ncols = axes[0].get_subplotspec().get_geometry()[1]
    return [axes[r : r + ncols] for r in range(0, len(axes), ncols)]


def images_per_row(fig):
    return [sum(len(a.images) for a in row) for row in rows_of(fig)]


def expected_counts(lengths, shown, max_items):
    return [min(lengths[i], max_items) for i in shown]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------- structure


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("max_items", [1, 2, 4, 8])
def test_grid_structure(place, max_items):
    x = batch(place)
    fig = x.show(max_items=max_items)
    assert isinstance(fig, matplotlib.figure.Figure)
    shown = range(len(LENGTHS))
    assert images_per_row(fig) == expected_counts(LENGTHS, shown, max_items)
    assert sum(len(a.images) for a in fig.axes) == sum(min(n, max_items) for n in LENGTHS)
    for i, row in zip(shown, rows_of(fig), strict=True):
        label = row[0].get_ylabel()
        assert label.startswith(f"[{i}] n={LENGTHS[i]}")
        extra = LENGTHS[i] - max_items
        assert (f"+{extra} more" in label) == (extra > 0)


def test_default_shows_first_eight_locations():
    lengths = [1, 2, 0, 3, 1, 1, 2, 1, 4, 5]
    fig = batch(lengths=lengths).show()
    labels = [row[0].get_ylabel() for row in rows_of(fig)]
    assert len(labels) == 8
    assert [lab.split("]")[0] for lab in labels] == [f"[{i}" for i in range(8)]
    assert "8 of 10 locations" in fig._suptitle.get_text()


def test_empty_rows_keep_their_label():
    fig = batch(lengths=[0, 2, 0]).show()
    rows = rows_of(fig)
    assert images_per_row(fig) == [0, 2, 0]
    assert rows[0][0].get_ylabel() == "[0] n=0"
    assert rows[2][0].get_ylabel() == "[2] n=0"
    assert any(t.get_text() == "empty" for t in rows[0][0].texts)


@pytest.mark.parametrize("lengths", [[], [0, 0, 0]], ids=["zero-segments", "all-empty"])
def test_nothing_to_draw(lengths, tmp_path):
    fig = batch(lengths=lengths).show()
    assert sum(len(a.images) for a in fig.axes) == 0
    fig.savefig(tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes().startswith(PNG_MAGIC)


def test_zero_segments_from_list_default_item_shape():
    x = ra.RaggedImageBatch.from_list([])
    fig = x.show()
    assert any("no locations" in t.get_text() for a in fig.axes for t in a.texts)


@pytest.mark.parametrize(
    "segments, shown",
    [
        pytest.param(2, [2], id="int"),
        pytest.param(-1, [6], id="negative-int"),
        pytest.param(np.int64(3), [3], id="numpy-int"),
        pytest.param(torch.tensor(3), [3], id="0d-tensor"),
        pytest.param(slice(1, 4), [1, 2, 3], id="slice"),
        pytest.param(slice(None, None, -2), [6, 4, 2, 0], id="reversed-slice"),
        pytest.param([5, 0, 5], [5, 0, 5], id="list-repeats"),
        pytest.param(np.array([3, -1]), [3, 6], id="array"),
        pytest.param(torch.tensor([4, 1]), [4, 1], id="tensor"),
        pytest.param([True, False, False, True, False, False, True], [0, 3, 6], id="mask"),
        pytest.param([], [], id="empty-list"),
    ],
)
def test_segments_selection(segments, shown):
    fig = batch().show(segments, max_items=3)
    if not shown:
        assert sum(len(a.images) for a in fig.axes) == 0
        return
    rows = rows_of(fig)
    assert [row[0].get_ylabel().split("]")[0] for row in rows] == [f"[{i}" for i in shown]
    assert images_per_row(fig) == expected_counts(LENGTHS, shown, 3)


# --------------------------------------------------------------------------- pixel data


def test_single_channel_is_grayscale_and_normalised_per_image():
    x = batch(lengths=[2, 1])
    fig = x.show()
    first = rows_of(fig)[0][0].images[0]
    assert first.get_cmap().name == "gray"
    data = np.asarray(first.get_array())
    image = x[0][0, 0]
    expected = (image - image.min()) / (image.max() - image.min())
    np.testing.assert_allclose(data, expected, rtol=1e-6, atol=1e-6)
    assert data.min() == 0.0 and data.max() == 1.0


def test_three_channels_are_rgb():
    x = batch(lengths=[2], channels=3)
    data = np.asarray(rows_of(x.show())[0][1].images[0].get_array())
    assert data.shape == (6, 6, 3)
    image = np.moveaxis(x[0][1], 0, -1)
    expected = (image - image.min()) / (image.max() - image.min())
    np.testing.assert_allclose(data, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("channels", [2, 4, 5])
def test_other_channel_counts_show_the_first_channel(channels):
    x = batch(lengths=[1], channels=channels)
    data = np.asarray(x.show().axes[0].images[0].get_array())
    image = x[0][0, 0]
    assert data.shape == (6, 6)
    np.testing.assert_allclose(data, (image - image.min()) / np.ptp(image), atol=1e-6)


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int64", "float16", "float64"])
@pytest.mark.parametrize("place", PLACES)
def test_dtypes(place, dtype):
    rng = np.random.default_rng(1)
    values = (rng.random((3, 1, 5, 5)) * 200).astype(dtype)
    x = ra.RaggedImageBatch.from_lengths(on(values, place), [2, 1])
    fig = x.show()
    data = np.asarray(fig.axes[0].images[0].get_array())
    assert data.min() >= 0.0 and data.max() <= 1.0
    assert sum(len(a.images) for a in fig.axes) == 3


def test_bfloat16_torch():
    x = batch(("torch", "cpu"), lengths=[2]).to(dtype=torch.bfloat16)
    assert sum(len(a.images) for a in x.show().axes) == 2


def test_constant_and_non_finite_images():
    values = np.zeros((4, 1, 3, 3))
    values[1] = 1.0  # constant 1: white
    values[2] = 7.0  # constant outside [0, 1]: clipped, white
    values[3] = np.arange(9.0).reshape(3, 3)
    values[3, 0, 0, 0] = np.nan
    values[3, 0, 0, 1] = np.inf
    x = ra.RaggedImageBatch.from_lengths(values, [4])
    cells = [np.asarray(a.images[0].get_array()) for a in x.show().axes]
    np.testing.assert_array_equal(cells[0], 0.0)
    np.testing.assert_array_equal(cells[1], 1.0)
    np.testing.assert_array_equal(cells[2], 1.0)
    assert cells[3][0, 0] == 0.0 and cells[3][0, 1] == 0.0
    assert cells[3].max() == 1.0 and np.isfinite(cells[3]).all()


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_the_extremes_of_a_dtype_rescale_without_overflow(dtype):
    top = np.finfo(dtype).max
    values = np.array([-top, top, 0, 0], dtype=dtype).reshape(1, 1, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (hi - lo overflowed: a RuntimeWarning and a NaN)
        fig = ra.RaggedImageBatch.from_lengths(values, [1]).show()
    np.testing.assert_allclose(np.asarray(fig.axes[0].images[0].get_array()), [[0, 1], [0.5, 0.5]])


def test_all_true_mask_is_white():
    x = ra.RaggedImageBatch.from_lengths(np.ones((1, 1, 4, 4), dtype=bool), [1])
    np.testing.assert_array_equal(np.asarray(x.show().axes[0].images[0].get_array()), 1.0)


@pytest.mark.parametrize("place", TORCH_PLACES)
def test_requires_grad(place):
    x = batch(place, lengths=[2, 0, 1])
    values = x.values.clone().requires_grad_(True)
    y = ra.RaggedImageBatch(values, x.offsets)
    assert y.requires_grad
    fig = y.show()
    assert sum(len(a.images) for a in fig.axes) == 3
    assert values.grad is None


def test_show_does_not_copy_undrawn_images():
    # only the drawn images are gathered: a huge unshown row must not matter
    x = batch(lengths=[1, 2000], size=4)
    fig = x.show(max_items=2)
    assert images_per_row(fig) == [1, 2]


# --------------------------------------------------------------------------- ax and files


@pytest.mark.parametrize("channels", [1, 3])
def test_draw_into_existing_axes(channels):
    fig, ax = plt.subplots()
    x = batch(lengths=[3, 0, 1], channels=channels, size=5)
    out = x.show(ax=ax, max_items=2)
    assert out is fig
    assert len(ax.images) == 1
    assert len(fig.axes) == 1
    mosaic = np.asarray(ax.images[0].get_array())
    # 3 rows and 2 columns of 5x5 tiles with 1-pixel gaps; RGBA
    assert mosaic.shape == (3 * 6 - 1, 2 * 6 - 1, 4)
    alpha = mosaic[..., 3]
    tiles = [
        [alpha[r * 6 : r * 6 + 5, c * 6 : c * 6 + 5].all() for c in range(2)] for r in range(3)
    ]
    assert tiles == [[True, True], [False, False], [True, False]]
    assert alpha.sum() == 3 * 25  # gaps and empty cells transparent
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["[0] n=3\n+1 more", "[1] n=0", "[2] n=1"]
    if channels == 3:
        image = np.moveaxis(x[0][0], 0, -1)
        expected = (image - image.min()) / np.ptp(image)
        np.testing.assert_allclose(mosaic[:5, :5, :3], expected, atol=1e-6)


def test_draw_into_axes_with_nothing_to_show():
    fig, ax = plt.subplots()
    assert batch(lengths=[0, 0]).show(ax=ax) is fig
    assert len(ax.images) == 1


@pytest.mark.parametrize("use_ax", [False, True], ids=["figure", "axes"])
def test_save_png(tmp_path, use_ax):
    x = batch(("torch", "cpu"), lengths=[2, 0, 3], channels=3)
    if use_ax:
        fig, ax = plt.subplots()
        x.show(ax=ax)
    else:
        fig = x.show()
    path = tmp_path / "show.png"
    fig.savefig(path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    image = plt.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50


def test_new_figure_leaves_pyplot_alone():
    before = plt.get_fignums()
    batch().show()
    assert plt.get_fignums() == before


# -------------------------------------------------------------------------------- errors


def test_non_image_arrays_refused():
    x = ra.RaggedArray.from_lengths(np.zeros((3, 2)), [1, 2])
    with pytest.raises(TypeError, match=r"RaggedArray\.show: needs a RaggedImageBatch.*got a "):
        x.show()
    x3 = ra.RaggedArray.from_lengths(np.zeros((3, 1, 4, 4)), [1, 2])
    with pytest.raises(TypeError, match=r"item_shape \(1, 4, 4\).*ra\.RaggedImageBatch"):
        x3.show()


@pytest.mark.parametrize(
    "max_items, error, message",
    [
        (0, ValueError, "max_items must be >= 1; got 0"),
        (-3, ValueError, "max_items must be >= 1; got -3"),
        (2.0, TypeError, "max_items must be an int; got float"),
        (True, TypeError, "max_items must be an int; got bool"),
        (None, TypeError, "max_items must be an int; got NoneType"),
    ],
)
def test_bad_max_items(max_items, error, message):
    with pytest.raises(error, match=r"RaggedImageBatch\.show: " + message):
        batch().show(max_items=max_items)


def test_numpy_int_max_items_accepted():
    assert images_per_row(batch(lengths=[3]).show(max_items=np.int32(2))) == [2]


@pytest.mark.parametrize(
    "segments, error, message",
    [
        (7, IndexError, r"segment index must be in \[-7, 7\); got 7"),
        (-8, IndexError, r"segment index must be in \[-7, 7\); got -8"),
        ([0, 9], IndexError, "segment index out of range for 7 segments; got 9 at position 1"),
        (np.array([[0]]), IndexError, "an index array must be 1-D"),
        ([True, False], IndexError, "a boolean mask must have shape"),
        ([0.5], IndexError, "segment indices must be integers or booleans; got dtype float64"),
        (1.0, TypeError, "segments must be None, an int, a slice.*got float"),
        ("0", TypeError, "segments must be None.*got str"),
        (True, TypeError, "segments must be None.*got bool"),
        (slice(0, 3, 0), ValueError, "slice step must not be zero"),
    ],
)
def test_bad_segments(segments, error, message):
    with pytest.raises(error, match=r"RaggedImageBatch\.show: " + message):
        batch().show(segments)


def test_index_on_zero_segments():
    with pytest.raises(IndexError, match=r"must index a segment; got 0 with no segments"):
        batch(lengths=[]).show(0)


def test_bad_ax():
    fig = matplotlib.figure.Figure()
    with pytest.raises(TypeError, match=r"show: ax must be a matplotlib Axes or None; got Figure"):
        batch().show(ax=fig)


def test_complex_refused():
    # complex images never make a RaggedImageBatch, so show never meets them
    with pytest.raises(TypeError, match="real numbers or booleans; got dtype complex64"):
        ra.RaggedImageBatch.from_lengths(np.zeros((1, 1, 2, 2), dtype=np.complex64), [1])


def test_images_without_pixels():
    x = ra.RaggedImageBatch.from_lengths(np.zeros((2, 1, 0, 3)), [2])
    with pytest.raises(ValueError, match=r"at least one pixel; got shape \(1, 0, 3\)"):
        x.show()
    assert sum(len(a.images) for a in x.show([], max_items=1).axes) == 0


def test_missing_matplotlib(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"needs matplotlib: pip install 'raggedarray\[plot\]'"):
        batch().show()


# ---------------------------------------------------------------------------- _repr_html_


def cells(html_text):
    """{header: value} of the summary table."""
    import re

    return dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", html_text))


@pytest.mark.parametrize("place", PLACES)
def test_repr_html(place):
    x = batch(place)
    text = x._repr_html_()
    assert text.startswith("<table") and text.endswith("</table>")
    assert "<b>RaggedImageBatch</b>" in text
    assert "<img" not in text
    lengths = np.array(LENGTHS)
    got = cells(text)
    assert got["num_segments (m)"] == str(len(LENGTHS))
    assert got["num_items (N)"] == str(lengths.sum())
    assert got["n_i"] == (
        f"min {lengths.min()}, median {np.median(lengths):g}, "
        f"mean {lengths.mean():.3g}, max {lengths.max()}"
    )
    assert got["empty segments"] == str((lengths == 0).sum())
    assert got["item_shape"] == "(1, 6, 6)"
    assert got["dtype"] == "float32"
    assert got["device"] == place[1] if place[1] == "cpu" else got["device"].startswith("cuda")
    assert got["backend"] == place[0]
    assert got["requires_grad"] == "False"


def test_repr_html_zero_segments():
    got = cells(ra.RaggedArray.from_lengths(np.zeros(0), [])._repr_html_())
    assert got["num_segments (m)"] == "0"
    assert got["num_items (N)"] == "0"
    assert got["n_i"] == "none (no segments)"
    assert got["empty segments"] == "0"


def test_repr_html_all_empty():
    got = cells(ra.RaggedArray.from_lengths(np.zeros((0, 2)), [0, 0, 0])._repr_html_())
    assert got["n_i"] == "min 0, median 0, mean 0, max 0"
    assert got["empty segments"] == "3"
    assert got["item_shape"] == "(2,)"


def test_repr_html_requires_grad_and_torch_dtype():
    values = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    got = cells(ra.RaggedArray.from_lengths(values, [1, 2])._repr_html_())
    assert got["requires_grad"] == "True"
    assert got["dtype"] == "float64"
    assert got["backend"] == "torch"


@requires_cuda
def test_repr_html_cuda_does_not_sync(monkeypatch):
    x = batch(("torch", "cuda"), lengths=[2, 0, 1])
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: calls.append(a))
    original = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: calls.append(t) or original(t))
    got = cells(x._repr_html_())
    assert calls == []
    assert got["device"].startswith("cuda")
    assert got["n_i"] == "min 0, median 1, mean 1, max 2"


def test_repr_html_escapes():
    weird = type("Ragged<script>&", (ra.RaggedArray,), {"__slots__": ()})
    text = weird.from_lengths(np.zeros(2), [2])._repr_html_()
    assert "<script>" not in text
    assert "<b>Ragged&lt;script&gt;&amp;</b>" in text
    assert cells(text)["item_shape"] == "()"


# ------------------------------------------------------------------------------------ str


def segment_texts(x, threshold=None):
    """The oracle: numpy's text of every segment, read one segment at a time."""
    texts = []
    for segment in x.to_list():
        if isinstance(segment, torch.Tensor):
            segment = segment.detach().cpu()
            segment = (segment.float() if segment.dtype == torch.bfloat16 else segment).numpy()
        options = {} if threshold is None else {"threshold": threshold}
        texts.append(np.array2string(segment, prefix=" ", **options))
    return texts


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int64", "float16", "float32", "float64"])
@pytest.mark.parametrize("item_shape", [(), (3,), (1, 2, 2)])
@pytest.mark.parametrize("place", PLACES)
def test_str_shows_every_segment_as_numpy_does(place, item_shape, dtype):
    rng = np.random.default_rng(21)
    lengths = [2, 0, 3, 1]
    values = (rng.standard_normal((sum(lengths), *item_shape)) * 5).astype(dtype)
    cls = ra.RaggedImageBatch if len(item_shape) == 3 else ra.RaggedArray
    x = cls.from_lengths(on(values, place), lengths)
    assert str(x) == "[" + "\n ".join(segment_texts(x)) + "]"
    assert repr(x) != str(x) and repr(x).startswith(cls.__name__ + "(")


@pytest.mark.parametrize("place", TORCH_PLACES)
def test_str_of_bfloat16_values_that_require_grad(place):
    values = on(np.array([0.5, 1.5, -2.0], dtype=np.float32), place)
    x = ra.RaggedArray.from_lengths(values.bfloat16().requires_grad_(), [1, 2])
    assert str(x) == "[[0.5]\n [ 1.5 -2. ]]"


def test_str_of_values_with_the_negative_bit():
    values = torch.tensor([1 + 2j, 3 - 4j]).conj().imag  # a real view that negates on read
    assert str(ra.RaggedArray.from_lengths(values, [1, 1])) == "[[-2.]\n [4.]]"


@pytest.mark.parametrize("lengths", [[], [0], [0, 0, 0]])
def test_str_of_arrays_without_items(place, lengths):
    x = ra.RaggedArray.from_lengths(on(np.zeros((0, 2)), place), lengths)
    assert str(x) == "[" + "\n ".join(["[]"] * len(lengths)) + "]"


def test_str_of_many_segments_shows_the_first_and_last_few():
    lengths = np.random.default_rng(22).integers(0, 5, size=3_000)
    x = ra.RaggedArray.from_lengths(np.arange(lengths.sum(), dtype=np.float64), lengths)
    edge = np.get_printoptions()["edgeitems"]
    shown = [*range(edge), *range(len(lengths) - edge, len(lengths))]
    texts = segment_texts(x[shown], threshold=0)
    assert str(x) == "[" + "\n ".join([*texts[:edge], "...", *texts[edge:]]) + "]"


@pytest.mark.parametrize("item_shape", [(), (0,)], ids=["empty-segments", "no-elements"])
def test_str_of_many_segments_without_elements_is_summarised_too(item_shape):
    # nothing counted toward numpy's threshold: all million "[]" were printed (4 MB, 4 s)
    lengths = np.zeros(3_000, dtype=np.int64) if item_shape == () else np.ones(3_000, int)
    x = ra.RaggedArray.from_lengths(np.zeros((lengths.sum(), *item_shape)), lengths)
    edge = np.get_printoptions()["edgeitems"]
    assert str(x).count("\n") == 2 * edge and "..." in str(x)
    with np.printoptions(threshold=10_000):
        assert str(x).count("\n") == 3_000 - 1


def test_str_summarises_long_segments_and_follows_print_options():
    x = ra.RaggedArray.from_lengths(np.arange(4_000) / 3, [1_000, 3_000])
    text = str(x)
    assert text == "[" + "\n ".join(segment_texts(x, threshold=0)) + "]"
    assert text.count("...") == 2 and len(text) < 400
    with np.printoptions(precision=2, threshold=10_000):
        text = str(x)
        assert text == "[" + "\n ".join(segment_texts(x)) + "]"
    assert "..." not in text and " 1332.67 " in text


def test_str_reads_only_the_segments_it_shows(monkeypatch):
    values = torch.arange(100_000.0)
    x = ra.RaggedArray.from_lengths(values, [10] * 10_000)
    sizes = []
    detach = torch.Tensor.detach
    monkeypatch.setattr(torch.Tensor, "detach", lambda t: sizes.append(t.numel()) or detach(t))
    str(x)
    assert sizes == [10] * (2 * np.get_printoptions()["edgeitems"])
