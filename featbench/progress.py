"""Progress of long work: tqdm bars on a terminal, plain lines in logs.

When stderr is a terminal, :func:`progress` is a tqdm bar. When it is not (a log
file, nohup, CI), bars would print nothing until the end, so it prints one line
per stage instead: when the stage starts, at most every :data:`LINE_INTERVAL`
seconds while it runs, and when it ends. ``-q`` turns both off.
"""

from __future__ import annotations

import sys
import threading
import time

from tqdm.auto import tqdm

_settings: dict[str, object] = {"progress": None}

#: seconds between two progress lines of one stage in a log
LINE_INTERVAL = 30.0


def set_progress(enabled: bool | None) -> None:
    """True: always show; False: never; None: bars on a terminal, lines otherwise."""
    _settings["progress"] = enabled


def progress_disabled() -> bool | None:
    """``disable`` argument for tqdm: None lets tqdm hide bars when not on a terminal."""
    p = _settings["progress"]
    return None if p is None else not p


def progress(iterable=None, *, log: bool = True, **kwargs):
    """A progress bar that follows the configured setting (see the module docstring).

    ``log=False`` marks an inner bar (a chunk within a stage): shown on a terminal,
    silent when progress goes to a log as lines.
    """
    p = _settings["progress"]
    if p is None and "disable" not in kwargs and not _is_terminal():
        if not log:
            kwargs["disable"] = True
        else:
            return LineProgress(iterable, **kwargs)
    kwargs.setdefault("disable", progress_disabled())
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _ending(exc_type: type[BaseException] | None) -> str:
    """The last word of a stage's line: how it ended."""
    if exc_type is None:
        return "done"
    return "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"


def finish(bar, failed: int = 0) -> None:
    """Close ``bar``, a stage of ``bar.total`` items of which ``failed`` failed: its last
    line says so instead of "done" (a tqdm bar shows it as its postfix)."""
    if failed:
        text = f"{failed} of {getattr(bar, 'n', 0)} {getattr(bar, 'unit', 'item')}(s) failed"
        if isinstance(bar, LineProgress):
            bar._finish(f"ended: {text}")
            return
        bar.set_postfix_str(text)
    bar.close()


class LineProgress:
    """The part of tqdm's interface featbench uses, printing plain lines to stderr.

    Thread-safe: extractors update it from worker threads.
    """

    def __init__(self, iterable=None, *, total=None, desc=None, unit="it", file=None,
                 interval: float | None = None, **_ignored) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit = total, desc or "", unit
        self.n = 0
        self.postfix = ""
        self.file = file
        self.interval = LINE_INTERVAL if interval is None else interval
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last = self._start
        self._closed = False
        self._emit("started")

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._finish(_ending(exc_type))

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.n += n
            now = time.monotonic()
            due = now - self._last >= self.interval
            if due:
                self._last = now
        if due:
            self._emit()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s
        if s:
            self._emit()

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        """End the stage: "done", or "interrupted" / "failed" when called while an
        exception propagates (a ``finally`` clause after Ctrl-C or an error)."""
        self._finish(_ending(sys.exc_info()[0]))

    def _finish(self, state: str) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._emit(state)

    def _emit(self, state: str = "") -> None:
        elapsed = time.monotonic() - self._start
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = f", {self.n / elapsed:.1f} {self.unit}/s" if elapsed > 0 and self.n else ""
        extra = f" [{self.postfix}]" if self.postfix else ""
        tail = f" {state}" if state else ""
        line = f"{self.desc}: {count} {self.unit}{pct}, {elapsed:.0f} s{rate}{extra}{tail}"
        print(line, file=self.file or sys.stderr, flush=True)
