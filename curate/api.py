"""Library calls: thin faces that validate, build the stage objects, run them in-process and return frames.

Each section belongs to one part of the pipeline; keep them thin (the logic lives in the defining module).
"""

from __future__ import annotations

# --- ingest (issue 3) ---

# --- dedup (issue 4) ---

# --- embeddings and scoring (issues 5, 10) ---

# --- scaling and mixtures (issues 6, 7) ---

# --- pipeline (issue 8) ---
