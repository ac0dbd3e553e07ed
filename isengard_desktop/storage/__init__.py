"""The volume (every path), the SQLite database and its migrations, and the repositories over it."""
