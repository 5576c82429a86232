"""`airflow_settings.yaml`: the one source of connections, pools and variables.

The file uses the Astro CLI's format (`airflow: {connections, pools, variables}`). Its schema is the
pydantic model below. `python -m vidsearch_airflow.settings_loader FILE` applies it to an Airflow
metadata database (the docker-compose stack's `airflow-init` does); the embedded stack creates its
pools from it. Connections given as `AIRFLOW_CONN_*` environment variables still win over the
database, so placeholders in the file never shadow real settings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectionSetting(_Strict):
    conn_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    conn_type: str = Field(min_length=1)
    conn_host: str | None = None
    conn_schema: str | None = None
    conn_login: str | None = None
    conn_password: str | None = None
    conn_port: int | None = Field(None, ge=1, le=65535)
    conn_extra: dict[str, Any] | str | None = None

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
    pool_slot: int | Literal["cpus"] = Field(
        description='Slots: a number >= 0, or "cpus" for the cores of the machine applying the settings.'
    )
    pool_description: str = ""

    @field_validator("pool_slot")
    @classmethod
    def _non_negative(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("pool_slot must be >= 0")
        return value

    def slots(self) -> int:
        """The pool's slot count on this machine ("cpus": its cores)."""
        return (os.cpu_count() or 1) if self.pool_slot == "cpus" else int(self.pool_slot)


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
