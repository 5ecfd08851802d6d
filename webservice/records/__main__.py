"""`python -m webservice.records`: the `oncology-db` command."""

import sys

from webservice.records.cli import main

sys.exit(main())
