"""Labels, propagations and the label audit trail: the queries on the catalog's label tables.

The tables (`labels`, `propagations`, `label_events`, migration 0003) are declared with the rest of the
schema in `vidsearch.stores.catalog`; this module owns every query on them, and the one label
vocabulary (`Polarity`, `Source`, `Action`) that the tables, the search service and the API share.

One row per (object, label name) is the effective label: a human label replaces a propagated one of
the same name, and propagation never overwrites a human row. Every change appends to `label_events`.
Arguments are validated by the caller (`vidsearch.search.SearchService`); unknown objects and
propagations raise `NotFoundError`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from vidsearch.errors import NotFoundError
from vidsearch.stores.catalog import (
    chunks,
    existing_object_ids,
    label_events,
    labels,
    propagations,
    transient_db_errors,
    utc_now,
)

Polarity = Literal["positive", "negative"]
Source = Literal["human", "propagated"]  # who set a label: a person, or a propagation run
Action = Literal["add", "remove", "propagate", "undo"]  # what a label event records

POLARITIES: tuple[Polarity, ...] = get_args(Polarity)
SOURCES: tuple[Source, ...] = get_args(Source)
ACTIONS: tuple[Action, ...] = get_args(Action)
POSITIVE: Polarity = "positive"
NEGATIVE: Polarity = "negative"
HUMAN: Source = "human"
PROPAGATED: Source = "propagated"

# What an upsert of a label row replaces (the key columns stay).
_LABEL_VALUES = ("polarity", "source", "propagation_id", "score", "created_by", "updated_at")


def labels_column(objects_table: sa.Table) -> sa.Label[Any]:
    """A column for a select over `objects_table`: each object's effective labels, ordered by name, as
    a JSON array of label dicts (see `object_labels`), so a page of objects and their labels are one
    query and one round trip."""
    lb = labels
    fields = ("name", "polarity", "source", "score", "propagation_id")
    entry = sa.func.json_build_object(*[part for name in fields for part in (name, lb.c[name])])
    return (
        sa.select(
            sa.func.coalesce(
                sa.func.json_agg(pg.aggregate_order_by(entry, lb.c.name)), sa.text("'[]'::json"), type_=pg.JSON
            )
        )
        .where(lb.c.collection == objects_table.c.collection, lb.c.object_id == objects_table.c.object_id)
        .scalar_subquery()
        .label("labels_json")
    )


def object_labels(value: Any) -> list[dict[str, Any]]:
    """The label dicts of a `labels_column` value (a list from psycopg's JSON decoding)."""
    return [
        {
            "name": lb["name"],
            "polarity": lb["polarity"],
            "source": lb["source"],
            "score": lb["score"],
            "propagation_id": str(lb["propagation_id"]) if lb["propagation_id"] else None,
        }
        for lb in value or []
    ]


class LabelStore:
    """The labels of one catalog database. Every method is one transaction (or one read)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    # -- reads -----------------------------------------------------------------------------
    def counts(self, collection: str) -> list[dict[str, Any]]:
        """Per name, ordered by name: human positive, human negative and propagated label counts."""

        def n(cond: Any) -> Any:
            return sa.func.count().filter(cond)

        lb = labels
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    lb.c.name,
                    n(sa.and_(lb.c.source == HUMAN, lb.c.polarity == POSITIVE)).label("positive"),
                    n(sa.and_(lb.c.source == HUMAN, lb.c.polarity == NEGATIVE)).label("negative"),
                    n(lb.c.source == PROPAGATED).label("propagated"),
                )
                .where(lb.c.collection == collection)
                .group_by(lb.c.name)
                .order_by(lb.c.name)
            ).all()
        return [dict(r._mapping) for r in rows]

    def object_ids(self, collection: str, name: str, polarity: Polarity) -> list[str]:
        """The objects carrying label `name` with `polarity` (from any source), sorted."""
        with self.engine.connect() as conn:
            return _object_ids(conn, collection, name, polarity)

    def human_labeled(
        self, collection: str, name: str, limits: tuple[int | None, int | None] = (None, None)
    ) -> tuple[list[str], list[str]]:
        """(positive, negative): the objects a person labeled `name`, each list sorted; `limits` caps
        how many ids of each are read (the first ones in id order), so a caller can refuse a label
        that is too large without reading all of it."""
        with self.engine.connect() as conn:
            return (
                _object_ids(conn, collection, name, POSITIVE, HUMAN, limit=limits[0]),
                _object_ids(conn, collection, name, NEGATIVE, HUMAN, limit=limits[1]),
            )

    def negative_for_any(self, collection: str, names: Sequence[str]) -> set[str]:
        """The objects labeled negative for at least one of `names` (from any source)."""
        with self.engine.connect() as conn:
            return {
                str(r[0])
                for r in conn.execute(
                    sa.select(labels.c.object_id)
                    .distinct()
                    .where(
                        labels.c.collection == collection,
                        labels.c.polarity == NEGATIVE,
                        labels.c.name.in_(list(names)),
                    )
                ).all()
            }

    def events(self, collection: str, name: str, limit: int) -> list[dict[str, Any]]:
        """The audit trail of one label name, newest first, at most `limit` events."""
        ev = label_events
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(ev)
                .where(ev.c.collection == collection, ev.c.name == name)
                .order_by(ev.c.id.desc())
                .limit(limit)
            ).all()
        return [_event_dict(r) for r in rows]

    def propagations(self, collection: str, name: str) -> list[dict[str, Any]]:
        """Every propagation run of label `name`, newest first."""
        pr = propagations
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(pr)
                .where(pr.c.collection == collection, pr.c.name == name)
                .order_by(pr.c.created_at.desc(), pr.c.id)
            ).all()
        return [_propagation_dict(r) for r in rows]

    def get_propagation(self, collection: str, propagation_id: str) -> dict[str, Any]:
        """One propagation run (`NotFoundError` when the collection has none with that id)."""
        with self.engine.connect() as conn:
            row = conn.execute(_propagation_query(collection, propagation_id)).first()
        if row is None:
            raise _no_propagation(collection, propagation_id)
        return _propagation_dict(row)

    # -- writes ----------------------------------------------------------------------------
    def add(self, collection: str, object_ids: Sequence[str], name: str, polarity: Polarity, actor: str) -> int:
        """Set a human label on distinct objects, replacing whatever label of that name they had; returns
        how many rows were set. All or nothing: an unknown object id raises `NotFoundError`."""
        now = utc_now()
        rows = [
            dict(
                collection=collection,
                object_id=i,
                name=name,
                polarity=polarity,
                source=HUMAN,
                propagation_id=None,
                score=None,
                created_by=actor,
                updated_at=now,
            )
            for i in object_ids
        ]
        with transient_db_errors(), self.engine.begin() as conn:
            _require_objects(conn, collection, object_ids)
            insert = pg.insert(labels).values(rows)
            upsert = insert.on_conflict_do_update(
                index_elements=["collection", "object_id", "name"],
                set_={c: insert.excluded[c] for c in _LABEL_VALUES},
            ).returning(labels.c.object_id)
            updated = len(conn.execute(upsert).all())
            conn.execute(
                sa.insert(label_events),
                [
                    _event(collection, name, "add", actor, now, object_id=i, polarity=polarity, source=HUMAN)
                    for i in object_ids
                ],
            )
        return updated

    def remove(self, collection: str, object_ids: Sequence[str], name: str, actor: str) -> int:
        """Remove the human labels `name` of distinct objects (propagated ones stay); returns how many
        were removed. An unknown object id raises `NotFoundError` and removes nothing."""
        now = utc_now()
        lb = labels
        with transient_db_errors(), self.engine.begin() as conn:
            _require_objects(conn, collection, object_ids)
            removed = conn.execute(
                sa.delete(lb)
                .where(
                    lb.c.collection == collection,
                    lb.c.name == name,
                    lb.c.source == HUMAN,
                    lb.c.object_id.in_(list(object_ids)),
                )
                .returning(lb.c.object_id, lb.c.polarity)
            ).all()
            if removed:
                conn.execute(
                    sa.insert(label_events),
                    [
                        _event(
                            collection,
                            name,
                            "remove",
                            actor,
                            now,
                            object_id=str(r.object_id),
                            polarity=r.polarity,
                            source=HUMAN,
                        )
                        for r in removed
                    ],
                )
        return len(removed)

    def record_propagation(
        self,
        collection: str,
        name: str,
        *,
        sources: Sequence[str],
        negatives: Sequence[str],
        model: str,
        threshold: float,
        candidates: Sequence[tuple[str, float]],
        actor: str,
        unit: str = "object",
    ) -> dict[str, Any]:
        """Store `candidates` ((object id, score)) as propagated positive labels `name` of a new
        propagation run, with its provenance (sources, negatives, embedder model, threshold, and
        `unit`: whether objects or whole tracks were scored).

        A human label is never overwritten; an earlier propagation's label is taken over; candidates no
        longer in the catalog are left out. Returns `{"propagation_id", "count"}` (labels stored)."""
        pid = str(uuid.uuid4())
        now = utc_now()
        lb, pr = labels, propagations
        with transient_db_errors(), self.engine.begin() as conn:
            present = existing_object_ids(conn, collection, [i for i, _ in candidates])
            conn.execute(
                sa.insert(pr).values(
                    id=pid,
                    collection=collection,
                    name=name,
                    sources=list(sources),
                    negatives=list(negatives),
                    model=model,
                    threshold=threshold,
                    count=0,
                    unit=unit,
                    created_by=actor,
                    created_at=now,
                    undone_at=None,
                )
            )
            stored = 0
            rows = [
                dict(
                    collection=collection,
                    object_id=i,
                    name=name,
                    polarity=POSITIVE,
                    source=PROPAGATED,
                    propagation_id=pid,
                    score=s,
                    created_by=actor,
                    updated_at=now,
                )
                for i, s in candidates
                if i in present
            ]
            for chunk in chunks(rows, 2000):
                insert = pg.insert(lb).values(list(chunk))
                # A human label is never overwritten; an earlier propagation's label is taken over.
                upsert = insert.on_conflict_do_update(
                    index_elements=["collection", "object_id", "name"],
                    set_={c: insert.excluded[c] for c in _LABEL_VALUES},
                    where=lb.c.source == PROPAGATED,
                ).returning(lb.c.object_id)
                stored += len(conn.execute(upsert).all())
            conn.execute(sa.update(pr).where(pr.c.id == pid).values(count=stored))
            conn.execute(
                sa.insert(label_events).values(
                    **_event(
                        collection,
                        name,
                        "propagate",
                        actor,
                        now,
                        polarity=POSITIVE,
                        source=PROPAGATED,
                        propagation_id=pid,
                    )
                )
            )
        return {"propagation_id": pid, "count": stored}

    def undo_propagation(self, collection: str, propagation_id: str, actor: str) -> int:
        """Remove the labels this propagation stored and still owns; returns how many. Undoing twice
        removes nothing; an unknown propagation raises `NotFoundError`."""
        pid = propagation_id
        lb, pr = labels, propagations
        now = utc_now()
        with transient_db_errors(), self.engine.begin() as conn:
            row = conn.execute(_propagation_query(collection, pid).with_for_update()).first()
            if row is None:
                raise _no_propagation(collection, pid)
            if row.undone_at is not None:
                return 0
            removed = conn.execute(
                sa.delete(lb)
                .where(lb.c.collection == collection, lb.c.propagation_id == pid, lb.c.source == PROPAGATED)
                .returning(lb.c.object_id)
            ).all()
            conn.execute(sa.update(pr).where(pr.c.id == pid).values(undone_at=now))
            conn.execute(
                sa.insert(label_events).values(
                    **_event(
                        collection,
                        row.name,
                        "undo",
                        actor,
                        now,
                        polarity=POSITIVE,
                        source=PROPAGATED,
                        propagation_id=pid,
                    )
                )
            )
        return len(removed)


# ------------------------------------------------------------------------------------------ helpers


def _object_ids(
    conn: sa.Connection,
    collection: str,
    name: str,
    polarity: Polarity,
    source: Source | None = None,
    limit: int | None = None,
) -> list[str]:
    lb = labels
    query = sa.select(lb.c.object_id).where(lb.c.collection == collection, lb.c.name == name, lb.c.polarity == polarity)
    if source is not None:
        query = query.where(lb.c.source == source)
    query = query.order_by(lb.c.object_id)
    if limit is not None:
        query = query.limit(limit)
    return [str(r[0]) for r in conn.execute(query).all()]


def _require_objects(conn: sa.Connection, collection: str, object_ids: Sequence[str]) -> None:
    found = existing_object_ids(conn, collection, object_ids)
    missing = [i for i in object_ids if i not in found]
    if missing:
        raise NotFoundError(f"{len(missing)} unknown object id(s) in collection {collection!r}, e.g. {missing[0]!r}")


def _propagation_query(collection: str, propagation_id: str) -> sa.Select:
    pr = propagations
    return sa.select(pr).where(pr.c.collection == collection, pr.c.id == propagation_id)


def _no_propagation(collection: str, propagation_id: str) -> NotFoundError:
    return NotFoundError(f"no propagation {propagation_id!r} in collection {collection!r}")


def _event(
    collection: str,
    name: str,
    action: Action,
    actor: str,
    at: Any,
    *,
    object_id: str | None = None,
    polarity: Polarity | None = None,
    source: Source | None = None,
    propagation_id: str | None = None,
) -> dict[str, Any]:
    """One `label_events` row (object_id is None for whole-propagation events)."""
    return dict(
        collection=collection,
        object_id=object_id,
        name=name,
        action=action,
        polarity=polarity,
        source=source,
        propagation_id=propagation_id,
        actor=actor,
        at=at,
    )


def _label_dict(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "polarity": row.polarity,
        "source": row.source,
        "score": row.score,
        "propagation_id": str(row.propagation_id) if row.propagation_id else None,
    }


def _event_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "object_id": str(row.object_id) if row.object_id else None,
        "name": row.name,
        "action": row.action,
        "polarity": row.polarity,
        "source": row.source,
        "propagation_id": str(row.propagation_id) if row.propagation_id else None,
        "actor": row.actor,
        "at": row.at,
    }


def _propagation_dict(row: Any) -> dict[str, Any]:
    return {
        "propagation_id": str(row.id),
        "name": row.name,
        "sources": list(row.sources),
        "negatives": list(row.negatives),
        "model": row.model,
        "threshold": row.threshold,
        "unit": row.unit,
        "count": row.count,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "undone_at": row.undone_at,
    }
