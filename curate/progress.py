"""The terminal during a run: one progress line per step (counts, rate, ETA) and nothing else by default.

`StepProgress` is the pipeline's reporter: `start(name)` opens a line for a step, `advance_for(what, total)`
returns the callback its executor calls as work finishes. `quiet_libraries` silences the model-load logs and
tokenizer/distillation bars of third-party libraries (kept with `verbose`), in this process and in the
workers it starts (environment variables).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_NOISY_LOGGERS = ("sentence_transformers", "model2vec", "transformers", "torch", "faiss", "ray", "filelock")


def quiet_libraries(*, verbose: bool = False) -> None:
    """Silence third-party progress bars and info logs (here and in worker processes) unless `verbose`.
    RAY_BACKEND_LOG_LEVEL stays unset: Ray's core logs a line to the terminal whenever it reads it."""
    if verbose:
        return
    for var, value in (
        ("TQDM_DISABLE", "1"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TOKENIZERS_PARALLELISM", "false"),
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("RAY_DEDUP_LOGS", "1"),
    ):
        os.environ.setdefault(var, value)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


class StepProgress:
    """One rich progress line per pipeline step, with counts and ETA where the step knows its total."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> StepProgress:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self._finish()
        elif self._task is not None:  # the step that raised: say so instead of ticking it
            name = self._progress.tasks[self._task].description
            self._progress.update(self._task, description=f"{name} (failed)", visible=True)
            self._progress.stop_task(self._task)
        self._progress.stop()

    def _finish(self) -> None:
        if self._task is not None:
            task = self._progress.tasks[self._task]
            self._progress.update(self._task, total=task.completed or 1, completed=task.completed or 1)

    def start(self, name: str) -> None:
        """Open the line of step `name` (and close the previous step's)."""
        self._finish()
        self._task = self._progress.add_task(name, total=None, unit="")

    def advance_for(self, what: str, total: int | None) -> Callable[[int], None]:
        """The callback that counts `total` units of `what` of the current step."""
        task = self._task
        if task is None:
            return lambda n: None
        self._progress.update(task, total=total, completed=0, unit=what)
        return lambda n: self._progress.advance(task, n)
