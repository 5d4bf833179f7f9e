"""Alembic migrations of the storage schema; ``state.migrate`` runs them."""
