"""Durable state: SqlStore (SQLite or PostgreSQL) and the local blob store."""
