"""Durable storage: SQLAlchemy tables, the repository (the only code that talks to the database),
and the Alembic migrations applied at start."""
