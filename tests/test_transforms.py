"""``torch.func`` transforms over ragged arrays and the functional reductions.

``grad``, ``vmap``, ``jacrev``, ``jacfwd`` and ``jvp`` must give what eager autograd and a
loop over the batch give, also where values hold zeros, ties, NaN and infinities, and with
offsets, lengths, segment ids and indices passed as tensors (under ``grad``, torch refuses
``Tensor.numpy()`` for every tensor, the caller's offsets included).
"""

from __future__ import annotations

import pytest

import raggedarray as ra

torch = pytest.importorskip("torch")
func = pytest.importorskip("torch.func")

NAN, INF = float("nan"), float("inf")
# (tested on torch 2.13 and on the declared floor, 2.6)
OLD_TORCH = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 13)
OFFSETS = [0, 2, 2, 5, 6, 9]
# zeros, ties, a NaN, both infinities, an empty segment
NASTY = [
    [1.0, 3.0],
    [3.0, 3.0],
    [2.0, NAN],
    [2.0, -1.0],
    [INF, 0.5],
    [4.0, -INF],
    [0.0, 1.0],
    [0.0, 2.0],
    [5.0, 0.0],
]
REDUCTIONS = ["sum", "mean", "max", "min", "prod", "logsumexp", "var", "std"]
ITEMWISE = ["softmax", "log_softmax"]


def _values():
    return torch.tensor(NASTY, dtype=torch.float64)


def _batch():
    """Four variants: as given, finite, zeros made 1, reversed."""
    v = _values()
    return torch.stack([v, v.nan_to_num(7.0, 9.0, -9.0), torch.where(v == 0, 1.0, v), v.flip(0)])


def _same(got, want):
    """Equal, NaN and infinities in the same places (to rounding elsewhere)."""
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


def _eager_grad(loss, v):
    leaf = v.clone().requires_grad_()
    loss(leaf).backward()
    return leaf.grad


def _weighted(fn):
    """``t -> sum(weights * fn(t))`` with weights of one sign pattern, for gradients."""

    def loss(t):
        out = fn(t)
        weights = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).reshape(out.shape)
        return (out * weights).sum()

    return loss


# ------------------------------------------------------- metadata given as tensors


def _ragged(t):
    return ra.RaggedArray(t, torch.tensor(OFFSETS))


METADATA_CASES = {
    "segment_mean(offsets tensor)": lambda t: ra.segment_mean(t, torch.tensor(OFFSETS)),
    "segment_max(offsets tensor)": lambda t: ra.segment_max(t, torch.tensor(OFFSETS)),
    "segment_broadcast(offsets tensor)": lambda t: ra.segment_broadcast(
        t[:5], torch.tensor(OFFSETS)
    ),
    "RaggedArray(values, offsets tensor)": lambda t: _ragged(t).var(),
    "from_lengths(lengths tensor)": lambda t: ra.RaggedArray.from_lengths(
        t, torch.tensor([2, 0, 3, 1, 3])
    ).sum(),
    "from_segment_ids(ids tensor)": lambda t: ra.RaggedArray.from_segment_ids(
        t, torch.tensor([0, 0, 2, 2, 2, 3, 4, 4, 4]), num_segments=5
    ).max(),
    "from_padded(lengths tensor)": lambda t: ra.RaggedArray.from_padded(
        t.reshape(3, 3, 2), torch.tensor([3, 1, 2])
    ).mean(),
    "from_padded(mask tensor)": lambda t: ra.RaggedArray.from_padded(
        t.reshape(3, 3, 2), torch.tensor([[True, True, False]] * 3)
    ).prod(),
    "x[index tensor]": lambda t: _ragged(t)[torch.tensor([3, 0])].values,
    "x[bool tensor]": lambda t: _ragged(t)[torch.tensor([True, False, True, False, True])].values,
    "subsample(torch generator)": lambda t: (
        _ragged(t).subsample(1, generator=torch.Generator().manual_seed(0)).values
    ),
    "cumsum": lambda t: _ragged(t).cumsum().values,
    "sort": lambda t: _ragged(t).sort()[0].values,
    "median": lambda t: _ragged(t).median(),
    "operators": lambda t: (_ragged(t) * 2 - 1).mean(),
    "SegmentPool(max)": lambda t: ra.nn.SegmentPool("max")(_ragged(t)),
    "cat": lambda t: ra.cat([_ragged(t), _ragged(t)]).sum(),
}


