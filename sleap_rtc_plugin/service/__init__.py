"""``sleap-rtc-service``: run the worker as a system service and ask it how it is doing.

The modules split along one line each: ``paths`` (where files go), ``units`` (what the
files say), ``systemd`` / ``windows`` (how the OS is told), ``system_commands`` (the one seam
through which OS commands run), ``status`` / ``status_server`` (the merged health view),
``sdnotify`` (readiness and watchdog for systemd, used by the worker).
"""
