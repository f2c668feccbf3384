"""Ray-side execution: the runtime, the Ray executor and the end-to-end curation DAG (only here is Ray).

`pipelines.run(config)` runs the whole curation (pipelines/curate_pipeline.py); it is imported lazily so
that `import pipelines` stays cheap.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "run":
        from pipelines.curate_pipeline import run

        return run
    raise AttributeError(f"module 'pipelines' has no attribute '{name}'")
