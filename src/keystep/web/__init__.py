"""The collector's HTTP API (FastAPI): thin routes over :mod:`keystep.collector.service`."""
