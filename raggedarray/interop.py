"""Interop with awkward arrays and ``torch.nested`` tensors (optional imports)."""

from __future__ import annotations


class InteropMethods:
    """Mixin giving :class:`~raggedarray.RaggedArray` its awkward and torch.nested converters."""

    __slots__ = ()
