"""The bottom layer: events, manifests, batch contents. No I/O here."""
