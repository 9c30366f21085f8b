"""Platform capture sources behind small interfaces (X11 first)."""
