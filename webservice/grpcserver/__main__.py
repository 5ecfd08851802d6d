"""`python -m webservice.grpcserver`: see `webservice.grpcserver.server`."""

import sys

from webservice.grpcserver.server import main

sys.exit(main())
