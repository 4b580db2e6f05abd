"""The PostgreSQL store: one database shared by several replicas of ackd (storage.postgres).
Its schema follows the SQLite store's migration by migration, in PostgreSQL's dialect."""
