"""PostgreSQL: connections, named SQL blocks, migrations and COPY helpers."""
