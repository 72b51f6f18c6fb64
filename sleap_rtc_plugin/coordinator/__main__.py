"""``python -m sleap_rtc_plugin.coordinator``: run the coordinator server."""

import sys

from .cli import main

sys.exit(main())
