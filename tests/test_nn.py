"""``ra.nn``: pooling modules and DeepSet against a per-segment loop over the list view."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import LENGTH_CASES, random_segments
from torch import nn

import raggedarray as ra

OPS = ["sum", "mean", "max", "min", "logsumexp"]


def ragged(lengths, features=3, seed=0, dtype=torch.float64):
    segments = random_segments(np.random.default_rng(seed), lengths, (features,), "float64")
    values = np.concatenate(segments) if segments else np.zeros((0, features))
    return ra.RaggedArray.from_lengths(torch.from_numpy(values).to(dtype), lengths)


def loop_pool(op, segment, fill=0.0):
    """The oracle: pool one ``(n_i, ...)`` segment with torch's own reductions."""
    if segment.shape[0] == 0:
        return torch.full(segment.shape[1:], fill, dtype=segment.dtype)
    if op in ("max", "min"):
        return getattr(segment, "a" + op)(0)
    return getattr(segment, op)(0)


def loop_attention(pool, x):
    """Gated attention pooling written per segment, from the module's own weights."""
    rows = []
    for segment in x:
        hidden = torch.tanh(pool.attention(segment))
        if pool.gate is not None:
            hidden = hidden * torch.sigmoid(pool.gate(segment))
        weights = torch.softmax(pool.score(hidden), dim=0)
        rows.append((weights * segment).sum(0))
    return torch.stack(rows) if rows else torch.zeros(0, x.item_shape[0], dtype=x.dtype)


# ------------------------------------------------------------------------ SegmentPool


@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("op", OPS)
def test_segment_pool_matches_the_loop(op, lengths):
    x = ragged(lengths)
    got = ra.nn.SegmentPool(op, fill=-2.0)(x)
    want = [loop_pool(op, seg, fill=-2.0) for seg in x]
    want = torch.stack(want) if want else torch.zeros(0, 3, dtype=x.dtype)
    torch.testing.assert_close(got, want)


def test_segment_pool_takes_numpy_and_gives_torch():
    x = ragged([2, 0, 3]).numpy()
    got = ra.nn.SegmentPool("mean")(x)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), x.mean())


def test_segment_pool_refuses_bad_ops_and_inputs():
    with pytest.raises(ValueError, match="op must be one of"):
        ra.nn.SegmentPool("median")
    with pytest.raises(TypeError, match="RaggedArray"):
        ra.nn.SegmentPool("sum")(torch.zeros(3, 2))


@pytest.mark.parametrize("op", [None, 3, b"sum", ["sum"], torch.sum])
def test_segment_pool_op_of_the_wrong_kind_is_a_type_error(op):
    with pytest.raises(TypeError, match=r"^SegmentPool: op must be a str, one of sum, .*; got "):
        ra.nn.SegmentPool(op)


# ---------------------------------------------------------------------- AttentionPool


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("lengths", LENGTH_CASES)
def test_attention_pool_matches_the_loop(gated, lengths):
    torch.manual_seed(0)
    pool = ra.nn.AttentionPool(3, 5, gated=gated).double()
    x = ragged(lengths)
    got = pool(x)
    torch.testing.assert_close(got, loop_attention(pool, x))
    assert got.shape == (len(lengths), 3)
    if lengths:
        empty = got[torch.from_numpy(x.host_lengths == 0)]
        assert torch.equal(empty, torch.zeros_like(empty))


def test_attention_weights_sum_to_one_per_segment():
    torch.manual_seed(0)
    pool = ra.nn.AttentionPool(3, 4).double()
    x = ragged([4, 1, 0, 2])
    weights = pool.weights(x)
    assert weights.lengths.tolist() == [4, 1, 0, 2]
    torch.testing.assert_close(
        weights.sum().flatten(), torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    )