@pytest.mark.parametrize("name", list(METADATA_CASES))
def test_grad_takes_metadata_given_as_tensors(name):
    """These raised torch's "Cannot access data pointer of Tensor that doesn't have storage"."""
    loss = _weighted(METADATA_CASES[name])
    v = _values().nan_to_num(7.0, 9.0, -9.0)
    _same(func.grad(loss)(v), _eager_grad(loss, v))


# ------------------------------------------------------------------- vmap = a loop


VMAP_CASES = {
    **{name: (lambda n: lambda t: getattr(_ragged(t), n)())(name) for name in REDUCTIONS},
    "softmax": lambda t: _ragged(t).softmax().values,
    "broadcast": lambda t: _ragged(t).broadcast(t[:5]).values,
    "argmax": lambda t: _ragged(t).argmax(),
    "argmin": lambda t: _ragged(t).argmin(),
    "median": lambda t: _ragged(t).median(),
    "any": lambda t: _ragged(t > 1).any(),
    "all": lambda t: _ragged(t > 1).all(),
    "cumsum": lambda t: _ragged(t).cumsum().values,
    "cumsum of integers": lambda t: _ragged(t.nan_to_num(0.0, 0.0, 0.0).long()).cumsum().values,
    "sort": lambda t: torch.cat([r.values.double() for r in _ragged(t).sort()], 1),
    "sort descending": lambda t: torch.cat(
        [r.values.double() for r in _ragged(t).sort(descending=True)], 1
    ),
    "topk": lambda t: torch.cat([r.values.double() for r in _ragged(t).topk(2)], 1),
    "to_padded": lambda t: _ragged(t).to_padded(fill=-7.0)[0],
    "x[list]": lambda t: _ragged(t)[[3, 0]].values,
    "from_padded": lambda t: ra.RaggedArray.from_padded(t.reshape(3, 3, 2), [3, 1, 0]).values,
    "torch function": lambda t: torch.exp(_ragged(t)).values,
    "map": lambda t: _ragged(t).map(torch.sin).values,
}


@pytest.mark.parametrize("name", list(VMAP_CASES))
def test_vmap_equals_a_loop_over_the_batch(name):
    """``vmap`` batches buffers that the eager paths wrote into in place, or branched on:
    these raised ("inplace arithmetic", "data-dependent control flow", ``bmm.out``)."""
    fn = VMAP_CASES[name]
    batch = _batch()
    want = torch.stack([fn(b) for b in batch])
    got = func.vmap(fn)(batch)
    assert got.dtype == want.dtype
    _same(got, want)


# ------------------------------------------------- gradients, both modes, equal eager


@pytest.mark.parametrize("name", REDUCTIONS + ITEMWISE + ["cumsum"])
def test_vmap_of_grad_equals_eager_autograd_at_zeros_ties_nan_and_inf(name):
    """max/min under ``torch.func`` followed torch's derivative of ``scatter_reduce``: NaN to
    every item of a feature holding a NaN, and a share for the zeros its output starts
    from. prod had no vmap rule for its backward. cumsum gave no gradient to the items
    whose running sums are infinite or NaN."""
    fn = getattr(ra, f"segment_{name}")
    loss = _weighted(lambda t: fn(t, OFFSETS))
    batch = _batch()
    want = torch.stack([_eager_grad(loss, b) for b in batch])
    _same(func.vmap(func.grad(loss))(batch), want)


