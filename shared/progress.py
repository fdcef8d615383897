"""Progress of long commands (rebuild, reconcile, import): one reporter for all of them.

On a terminal it draws tqdm's bar (done / total, rate, time left); anywhere else (CI logs, a
cron job's mail, `docker compose run` without a TTY) a bar would be a stream of carriage
returns, so it prints a plain line every `every_s` seconds instead, and one at the end:

    rebuild: 120,000 of 400,000 records (30.0%), 9,850 records/s, about 28 s left

It writes to stderr by default: the commands' stdout is their answer (reconcile's differences
as JSON lines) and must stay parseable. The total may grow while the work goes on (a rebuild
under live ingest learns the log's end as it reads) or be unknown (then no time left).
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from tqdm import tqdm


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """`advance(n)` or `set(done)` as work is done, `set_total` when the total is learnt,
    `close()` (or a `with` block) at the end."""

    def __init__(
        self,
        description: str,
        *,
        total: int | None = None,
        unit: str = "records",
        every_s: float = 5.0,
        stream: TextIO | None = None,
        terminal: bool | None = None,
    ) -> None:
        self.description = description
        self.unit = unit
        self.total = total
        self.done = 0
        self.every_s = every_s
        self._stream = stream if stream is not None else sys.stderr
        if terminal is None:
            terminal = bool(getattr(self._stream, "isatty", lambda: False)())
        self._started = time.monotonic()
        self._last_line = self._started
        self._closed = False
        self._bar: tqdm[None] | None = None
        if terminal:
            self._bar = tqdm(
                total=total,
                desc=description,
                unit=f" {unit}",
                unit_scale=True,
                file=self._stream,
                dynamic_ncols=True,
                mininterval=0.5,
            )

    def set_total(self, total: int) -> None:
        if total == self.total:
            return
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def advance(self, n: int = 1) -> None:
        self.set(self.done + n)

    def set(self, done: int) -> None:
        delta, self.done = done - self.done, done
        if self._bar is not None:
            self._bar.update(delta)
            return
        now = time.monotonic()
        if now - self._last_line >= self.every_s:
            self._last_line = now
            self._print(self.line(now))

    def line(self, now: float | None = None) -> str:
        """The plain line: done (of total, percent), rate, time left."""
        elapsed = max((now if now is not None else time.monotonic()) - self._started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.description}: {self.done:,}"
        if self.total is not None:
            share = 100.0 * self.done / self.total if self.total else 100.0
            text += f" of {self.total:,} {self.unit} ({share:.1f}%)"
        else:
            text += f" {self.unit}"
        text += f", {rate:,.0f} {self.unit}/s"
        if self.total is not None and rate > 0 and self.done < self.total:
            text += f", about {_duration((self.total - self.done) / rate)} left"
        return text

    def close(self, summary: str | None = None) -> None:
        """End the bar, or print the last plain line (with how long it took)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            if summary:
                self._print(f"{self.description}: {summary}")
            return
        now = time.monotonic()
        text = self.line(now) + f", done in {_duration(now - self._started)}"
        self._print(text + (f"; {summary}" if summary else ""))

    def _print(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(None if kind is None else f"stopped ({kind.__name__})")
