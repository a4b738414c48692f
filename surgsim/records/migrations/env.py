"""Alembic environment: runs on the connection :func:`surgsim.records.db.upgrade` hands over.

No alembic.ini is needed at run time; to write a new revision by hand, copy the
latest file in ``versions/`` and give it the next ``revision`` and ``down_revision``.
"""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    render_as_batch=True,  # SQLite alters tables by copying them
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
