"""The collector: ingest, enrollment, leases and fleet control behind the HTTP layer."""
