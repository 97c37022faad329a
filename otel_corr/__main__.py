"""``python -m otel_corr``: the same as the ``otel-corr`` command."""

import sys

from .cli import main

sys.exit(main())
