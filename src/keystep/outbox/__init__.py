"""The device's durable outbox of sealed batches (SQLite WAL); the uploader drains it."""

from keystep.outbox.sqlite import Outbox, OutboxError, PendingBatch

__all__ = ["Outbox", "OutboxError", "PendingBatch"]
