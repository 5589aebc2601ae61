"""Logs and progress that read well on a terminal and in a cron job's log file.

On a terminal: rich's coloured log lines and live progress bars. Anywhere else (cron, CI, a
pipe, ``dvc repro`` writing to a file): one line per message, so that ``grep`` finds whole
messages, each with its ISO 8601 date and time, level and logger::

    2026-11-29T02:00:04+0000 INFO pipelines.score_job: run 20261129T020000-1a2b3c4d succeeded: ...

and progress as plain log lines, ``reading tables: 2 of 4 (50%)``, at most one per task every
:data:`PLAIN_PROGRESS_EVERY_S` seconds (and always the last one).
"""

from __future__ import annotations

import logging
import os
import time
from types import TracebackType

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from features.urls import mask_secrets

log = logging.getLogger("leadscore.progress")

#: Seconds between two plain progress lines of one task (the environment variable
#: LEADSCORE_PROGRESS_EVERY_S overrides it: a cron log may want fewer lines).
PLAIN_PROGRESS_EVERY_S = 30.0
#: What each task of a long command is called in progress lines.
TASK_LABELS = {
    "read": "reading tables",
    "validate": "validating tables",
    "features": "building features",
    "score": "scoring and explaining",
    "write": "writing back",
    "days": "simulating days",
}
#: Plain log lines: ISO date and time, level, logger, the message on one line.
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PLAIN_DATEFMT = "%Y-%m-%dT%H:%M:%S%z"


class OneLineFormatter(logging.Formatter):
    """One line per record: line breaks in a message become `` | ``; secrets in URLs masked."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record on one line (a traceback, if any, is folded into it too)."""
        return mask_secrets(super().format(record)).replace("\r\n", " | ").replace("\n", " | ")


class _MaskingRichHandler(RichHandler):
    def emit(self, record: logging.LogRecord) -> None:
        record.msg = mask_secrets(record.getMessage())
        record.args = None
        super().emit(record)


def configure_logging(level: int, console: Console) -> None:
    """Rich handler on a terminal, else :class:`OneLineFormatter` lines on ``console``'s stream."""
    if console.is_terminal:
        handler: logging.Handler = _MaskingRichHandler(
            console=console, show_path=False, rich_tracebacks=True, log_time_format="[%Y-%m-%d %X]"
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(OneLineFormatter(PLAIN_FORMAT, datefmt=PLAIN_DATEFMT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Libraries that log chatty INFO lines of their own (alembic on every MLflow store open;
    # Dask's scheduler, nannies and workers on every cluster start and stop).
    for name in ("alembic", "urllib3", "httpx", "distributed"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


class ProgressReporter:
    """A ``progress(task, done, total)`` callback: rich bars on a terminal, log lines elsewhere.

    Use as a context manager around the work; pass the instance as the ``progress`` callback.
    """

    def __init__(self, console: Console, every_s: float | None = None, clock=time.monotonic):
        self.console = console
        self.plain = not console.is_terminal
        env = os.environ.get("LEADSCORE_PROGRESS_EVERY_S")
        self.every_s = float(env) if every_s is None and env else every_s or PLAIN_PROGRESS_EVERY_S
        self.clock = clock
        self._bar: Progress | None = None
        self._tasks: dict[str, int] = {}
        self._last: dict[str, float] = {}

    def __enter__(self) -> ProgressReporter:
        if not self.plain:
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            self._bar = Progress(*columns, console=self.console, transient=True)
            self._bar.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, error, tb)

    def __call__(self, task: str, done: int, total: int) -> None:
        """Report that ``done`` of ``total`` units of ``task`` are finished."""
        label = TASK_LABELS.get(task, task)
        if self._bar is not None:
            if task not in self._tasks:
                self._tasks[task] = self._bar.add_task(label, total=total)
            self._bar.update(self._tasks[task], completed=done, total=total)
            return
        now = self.clock()
        finished = total > 0 and done >= total
        first = task not in self._last
        if not (first or finished or now - self._last[task] >= self.every_s):
            return
        self._last[task] = now
        share = f" ({done / total:.0%})" if total > 0 else ""
        log.info("%s: %s of %s%s", label, f"{done:,}", f"{total:,}", share)
