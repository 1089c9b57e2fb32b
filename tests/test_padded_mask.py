"""``from_padded(padded, mask)``: a boolean prefix mask in place of the lengths.

The oracle reads each mask row in a Python loop: the row's True slots are the items kept, and
they must come first.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import LAYOUTS, PLACES, assert_same_segments, host, on, requires_cuda
from hypothesis import given, settings
from hypothesis import strategies as st

import raggedarray as ra


def loop_oracle(padded, mask):
    """Per-row segments read with a loop, or the first row whose True slots are no prefix."""
    segments = []
    for i, row in enumerate(mask):
        n = 0
        while n < len(row) and row[n]:
            n += 1
        if any(row[n:]):
            return i
        segments.append(padded[i, :n])
    return segments


def mask_as(mask, how, place):
    if how == "numpy":
        return mask
    if how == "lists":
        return mask.tolist()
    return torch.from_numpy(mask).to(place[1] if place[0] == "torch" else "cpu")


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    m=st.integers(0, 6),
    n_max=st.integers(0, 5),
    place=st.sampled_from([p.values[0] for p in PLACES[:2]]),
    how=st.sampled_from(["numpy", "torch", "lists"]),
    layout=st.sampled_from([p.values[0] for p in LAYOUTS]),
    prefix=st.booleans(),
)
def test_mask_against_loop(data, m, n_max, place, how, layout, prefix):
    cls, item_shape = layout
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    padded = rng.standard_normal((m, n_max, *item_shape))
    if prefix:
        lengths = rng.integers(0, n_max + 1, m)
        mask = np.arange(n_max) < lengths[:, None]
    else:
        mask = rng.random((m, n_max)) < 0.5
    mask = mask.reshape(m, n_max)
    if how == "lists" and m and not n_max:
        how = "numpy"  # [[], []] reads as no mask at all
    expected = loop_oracle(padded, mask)
    if isinstance(expected, int):
        with pytest.raises(ValueError, match=rf"must form a prefix.*got row {expected} = "):
            cls.from_padded(on(padded, place), mask_as(mask, how, place))
        return
    x = cls.from_padded(on(padded, place), mask_as(mask, how, place))
    assert type(x) is cls and x.backend == place[0]
    assert host(x.lengths).tolist() == [s.shape[0] for s in expected]
    assert_same_segments(x, expected)


@pytest.mark.parametrize("place", PLACES)
def test_to_padded_mask_round_trips(place):
    lengths = [3, 0, 2, 5, 0]
    values = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    x = ra.RaggedArray.from_lengths(on(values, place), lengths)
    padded, mask = x.to_padded(fill=-1)
    y = ra.RaggedArray.from_padded(padded, mask)
    assert y.equal(x) and y.backend == x.backend and str(y.device) == str(x.device)


@pytest.mark.parametrize(
    ("mask", "row"),
    [
        ([[True, False, True], [True, True, False]], 0),
        ([[True, True, True], [False, True, False]], 1),
    ],
)
def test_non_prefix_mask_names_the_row(mask, row):
    padded = np.zeros((2, 3))
    with pytest.raises(ValueError, match=rf"from_padded: .*prefix.*got row {row} = \["):
        ra.RaggedArray.from_padded(padded, np.array(mask))


def test_mask_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"shape \(m, n_max\)=\(2, 3\).*got shape \(2, 4\)"):
        ra.RaggedArray.from_padded(np.zeros((2, 3, 5)), np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"got shape \(2,\)"):
        ra.RaggedArray.from_padded(torch.zeros(2, 3), torch.ones(2, dtype=torch.bool))


def test_a_mask_of_lists_without_columns_is_a_mask():
    # np.asarray([[]]) is float64: it was refused as a mask that must be boolean
    for rows in ([[]], [[], []], ((), ())):
        x = ra.RaggedArray.from_padded(np.zeros((len(rows), 0)), rows)
        assert x.lengths.tolist() == [0] * len(rows) and x.num_items == 0


def test_integer_lengths_still_work_and_bool_vectors_still_fail():
    x = ra.RaggedArray.from_padded(np.arange(6).reshape(2, 3), np.array([1, 3]))
    assert x.values.tolist() == [0, 3, 4, 5]
    with pytest.raises(ValueError, match=r"got shape \(2,\)"):
        ra.RaggedArray.from_padded(np.zeros((2, 3)), np.array([True, False]))
    with pytest.raises((TypeError, ValueError), match="integer dtype"):
        ra.RaggedArray.from_padded(np.zeros((2, 3)), [True, False])


@pytest.mark.parametrize(
    "mask",
    [
        np.array([[1, 1, 0], [1, 0, 0]]),
        np.array([[1.0, 1, 0], [1, 0, 0]]),
        torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.uint8),
        [[1, 1, 0], [1, 0, 0]],
    ],
    ids=["int64", "float64", "uint8-tensor", "lists"],
)
def test_a_0_1_mask_is_refused_as_a_mask_that_must_be_boolean(mask):
    """An attention mask of 0/1 ints is refused by name, not as lengths that are not 1-D."""
    padded = np.arange(6.0).reshape(2, 3)
    before = copy.deepcopy(mask)
    with pytest.raises(TypeError, match=r"from_padded: a \(m, n_max\) mask .* must be boolean"):
        ra.RaggedArray.from_padded(padded, mask)
    assert type(mask) is type(before) and np.array_equal(np.asarray(mask), np.asarray(before))
    as_bool = torch.as_tensor(np.asarray(mask)).bool()
    assert ra.RaggedArray.from_padded(padded, as_bool).lengths.tolist() == [2, 1]


@requires_cuda
def test_cuda_mask_with_numpy_padded():
    mask = torch.tensor([[True, False], [True, True]], device="cuda")
    x = ra.RaggedArray.from_padded(np.arange(4.0).reshape(2, 2), mask)
    assert x.backend == "numpy" and x.values.tolist() == [0.0, 2.0, 3.0]


def test_padded_is_differentiable_with_a_mask():
    padded = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    mask = torch.arange(4) < torch.tensor([2, 0, 4])[:, None]
    x = ra.RaggedArray.from_padded(padded, mask)
    x.values.sum().backward()
    assert torch.equal(padded.grad, mask[..., None].expand(3, 4, 2).double())
