"""Progress reports for long command-line work: a tqdm bar, or plain lines without tqdm.

The demo (``python -m raggedarray``) uses it; tqdm comes with the ``progress`` extra
(``pip install 'raggedarray[progress]'``). Reports go to stderr, so stdout keeps the results.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    """Counts ``total`` steps under a label; use as a context manager.

    With tqdm installed it draws a bar; without, it prints a line when it starts, at every
    tenth of the work and when it ends. ``write`` prints a line without breaking the bar.

    Examples:
        >>> import io
        >>> out = io.StringIO()
        >>> with Progress(4, "timing", file=out, bar=False) as p:
        ...     for _ in range(4):
        ...         p.step()
        >>> print(out.getvalue().splitlines()[0])
        timing: 0/4
    """

    def __init__(self, total: int, label: str, *, file: TextIO | None = None, bar: bool = True):
        self.total, self.label, self.done = total, label, 0
        self.file = sys.stderr if file is None else file
        self._bar: Any = None
        self._start = time.perf_counter()
        self._next_line = 0
        if bar:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, desc=label, file=self.file, leave=False)
        if self._bar is None:
            self._line()

    def _line(self) -> None:
        elapsed = time.perf_counter() - self._start
        when = f" ({elapsed:.0f} s)" if self.done else ""
        print(f"{self.label}: {self.done}/{self.total}{when}", file=self.file, flush=True)
        self._next_line = self.done + max(1, self.total // 10)

    def step(self, n: int = 1) -> None:
        """Count ``n`` more steps done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.done >= self._next_line or self.done == self.total:
            self._line()

    def write(self, line: str) -> None:
        """Print ``line`` to stdout (above the bar, when there is one)."""
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
