"""Collector storage: the metadata repository (SQLite, PostgreSQL) and blob stores."""