def test_attention_pool_gradients_match_the_loop():
    torch.manual_seed(0)
    pool = ra.nn.AttentionPool(3, 4).double()
    values = ragged([3, 0, 2, 4]).values.requires_grad_()
    x = ra.RaggedArray.from_lengths(values, [3, 0, 2, 4])
    upstream = torch.randn(4, 3, dtype=torch.float64)
    got = torch.autograd.grad((pool(x) * upstream).sum(), [values, *pool.parameters()])
    want = torch.autograd.grad(
        (loop_attention(pool, x) * upstream).sum(), [values, *pool.parameters()]
    )
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    assert torch.autograd.gradcheck(
        lambda v: pool(ra.RaggedArray.from_lengths(v, [3, 0, 2, 4])), (values,)
    )


def test_attention_pool_probes_once_then_maps_in_one_call():
    # map remembers its plan per function; the scorer must stay the same object across calls.
    torch.manual_seed(0)
    pool = ra.nn.AttentionPool(3, 4).double()
    sizes = []
    pool.attention.register_forward_pre_hook(lambda _, args: sizes.append(args[0].shape[0]))
    x = ragged([30, 0, 20])
    first = pool(x)
    assert sizes == [16, 50]  # the probe (its output dropped), then the batch in one call
    for _ in range(2):
        sizes.clear()
        torch.testing.assert_close(pool(x), first)
        assert sizes == [50]
    copy = __import__("copy").deepcopy(pool)
    torch.testing.assert_close(copy(x), first)
    assert copy._score_items.__self__ is copy


