"""The live view: each queue's depth over time, and what happened.

Owns the terminal output while the demo runs. On a terminal it redraws a block in place
(plain ANSI: cursor up, clear to end): one row per queue with its depth now, a
sparkline of its depth over time (one column per sample, every row on the same scale
so the queues compare) and the consuming service's state; events print above the
block. When stdout is not a terminal (a pipe, a log, CI) it prints one plain line per
``interval`` seconds instead, and events as lines.
Must not talk to the broker: the demo feeds it samples.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

BLOCKS = "▁▂▃▄▅▆▇█"
NAME_WIDTH = 14
#: title line, and per queue the text after its sparkline ("3,412 done, up")
Describe = Callable[[], tuple[str, dict[str, str]]]


def squeeze(values: list[int], columns: int) -> list[int]:
    """At most ``columns`` values: each the peak of an equal run of samples, so a long
    run still fits the line whole."""
    if len(values) <= columns:
        return values
    step = -(-len(values) // columns)
    return [max(values[i:i + step]) for i in range(0, len(values), step)]


def sparkline(values: list[int], scale: int) -> str:
    """Zero is a blank; anything above it at least the lowest block."""
    top = len(BLOCKS) - 1
    return "".join(" " if v <= 0 else BLOCKS[min(top, (v * top + scale - 1) // scale)]
                   for v in values)


class LiveView:
    def __init__(self, queues: tuple[str, ...], describe: Describe, *, tty: bool,
                 interval: float = 1.0, stream: TextIO = sys.stdout) -> None:
        self.queues = queues
        self.describe = describe
        self.tty = tty
        self.interval = interval
        self.stream = stream
        self.start = time.monotonic()
        self.history: dict[str, deque[int]] = {q: deque(maxlen=4000) for q in queues}
        self.depths: dict[str, int] = dict.fromkeys(queues, 0)
        self.peak: dict[str, int] = dict.fromkeys(queues, 0)
        self._drawn = 0
        self._last_line = float("-inf")

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def sample(self, depths: dict[str, int]) -> None:
        for queue in self.queues:
            depth = depths.get(queue, 0)
            self.depths[queue] = depth
            self.peak[queue] = max(self.peak[queue], depth)
            self.history[queue].append(depth)
        if self.tty:
            self._redraw()
        elif time.monotonic() - self._last_line >= self.interval:
            self._last_line = time.monotonic()
            self._write(self._plain_line() + "\n")

    def event(self, text: str) -> None:
        line = f"[{self.elapsed():6.1f}s] {text}\n"
        if self.tty:
            self._clear()
            self._write(line)
            self._redraw()
        else:
            self._write(line)

    def finish(self) -> None:
        """Leave the last frame (terminal) or a last line (otherwise) on screen."""
        if self.tty:
            self._redraw()
            self._drawn = 0
        else:
            self._write(self._plain_line() + "\n")

    def note(self, text: str) -> None:
        """A line below the frame, after :meth:`finish`."""
        self._write(text + "\n")

    # ---------------------------------------------------------------- rendering

    def _plain_line(self) -> str:
        title, states = self.describe()
        depth = " ".join(f"{q}={self.depths[q]}" for q in self.queues)
        state = ", ".join(f"{q}: {' '.join(s.split())}" for q, s in states.items())
        return f"[{self.elapsed():6.1f}s] {title} | depth {depth} | {state}"

    def _frame(self) -> list[str]:
        width = shutil.get_terminal_size((100, 24)).columns
        title, states = self.describe()
        tail = max(len(s) for s in states.values()) if states else 0
        columns = max(10, width - NAME_WIDTH - 8 - tail - 3)
        rows = {q: squeeze(list(h), columns) for q, h in self.history.items()}
        scale = max(1, *(max(values, default=0) for values in rows.values()))
        lines = [f"\x1b[1m{title[:width - 1]}\x1b[0m",
                 f"{'queue':<{NAME_WIDTH}} {'depth':>6}  depth over time (top = {scale})"]
        for queue in self.queues:
            spark = sparkline(rows[queue], scale)
            state = states.get(queue, "")
            if "down" in state:
                state = f"\x1b[31m{state}\x1b[0m"
            lines.append(f"{queue:<{NAME_WIDTH}} {self.depths[queue]:>6}  "
                         f"{spark:<{columns}} {state}")
        return lines

    def _redraw(self) -> None:
        self._clear()
        frame = self._frame()
        self._write("".join(line + "\n" for line in frame))
        self._drawn = len(frame)

    def _clear(self) -> None:
        if self._drawn:
            self._write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
