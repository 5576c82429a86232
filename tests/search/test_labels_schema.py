"""Migration 0003 (labels, propagations, label_events): it upgrades, downgrades and upgrades again, and the
migrated schema matches the table definitions in `vidsearch.stores.catalog`."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_labels_migration_round_trip_matches_the_tables(pg_server):
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config
    from vidsearch.stores import catalog as cat

    pg_server.ensure_database("labels_migration")
    engine = sa.create_engine(cat.sqlalchemy_url(pg_server.url("labels_migration")))
    try:
        cat.migrate(engine)
        cfg = Config()
        cfg.set_main_option("script_location", str(cat.MIGRATIONS_DIR))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002")
        with engine.connect() as conn:
            assert not {"labels", "propagations", "label_events"} & set(sa.inspect(conn).get_table_names())
        cat.migrate(engine)
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            for table in (cat.labels, cat.propagations, cat.label_events):
                columns = {c["name"]: c for c in inspector.get_columns(table.name)}
                assert set(columns) == {c.name for c in table.columns}, table.name
                for column in table.columns:
                    assert columns[column.name]["nullable"] == column.nullable, (table.name, column.name)
                assert inspector.get_pk_constraint(table.name)["constrained_columns"] == [
                    c.name for c in table.primary_key.columns
                ]
            fks = inspector.get_foreign_keys("labels")
            assert [(fk["referred_table"], fk["options"].get("ondelete")) for fk in fks] == [("objects", "CASCADE")]
    finally:
        engine.dispose()
