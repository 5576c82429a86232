"""`airflow_settings.yaml`: the one source of connections, pools and variables.

The file uses the Astro CLI's format (`airflow: {connections, pools, variables}`). Its schema is the
pydantic model below; `load_settings` applies it to an Airflow metadata database through the `airflow`
CLI (idempotent: existing entries are replaced), for the embedded stack (`make up`) and the
docker-compose stack (`airflow-init`) alike. Connections given as `AIRFLOW_CONN_*` environment
variables still win over the database, so placeholders in the file never shadow real settings.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectionSetting(_Strict):
    conn_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    conn_type: str = Field(min_length=1)
    conn_host: Optional[str] = None
    conn_schema: Optional[str] = None
    conn_login: Optional[str] = None
    conn_password: Optional[str] = None
    conn_port: Optional[int] = Field(None, ge=1, le=65535)
    conn_extra: Optional[Union[dict[str, Any], str]] = None

    def as_json(self) -> str:
        """The connection in Airflow's JSON form (as `airflow connections add --conn-json` takes it)."""
        extra = self.conn_extra
        data = {
            "conn_type": self.conn_type,
            "host": self.conn_host,
            "schema": self.conn_schema,
            "login": self.conn_login,
            "password": self.conn_password,
            "port": self.conn_port,
            "extra": json.loads(extra) if isinstance(extra, str) else extra,
        }
        return json.dumps({k: v for k, v in data.items() if v is not None})


class PoolSetting(_Strict):
    pool_name: str = Field(min_length=1)
    pool_slot: int = Field(ge=0)
    pool_description: str = ""


class VariableSetting(_Strict):
    variable_name: str = Field(min_length=1)
    variable_value: str


class AirflowSection(_Strict):
    connections: list[ConnectionSetting] = Field(default_factory=list)
    pools: list[PoolSetting] = Field(default_factory=list)
    variables: list[VariableSetting] = Field(default_factory=list)


class AirflowSettings(_Strict):
    airflow: AirflowSection


def read_settings(path: Path) -> AirflowSettings:
    """Parse and validate the file; raises ValueError naming what is wrong."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with an 'airflow' key")
    settings = AirflowSettings.model_validate(data)
    for kind, names in (
        ("connection", [c.conn_id for c in settings.airflow.connections]),
        ("pool", [p.pool_name for p in settings.airflow.pools]),
        ("variable", [v.variable_name for v in settings.airflow.variables]),
    ):
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{path}: duplicate {kind}(s): {', '.join(dupes)}")
    return settings


def load_settings(path: Path) -> AirflowSettings:
    """Apply connections, pools and variables of `path` to the Airflow database this process is
    configured for (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN). Idempotent: entries are replaced."""
    settings = read_settings(path)
    # Imported here: devstack itself must not import Airflow (it starts Airflow as subprocesses).
    import sqlalchemy as sa
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        for conn in settings.airflow.connections:
            session.execute(sa.delete(Connection).where(Connection.conn_id == conn.conn_id))
            session.add(Connection.from_json(conn.as_json(), conn_id=conn.conn_id))
        for pool in settings.airflow.pools:
            Pool.create_or_update_pool(
                pool.pool_name, pool.pool_slot, pool.pool_description, include_deferred=False, session=session
            )
    for var in settings.airflow.variables:
        Variable.set(var.variable_name, var.variable_value)
    return settings


def main(argv: Optional[list[str]] = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m devstack.settings FILE", file=sys.stderr)
        return 2
    settings = load_settings(Path(args[0]))
    a = settings.airflow
    print(f"loaded {len(a.connections)} connections, {len(a.pools)} pools, {len(a.variables)} variables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
