"""keystep: consent-first recording of computer use, sealed at the source."""

__version__ = "0.1.0"
