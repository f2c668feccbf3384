"""Execution: the step list, the runner, the Ray runtime and executor (only here is Ray).

`pipelines.run(config)` runs the whole curation (pipelines/runner.py); it is imported lazily so that
`import pipelines` stays cheap.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "run":
        from pipelines.runner import run

        return run
    raise AttributeError(f"module 'pipelines' has no attribute '{name}'")
