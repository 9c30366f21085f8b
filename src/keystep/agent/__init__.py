"""The enrolled device: enroll once, hold a recording lease, upload from the outbox."""