@pytest.mark.parametrize("name", REDUCTIONS + ITEMWISE + ["cumsum"])
def test_forward_mode_equals_reverse_mode(name):
    """``jacfwd`` (``jvp`` under ``vmap``) equals ``jacrev``: prod's ``jvp`` was silently
    zero (``scatter_reduce``'s "prod" has no forward-mode derivative in torch), and max/min
    raised."""
    fn = getattr(ra, f"segment_{name}")
    v = _batch()[1]  # finite, with zeros and ties
    forward = func.jacfwd(lambda t: fn(t, OFFSETS))(v)
    reverse = func.jacrev(lambda t: fn(t, OFFSETS))(v)
    _same(forward, reverse)
    assert forward.abs().sum() > 0


@pytest.mark.parametrize("name", REDUCTIONS + ITEMWISE + ["cumsum"])
def test_dual_tensors_carry_the_tangent_of_torch_func_jvp(name):
    """Forward mode without ``torch.func``: ``forward_ad.make_dual`` inside a dual level."""
    forward_ad = pytest.importorskip("torch.autograd.forward_ad")
    fn = getattr(ra, f"segment_{name}")
    v = _batch()[1]
    tangent = torch.linspace(-1.0, 1.0, v.numel(), dtype=v.dtype).reshape(v.shape)
    with forward_ad.dual_level():
        got = forward_ad.unpack_dual(fn(forward_ad.make_dual(v, tangent), OFFSETS)).tangent
    _, want = func.jvp(lambda t: fn(t, OFFSETS), (v,), (tangent,))
    _same(got, want)


@pytest.mark.parametrize("name", ["max", "prod", "cumsum"])
def test_offsets_made_inside_the_transformed_function(name):
    """Tensors made inside a transform and read by an autograd function other than as its
    arguments fail an internal assert of torch.func: the functions take the offsets."""
    fn = getattr(ra, f"segment_{name}")
    v = _batch()[1]
    forward = func.jacfwd(lambda t: fn(t, torch.tensor(OFFSETS)))(v)
    _same(forward, func.jacrev(lambda t: fn(t, OFFSETS))(v))


DTYPE_OPS = [
    "sum", "mean", "max", "min", "prod", "logsumexp", "var", "std", "softmax", "cumsum",
    "argmax", "argmin", "median", "any", "all", "topk",
]  # fmt: skip
DTYPES = ["int64", "int32", "uint8", "uint64", "bool", "float16", "bfloat16", "float32"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", DTYPE_OPS)
def test_vmap_over_every_dtype_equals_a_loop(name, dtype):
    """float32 var read its result back (an overflow check), the float32/int32 sort keys
    were packed in place, topk's rounds for small k branched on NaN, and uint64 sums read
    their values for the 2**63 check: all raised under vmap; float64 took other paths."""
    if dtype == "uint64" and OLD_TORCH:
        pytest.skip("torch 2.6 has no vmap rule for Tensor.view(dtype), which uint64 takes")
    fn = getattr(ra, f"segment_{name}", None) or (
        lambda t, offsets: torch.cat(  # (the values here are small: exact as float64)
            [r.values.double() for r in ra.RaggedArray(t, offsets).topk(2)], 1
        )
    )
    batch = (torch.arange(36).reshape(2, 9, 2) % 5).to(getattr(torch, dtype))
    if batch.dtype.is_floating_point:
        batch[0, 2, 1], batch[1, 4, 0] = NAN, -INF
    want = torch.stack([fn(b, OFFSETS) for b in batch])
    got = func.vmap(lambda t: fn(t, OFFSETS))(batch)
    assert got.dtype == want.dtype
    torch.testing.assert_close(got, want, equal_nan=True, rtol=0, atol=0)
    if name == "max":  # the sort behind median and topk, on its own
        got_sort = func.vmap(lambda t: ra.RaggedArray(t, OFFSETS).sort()[1].values)(batch)
        want_sort = torch.stack([ra.RaggedArray(b, OFFSETS).sort()[1].values for b in batch])
        assert torch.equal(got_sort, want_sort)
