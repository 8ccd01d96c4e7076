"""`python -m jobwire`: the `jobwire` command."""

from jobwire.cli.main import main

raise SystemExit(main())
