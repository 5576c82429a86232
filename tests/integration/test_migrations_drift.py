"""The Alembic migrations build exactly the schema the table definitions of `vidsearch.stores.catalog` declare.

A fresh database is upgraded to head by the project's own `migrate`, then Alembic's autogenerate
comparison (`compare_metadata`) lists every difference from the models' MetaData: tables, columns,
types, nullability, indexes, unique constraints and foreign keys. Not compared: server defaults (the
models set timestamps in Python, the migrations also give them a `now()` server default) and CHECK
constraints (Alembic does not compare them). The second test breaks a scratch copy of the migrated
schema on purpose, to show the comparison sees such changes.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.integration

VERSION_TABLE = "alembic_version"


@pytest.fixture()
def migrated_engine(pg_server):
    """An engine on a new, empty database migrated to head by `vidsearch.stores.catalog.migrate`."""
    import sqlalchemy as sa
    from vidsearch.stores import catalog as cat

    name = f"drift_{uuid.uuid4().hex[:12]}"
    assert pg_server.ensure_database(name), f"database {name} already exists"
    engine = sa.create_engine(cat.sqlalchemy_url(pg_server.url(name)))
    try:
        cat.migrate(engine)
        yield engine
    finally:
        engine.dispose()


def _schema_diff(engine) -> list[Any]:
    """Alembic's autogenerate differences between the database and the models' MetaData."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from vidsearch.stores import catalog as cat

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, cat.metadata)


def _format(diff: list[Any]) -> str:
    return "\n".join(f"  {entry!r}" for entry in diff)


def test_migrated_schema_matches_the_models(migrated_engine):
    import sqlalchemy as sa
    from vidsearch.stores import catalog as cat

    with migrated_engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert tables - {VERSION_TABLE} == set(cat.metadata.tables), (
        f"only migrated: {sorted(tables - {VERSION_TABLE} - set(cat.metadata.tables))}, "
        f"only in the models: {sorted(set(cat.metadata.tables) - tables)}"
    )
    diff = _schema_diff(migrated_engine)
    if diff:
        print("schema drift between the migrations and the models:\n" + _format(diff))
    assert diff == [], "the migrated schema differs from the models:\n" + _format(diff)


def test_the_comparison_sees_a_changed_column_index_and_foreign_key(migrated_engine):
    """Drift made on purpose in this scratch database shows up, each change by its kind."""
    import sqlalchemy as sa

    with migrated_engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE objects ALTER COLUMN label DROP NOT NULL"))
        conn.execute(sa.text("ALTER TABLE objects ALTER COLUMN score TYPE text"))
        conn.execute(sa.text("DROP INDEX ix_channel_items_run"))
        fk = sa.inspect(conn).get_foreign_keys("labels")[0]["name"]
        conn.execute(sa.text(f'ALTER TABLE labels DROP CONSTRAINT "{fk}"'))

    diff = _schema_diff(migrated_engine)
    flat = [entry for item in diff for entry in (item if isinstance(item, list) else [item])]
    found = {(entry[0], *entry[2:4]) for entry in flat if entry[0] in ("modify_nullable", "modify_type")}
    assert ("modify_nullable", "objects", "label") in found, _format(diff)
    assert ("modify_type", "objects", "score") in found, _format(diff)
    assert any(e[0] == "add_index" and e[1].name == "ix_channel_items_run" for e in flat), _format(diff)
    assert any(e[0] == "add_fk" and e[1].parent.name == "labels" for e in flat), _format(diff)


@pytest.mark.parametrize("start", ["0006", "0007", "0008", "0009"])
def test_an_install_at_an_earlier_revision_with_data_upgrades_to_the_models(pg_server, start):
    """A catalog left at an earlier head (an install upgraded by a newer release), with a collection, a
    video, an object and a propagation in it, is brought to head by `migrate` on first use: the rows
    stay, and the schema then matches the models (the gap the 0007 -> 0008 split once left open)."""
    import sqlalchemy as sa
    from alembic import command
    from vidsearch.stores import catalog as cat

    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    assert pg_server.ensure_database(name)
    engine = sa.create_engine(cat.sqlalchemy_url(pg_server.url(name)))
    try:
        cfg = cat._alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, start)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO collections (name, embedder_model, embedding_dim, weaviate_collection) "
                    "VALUES ('c', 'emb', 4, 'VideoObjects_c')"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO propagations (id, collection, name, sources, negatives, model, threshold, count, "
                    "created_by) VALUES (:id, 'c', 'cat', '[]', '[]', 'emb', 0.5, 0, 'someone')"
                ),
                {"id": str(uuid.uuid4())},
            )
        assert not cat.schema_is_current(engine)
        cat.migrate(engine)
        assert cat.schema_is_current(engine)
        assert _schema_diff(engine) == []
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT name FROM collections")).scalars().all() == ["c"]
            assert conn.execute(sa.text("SELECT unit FROM propagations")).scalars().all() == ["object"]
    finally:
        engine.dispose()
