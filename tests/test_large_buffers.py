"""The large-buffer path (numpy-allocated CPU buffers filled by torch kernels) against the oracle.

Real batches reach it past 32 MiB; here the threshold is lowered to 0 so that every copy
takes it, and each result is compared with the per-segment loop.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import LAYOUTS, assert_same_segments, host, oracle_and_x

import raggedarray as ra
from raggedarray import _backend


@pytest.fixture(autouse=True)
def every_buffer_is_large(monkeypatch):
    monkeypatch.setattr(_backend, "LARGE_BUFFER_BYTES", 0)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "bool"])
def test_copies_match_the_oracle(layout, dtype):
    segments, x = oracle_and_x(("torch", "cpu"), dtype, layout)
    assert_same_segments(type(x).from_list([torch.from_numpy(s) for s in segments]), segments)
    perm = [4, 0, 6, 2]
    assert_same_segments(x[perm], [segments[i] for i in perm])
    assert_same_segments(x.clone(), segments)
    assert_same_segments(ra.cat([x, x[2:]]), segments + segments[2:])
    padded, mask = x.to_padded(fill=1, max_length=3)
    for i, seg in enumerate(segments):
        n = min(len(seg), 3)
        np.testing.assert_array_equal(host(padded[i, :n]), seg[:n])
        assert (host(padded[i, n:]) == 1).all()
        assert host(mask[i]).tolist() == [j < len(seg) for j in range(3)]


def test_results_own_their_memory_and_are_numpy_backed():
    segments, x = oracle_and_x(("torch", "cpu"), "float32")
    y = x[[1, 3]]
    assert y.values.untyped_storage().data_ptr() != x.values.untyped_storage().data_ptr()
    y.values.add_(1)  # writable, and writes do not reach x
    assert_same_segments(x, segments)


def test_dtypes_numpy_cannot_hold_fall_back_to_torch():
    bf16 = torch.bfloat16
    x = ra.RaggedArray.from_list([torch.ones(2, 3, dtype=bf16), torch.zeros(1, 3, dtype=bf16)])
    assert x.dtype == torch.bfloat16
    assert x[[1, 0]].values.float().tolist() == [[0, 0, 0], [1, 1, 1], [1, 1, 1]]


def test_autograd_keeps_the_plain_torch_path():
    leaves = [torch.randn(n, 2, dtype=torch.float64, requires_grad=True) for n in (2, 0, 3)]
    x = ra.RaggedArray.from_list(leaves)
    padded, _ = x[[2, 0, 2]].to_padded()
    (padded * torch.arange(1.0, 4.0, dtype=torch.float64)[None, :, None]).sum().backward()
    # rows 0 and 2 of the gather are both segment 2: its slots get weight 1+1, 2+2, 3+3
    np.testing.assert_array_equal(host(leaves[2].grad), [[2, 2], [4, 4], [6, 6]])
    np.testing.assert_array_equal(host(leaves[0].grad), [[1, 1], [2, 2]])
