"""Alembic migrations of the AER database (``aer db upgrade`` / ``api.store.db.upgrade``)."""
