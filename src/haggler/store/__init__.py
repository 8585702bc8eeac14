"""Durable storage through SQLAlchemy: the tables, the Alembic migrations applied at start, and
one module per aggregate (catalogue, negotiations, experiences, model snapshots, experiments,
metrics, counters, maintenance): the only code that talks to the database.

Imports `core` and `policy`'s plain types; never torch, never the web."""
