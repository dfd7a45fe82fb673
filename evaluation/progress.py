"""Progress of long evaluation steps: a bar on a terminal, plain lines on stderr otherwise.

Indexing a corpus can take minutes; in CI or behind a pipe a tqdm bar is switched off, so
the same updates become a line at the start, at each tenth of the way (at most every
LINE_EVERY_S seconds unless a tenth was crossed) and at the end.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, Protocol, TextIO

from tqdm import tqdm

LINE_EVERY_S = 15.0
"""With an unknown total, or between tenths, a line at least this often while work goes on."""


class Progress(Protocol):
    """What the runs call: a context manager with update(n)."""

    def update(self, n: int = 1) -> Any: ...

    def __enter__(self) -> Progress: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...


def progress_bar(total: int | None, desc: str, *, unit: str) -> Progress:
    """A tqdm bar when stderr is a terminal, ProgressLines otherwise."""
    if sys.stderr.isatty():
        bar: Progress = tqdm(total=total, desc=desc, unit=unit)
        return bar
    return ProgressLines(total, desc, unit=unit, stream=sys.stderr)


class ProgressLines:
    """Progress as lines: 'indexing corpus: 120/1200 doc (10%) 12.0s'."""

    def __init__(self, total: int | None, desc: str, *, unit: str, stream: TextIO) -> None:
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.done = 0
        self._started = self._last = time.monotonic()
        self._tenth = 0

    def __enter__(self) -> ProgressLines:
        self._line()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._line(" done" if exc_type is None else " stopped")

    def update(self, n: int = 1) -> None:
        self.done += n
        tenth = self._tenth_reached()
        if tenth > self._tenth or time.monotonic() - self._last >= LINE_EVERY_S:
            self._tenth = max(tenth, self._tenth)
            if self.done != self.total:  # the last one is written on exit
                self._line()

    def _tenth_reached(self) -> int:
        return 10 * self.done // self.total if self.total else 0

    def _line(self, suffix: str = "") -> None:
        self._last = time.monotonic()
        share = f" ({100 * self.done // self.total}%)" if self.total else ""
        of = f"/{self.total}" if self.total is not None else ""
        elapsed = self._last - self._started
        self.stream.write(
            f"{self.desc}: {self.done}{of} {self.unit}{share} {elapsed:.1f}s{suffix}\n"
        )
        self.stream.flush()