def test_attention_pool_checks_the_item_shape():
    with pytest.raises(ValueError, match=r"items must have shape \(3,\)"):
        ra.nn.AttentionPool(3, 4).double()(ragged([2, 1], features=5))


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64, torch.uint8, torch.bool])
def test_attention_pool_under_autocast_refuses_what_autocast_does_not_cast(dtype):
    """Under autocast the dtype check was waived for every dtype: float64 or integer items
    failed inside torch (mat1 and mat2 must have the same dtype)."""
    pool = ra.nn.AttentionPool(3, 2)
    x = ra.RaggedArray.from_lengths(torch.ones(4, 3, dtype=dtype), [1, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(TypeError, match=r"^AttentionPool: values must have the dtype"):
            pool(x)
        assert pool(x.float()).shape == (2, 3)  # what autocast casts runs as before
        assert pool(x.bfloat16()).shape == (2, 3)


def test_attention_pool_refuses_values_on_another_device():
    pool = ra.nn.AttentionPool(3, 2).to("meta")
    with pytest.raises(ValueError, match=r"^AttentionPool: values must be on the device"):
        pool(ragged([2, 1], features=3).float())


@pytest.mark.parametrize("gated", ["no", "", 1, 0, None, "False"])
def test_attention_pool_gated_must_be_a_bool(gated):
    with pytest.raises(TypeError, match=r"^AttentionPool: gated must be a bool; got "):
        ra.nn.AttentionPool(3, 4, gated=gated)
    assert ra.nn.AttentionPool(3, 4, gated=np.bool_(False)).gate is None  # numpy's bool is one


# ---------------------------------------------------------------------------- DeepSet


def make_deepset(pool, features=3, hidden=4, covariates=0):
    torch.manual_seed(0)
    psi = nn.Sequential(nn.Linear(features, hidden), nn.Tanh()).double()
    phi = nn.Linear(hidden + covariates, 2).double()
    if pool == "attention":
        pool = ra.nn.AttentionPool(hidden, 3).double()
    return ra.nn.DeepSet(psi, phi, pool=pool)


def loop_deepset(model, x, covariates=None):
    pooled = []
    for segment in x:
        features = model.psi(segment)
        if isinstance(model.pool, ra.nn.SegmentPool):
            pooled.append(loop_pool(model.pool.op, features))
        else:
            one = ra.RaggedArray.from_lengths(features, [features.shape[0]])
            pooled.append(model.pool(one)[0])
    pooled = torch.stack(pooled)
    if covariates is not None:
        pooled = torch.cat([pooled, covariates.reshape(len(x), -1)], dim=1)
    return model.phi(pooled)


@pytest.mark.parametrize("pool", [*OPS[:3], "logsumexp", "attention"])
def test_deepset_matches_the_loop_with_gradients(pool):
    model = make_deepset(pool)
    values = ragged([3, 0, 5, 1, 2]).values.requires_grad_()
    x = ra.RaggedArray.from_lengths(values, [3, 0, 5, 1, 2])
    got, want = model(x), loop_deepset(model, x)
    torch.testing.assert_close(got, want)
    params = [values, *model.parameters()]
    for g, w in zip(
        torch.autograd.grad(got.sum(), params),
        torch.autograd.grad(want.sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("shape", [(5, 2), (5,)])
def test_deepset_joins_covariates_before_phi(shape):
    model = make_deepset("mean", covariates=shape[1] if len(shape) == 2 else 1)
    x = ragged([2, 1, 0, 4, 3])
    covariates = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(model(x, covariates=covariates), loop_deepset(model, x, covariates))


def test_deepset_refuses_covariates_of_the_wrong_length_and_bad_pools():
    model = make_deepset("mean", covariates=1)
    with pytest.raises(ValueError, match="one row per segment"):
        model(ragged([2, 1]), covariates=torch.zeros(3, 1, dtype=torch.float64))
    with pytest.raises(TypeError, match="pool must be"):
        ra.nn.DeepSet(nn.Identity(), nn.Identity(), pool=3)
    with pytest.raises(ValueError, match="DeepSet: pool must be one of"):
        ra.nn.DeepSet(nn.Identity(), nn.Identity(), pool="median")
    with pytest.raises(TypeError, match="RaggedArray"):
        model(torch.zeros(3, 3))


def test_deepset_reads_numpy_covariates_of_any_layout_and_refuses_what_it_cannot():
    model = make_deepset("mean", covariates=1)
    x = ragged([2, 1, 0])
    plain = np.array([3.0, 0.0, 4.0])
    want = model(x, covariates=torch.from_numpy(plain[::-1].copy()))
    reversed_ = plain[::-1]
    for cov in (
        reversed_,
        reversed_.astype(">f8"),
        np.asfortranarray(reversed_),
        np.asmatrix(reversed_).T,
    ):
        torch.testing.assert_close(model(x, covariates=cov), want)
    refused = {  # (a masked array's mask was dropped: the masked 1e6 was used)
        "mask": np.ma.masked_array([1e6, 0.0, 4.0], mask=[True, False, False]),
        "float128": plain.astype(np.longdouble) if np.longdouble().itemsize > 8 else None,
        "dense": torch.zeros(3).to_sparse(),
    }
    for what, cov in refused.items():
        if cov is None:  # (a platform whose longdouble is float64)
            continue
        with pytest.raises(TypeError, match=rf"^DeepSet: covariates must .*{what}"):
            model(x, covariates=cov)


def test_deepset_names_psi_when_it_gives_one_number_per_item_and_refuses_classes():
    x = ragged([2, 1, 0])
    with pytest.raises(ValueError, match=r"^DeepSet: psi must return \(k, \.\.\.\) with at"):
        ra.nn.DeepSet(lambda t: t.sum(1), nn.Identity())(x)
    for kwargs in ({"pool": ra.nn.AttentionPool}, {"psi": nn.ReLU}, {"phi": nn.Tanh}):
        args = {"psi": nn.Identity(), "phi": nn.Identity(), **kwargs}
        with pytest.raises(TypeError, match=r"^DeepSet: \w+ must be a module .*not a class"):
            ra.nn.DeepSet(**args)


@pytest.mark.parametrize("fill", [np.float32(2.0), np.float16(2.0), np.int32(2), np.bool_(True)])
def test_a_numpy_fill_is_held_as_its_python_number_quietly(fill):
    # numpy's rules cast the float64 bound to float16 (an overflow warning); a compiled
    # graph reads a numpy scalar held by a module as an array, on the host
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pool = ra.nn.SegmentPool("max", fill=fill)
        got = ragged([2, 0, 1]).mean(fill=fill)
    assert type(pool.fill) is type(fill.item()) and pool.fill == fill.item()
    assert got[1].tolist() == [float(fill)] * 3


@pytest.mark.parametrize("psi_is_bad", [True, False])
@pytest.mark.parametrize("bad", [3, None, "linear"])
def test_deepset_psi_and_phi_must_be_callable(psi_is_bad, bad):
    name = "psi" if psi_is_bad else "phi"
    args = (bad, nn.Identity()) if psi_is_bad else (nn.Identity(), bad)
    with pytest.raises(TypeError, match=rf"^DeepSet: {name} must be callable .*; got "):
        ra.nn.DeepSet(*args)


@pytest.mark.parametrize(
    ("chunk_size", "error"),
    [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError)],
)
def test_deepset_checks_chunk_size_at_construction_as_map_does(chunk_size, error):
    x = ragged([2, 1])
    with pytest.raises(error) as from_map:
        x.map(nn.Identity(), chunk_size=chunk_size)
    with pytest.raises(error) as from_deepset:
        ra.nn.DeepSet(nn.Identity(), nn.Identity(), chunk_size=chunk_size)
    # the same check: the same message, but for the name of the caller
    assert str(from_deepset.value).startswith("DeepSet: ")
    assert str(from_deepset.value).split(": ", 1)[1] == str(from_map.value).split(": ", 1)[1]
    assert ra.nn.DeepSet(nn.Identity(), nn.Identity(), chunk_size=np.int64(3)).chunk_size == 3


@pytest.mark.parametrize("shape", [(5, 2), (5,)])
@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "bool"])
def test_deepset_takes_numpy_covariates(shape, dtype):
    model = make_deepset("mean", covariates=shape[1] if len(shape) == 2 else 1)
    x = ragged([2, 1, 0, 4, 3])
    covariates = np.random.default_rng(0).normal(size=shape).astype(dtype)
    want = loop_deepset(model, x, torch.from_numpy(covariates).double())
    torch.testing.assert_close(model(x, covariates=covariates), want)


@pytest.mark.parametrize(
    ("covariates", "error", "match"),
    [
        ([[1.0]] * 2, TypeError, "a tensor or a numpy array of real numbers"),
        (np.array([["a"], ["b"]]), TypeError, "a tensor or a numpy array of real numbers"),
        (np.zeros((2, 1, 1)), ValueError, r"got shape \(2, 1, 1\)"),
        (torch.zeros(()), ValueError, r"got shape \(\)"),
        (np.zeros((3, 1)), ValueError, "one row per segment"),
    ],
)
def test_deepset_refuses_covariates_of_other_kinds_and_shapes(covariates, error, match):
    model = make_deepset("mean", covariates=1)
    with pytest.raises(error, match=rf"^DeepSet: covariates must .*{match}"):
        model(ragged([2, 1]), covariates=covariates)


def test_deepset_runs_psi_through_map_with_its_chunk_size():
    model = make_deepset("mean")
    model.chunk_size = 2
    calls = []
    model.psi.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    x = ragged([3, 0, 2])
    torch.testing.assert_close(model(x), loop_deepset(model, x)[:, :])
    assert calls[:3] == [2, 2, 1]


def test_deepset_on_images_flattens_pooled_feature_maps():
    torch.manual_seed(0)
    psi = nn.Conv2d(1, 2, 3)  # keeps images: pooled rows are (2, 2, 2) feature maps
    model = ra.nn.DeepSet(psi, nn.Linear(8, 1), pool="max")
    batch = ra.RaggedImageBatch.from_lengths(torch.randn(5, 1, 4, 4), [2, 3])
    pooled = torch.stack([psi(images).amax(0).flatten() for images in batch])
    torch.testing.assert_close(model(batch), model.phi(pooled))


def test_deepset_with_zero_segments_gives_zero_rows():
    model = make_deepset("mean")
    assert model(ragged([])).shape == (0, 2)
