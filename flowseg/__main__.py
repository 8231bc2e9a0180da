"""Run the command line: ``python -m flowseg``."""

from flowseg.apps.cli import main

raise SystemExit(main())
