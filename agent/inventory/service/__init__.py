"""AWS:Service: one item per service: Name, DisplayName, ServiceType, Status, StartType (and
Windows' dependencies); a source per platform: systemd units (``_linux.py``), launchd jobs
(``_darwin.py``), Windows services (``_windows.py``)."""
