"""Shared state behind small async protocols: counters (memory, Redis) and storage (SQLite,
PostgreSQL). The request path only ever talks to these protocols."""
