"""The system's clock."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


OFFSET_SECONDS_MAX = 10 * 366 * 24 * 3600
_REREAD_S = 0.5


class OffsetClock:
    """The system clock plus the seconds written in a file (a whole number or a decimal),
    re-read at most every half second and only when the file changed. A missing or unreadable
    file keeps the last offset read (0 at first): time never jumps back by accident."""

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self._offset = timedelta(0)
        self._checked_at = float("-inf")
        self._seen: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def now(self) -> datetime:
        moment = time.monotonic()
        if moment - self._checked_at >= _REREAD_S:
            with self._lock:
                self._checked_at = moment
                self._reread()
        return datetime.now(UTC) + self._offset

    def _reread(self) -> None:
        try:
            stat = self._path.stat()
            seen = (stat.st_mtime_ns, stat.st_size)
            if seen == self._seen:
                return
            seconds = float(self._path.read_text().strip() or "0")
        except (OSError, ValueError):
            return
        if not 0 <= seconds <= OFFSET_SECONDS_MAX:
            return
        self._seen = seen
        self._offset = max(self._offset, timedelta(seconds=seconds))
