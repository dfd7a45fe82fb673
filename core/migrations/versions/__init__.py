"""Migrations of the metadata store, one file per revision, chained by `down_revision`.

Adding a table or column (other parts of ondata: API keys, conversations, feedback, ...):
change the models, then add the next file here, e.g. `0003_api_keys.py` with
`down_revision = "0002"` (the newest revision below), written by hand or with
`python -m core.migrations revision -m "api keys" --autogenerate` against a scratch database.
Keep one linear chain (tests/integration/test_store.py checks there is a single head and that
the migrated schema matches core.db's models on SQLite and PostgreSQL).
"""
