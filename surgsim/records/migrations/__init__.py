"""Alembic migrations of the attempt database (run by :class:`surgsim.records.Records` on open)."""
