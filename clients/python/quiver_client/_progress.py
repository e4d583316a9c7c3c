"""Progress for long calls (upsert, import_items, rebuild_index, backup): a tqdm bar
when tqdm is installed (Debian: python3-tqdm), else one plain line on stderr rewritten
at most twice a second, and a closing summary line."""
from __future__ import annotations

import sys
import time
from typing import Any, Optional, TextIO


class Progress:
    def __init__(self, enabled: bool, total: Optional[int], desc: str, unit: str = "rows",
                 stream: Optional[TextIO] = None) -> None:
        self.enabled = enabled
        self.total = total
        self.desc = desc
        self.unit = unit
        self.done = 0
        self.t0 = time.monotonic()
        self.last = 0.0
        self.stream = stream if stream is not None else sys.stderr
        self.bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, desc=desc, unit=" " + unit, unit_scale=True,
                                file=self.stream)
            except ImportError:
                self.bar = None

    def set(self, done: int, total: Optional[int] = None, desc: Optional[str] = None) -> None:
        """Absolute progress (and, for rebuilds, a new total and phase)."""
        if total is not None and total != self.total:
            self.total = total
            if self.bar is not None:
                self.bar.total = total
        if desc is not None and desc != self.desc:
            self.desc = desc
            if self.bar is not None:
                self.bar.set_description(desc)
        self.update(done - self.done)

    def update(self, n: int) -> None:
        if not self.enabled:
            return
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= 0.5:
            self.last = now
            self.stream.write("\r" + self._line(now) + " " * 4)
            self.stream.flush()

    def _line(self, now: float) -> str:
        el = max(now - self.t0, 1e-9)
        rate = self.done / el
        s = "%s: %d" % (self.desc, self.done)
        if self.total:
            s += "/%d %s (%.0f%%)" % (self.total, self.unit, 100.0 * self.done / self.total)
            if rate > 0 and self.done < self.total:
                s += " ETA %.0fs" % ((self.total - self.done) / rate)
        else:
            s += " " + self.unit
        return s + ", %.0f %s/s" % (rate, self.unit)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
            return
        now = time.monotonic()
        self.stream.write("\r%s in %.1fs\n" % (self._line(now), now - self.t0))
        self.stream.flush()
