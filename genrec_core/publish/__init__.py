"""Publishing scored lists: Postgres (COPY + partition swap) and object storage (parts + manifest)."""
