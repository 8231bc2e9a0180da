"""Run the command line: ``python -m flowseg``."""

from flowseg.cli import main

raise SystemExit(main())
