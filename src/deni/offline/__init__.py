"""The offline client: its own SQLite database, a mutation queue, and sync with the server."""
