"""`python -m curate` runs the CLI."""

from curate.cli import main

raise SystemExit(main())
