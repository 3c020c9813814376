"""Alembic migrations of the AER database (applied with ``aer db upgrade`` / ``api.db.upgrade``)."""
