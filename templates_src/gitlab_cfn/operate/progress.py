"""Progress while a long operation waits: one live line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = ""
        self._started = time.monotonic()

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self._started)
        return f"{seconds // 60}m{seconds % 60:02d}s"

    def update(self, message: str) -> None:
        """Show the current state; off a terminal only when it changed."""
        if self.quiet:
            return
        if self.live:
            self.stream.write(f"\r\x1b[K[{self.elapsed()}] {message}")
            self.stream.flush()
        elif message != self._last:
            self.stream.write(f"[{self.elapsed()}] {message}\n")
            self.stream.flush()
        self._last = message

    def done(self, message: str) -> None:
        """A step finished: always on its own line."""
        if self.quiet:
            return
        if self.live:
            self.stream.write("\r\x1b[K")
        self.stream.write(f"[{self.elapsed()}] {message}\n")
        self.stream.flush()
        self._last = ""
