"""Ray-side execution: the runtime, the Ray executor and the end-to-end curation DAG (only here is Ray)."""
