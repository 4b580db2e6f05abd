"""The embedded SQLite store, ackd's default: the writer and its reads (`store`), one
transaction's statements split by what they serve (`transaction` and its seams), the schema
migrations, the WAL index guard, online backup and the one-daemon-per-store lock."""
