"""Interactive display of ragged arrays: ``show`` (matplotlib) and Jupyter's ``_repr_html_``."""

from __future__ import annotations


class DisplayMethods:
    """Mixin giving :class:`~raggedarray.RaggedArray` its notebook display."""

    __slots__ = ()
