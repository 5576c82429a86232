"""Apply `airflow_settings.yaml` (connections, pools, variables) to the Airflow metadata database.

    python -m vidsearch_airflow.settings_loader airflow_settings.yaml

Idempotent: connections are replaced, pools and variables upserted. The file's schema is
`vidsearch_airflow.airflow_settings` (the dev stack reads it from there too).
"""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa
from airflow.models import Connection, Pool, Variable
from airflow.utils.session import create_session

from vidsearch_airflow.airflow_settings import AirflowSettings, read_settings


def load_settings(path: Path) -> AirflowSettings:
    """Apply connections, pools and variables of `path` to the Airflow database this process is
    configured for (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)."""
    settings = read_settings(path)
    with create_session() as session:
        for conn in settings.airflow.connections:
            session.execute(sa.delete(Connection).where(Connection.conn_id == conn.conn_id))
            session.add(Connection.from_json(conn.as_json(), conn_id=conn.conn_id))
        for pool in settings.airflow.pools:
            Pool.create_or_update_pool(
                pool.pool_name, pool.slots(), pool.pool_description, include_deferred=False, session=session
            )
    for var in settings.airflow.variables:
        Variable.set(var.variable_name, var.variable_value)
    return settings


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m vidsearch_airflow.settings_loader FILE", file=sys.stderr)
        return 2
    settings = load_settings(Path(args[0]))
    a = settings.airflow
    print(f"loaded {len(a.connections)} connections, {len(a.pools)} pools, {len(a.variables)} variables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
