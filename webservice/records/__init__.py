"""The prediction record: every answered tumor on record, with its confirmed outcome.

`ids` makes the prediction ids, `schema` declares the tables (SQLAlchemy Core), `migrations`
creates and upgrades them (Alembic), `store` reads and writes them, `writer` writes the answers
off the request path in group commits, `outcomes` validates outcomes sent back, and `cli` is
`oncology-db` (upgrade, purge, erase, export), `quality` computes realized and estimated
quality and the canary's verdict and `quality_cli` is `oncology-quality`. Nothing here imports
Flask.
"""
