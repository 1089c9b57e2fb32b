"""A pytest plugin that keeps only the test cases about CUDA (used by ``gpu_check.py``).

A case is about CUDA when its id names CUDA (the ``torch-cuda`` place of tests/conftest.py,
``test_..._cuda_...`` functions) or when it carries a ``skipif`` mark whose reason does
(``requires_cuda``). Load it with ``python -m pytest -p _cuda_only`` and this folder on
``PYTHONPATH``.
"""

from __future__ import annotations

from typing import Any


def about_cuda(item: Any) -> bool:
    """Whether a collected test case is about CUDA."""
    if "cuda" in item.nodeid.lower():
        return True
    return any(
        "cuda" in str(mark.kwargs.get("reason", "")).lower() for mark in item.iter_markers("skipif")
    )


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Deselect every case that is not about CUDA."""
    keep = [item for item in items if about_cuda(item)]
    dropped = [item for item in items if not about_cuda(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
