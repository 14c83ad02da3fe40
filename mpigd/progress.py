"""Progress lines on rank 0: epoch, loss, rows per second, at most one a second."""

from __future__ import annotations

import sys
import time


class Progress:
    """Prints nothing for runs shorter than ``delay`` seconds, then a line every ``interval``."""

    def __init__(self, epochs: int, rows_per_epoch: int, enabled: bool, delay: float = 1.0,
                 interval: float = 1.0, stream=None, epochs_done: int = 0) -> None:
        self.epochs, self.rows_per_epoch, self.enabled = epochs, rows_per_epoch, enabled
        # A resumed run starts its clock at epoch ``epochs_done``: the rate counts the rows since.
        self.epochs_done = epochs_done
        self.delay, self.interval = delay, interval
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self.next_print = self.start + delay
        self.printed = False

    def update(self, epoch: int, loss: float, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now < self.next_print and not (force and self.printed):
            return
        elapsed = now - self.start
        rate = (epoch - self.epochs_done) * self.rows_per_epoch / elapsed if elapsed > 0 else 0.0
        width = len(str(self.epochs))
        print(f"epoch {epoch:>{width}}/{self.epochs}  loss {loss:.6g}  {rate:,.0f} rows/s  {elapsed:.1f}s",
              file=self.stream, flush=True)
        self.printed = True
        self.next_print = now + self.interval
