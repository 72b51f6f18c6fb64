"""Test-session environment: offscreen Qt, loopback ICE, and a private config/data dir.

Set before any test module imports Qt, aiortc or platformdirs, so no test reads or
writes the real user's sleap-rtc config, secrets or data.
"""

from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="sleap-rtc-tests-")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("SLEAP_SKIP_QT_FIX", "1")
os.environ["SLEAP_RTC_ICE_LOOPBACK"] = "1"
os.environ["XDG_CONFIG_HOME"] = os.path.join(_HOME, "config")
os.environ["XDG_DATA_HOME"] = os.path.join(_HOME, "data")
os.environ["XDG_CACHE_HOME"] = os.path.join(_HOME, "cache")
for _name in list(os.environ):
    if _name.startswith("SLEAP_RTC_") and _name not in ("SLEAP_RTC_ICE_LOOPBACK", "SLEAP_RTC_UPDATE_SCREENSHOTS"):
        del os.environ[_name]

# Imported up front: hypothesis's pytest plugin imports it lazily in the terminal summary, and on
# CPython 3.11.7 an ast.parse that late in a run that trained with sleap-nn can fail with
# "SystemError: AST constructor recursion depth mismatch" (pytest's rewrite hook parses it),
# turning a passing run into exit 1.
import hypothesis  # noqa: E402,F401
