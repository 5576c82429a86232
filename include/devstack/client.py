"""A small client for the stack's Airflow REST API (v2): what the demo, the end-to-end benchmark and
the real-scheduler tests use to trigger `video_ingest` runs and read what they did.

It signs in through the simple auth manager (`/auth/token`) and keeps the JWT on a session. Never
imports Airflow.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import requests

from . import StackConfig

TERMINAL_RUN_STATES = frozenset({"success", "failed"})


def timestamp(value: str | None) -> float | None:
    """Unix seconds of an ISO 8601 date from the API (None stays None)."""
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def xcom_value(value: Any) -> Any:
    """The Python value of an XCom as the API returns it: JSON text, possibly wrapped by Airflow's
    serde (`__data__` / `__var`)."""
    for _ in range(3):
        if isinstance(value, str):
            try:
                value = json.loads(value)
                continue
            except ValueError:
                return value
        if isinstance(value, dict) and "__data__" in value and ("__classname__" in value or "__version__" in value):
            value = value["__data__"]
            continue
        if isinstance(value, dict) and set(value) >= {"__var", "__type"}:
            value = value["__var"]
            continue
        break
    return value


class AirflowClient:
    """The Airflow REST API of one deployment, signed in as one user."""

    def __init__(self, base: str, username: str, password: str, timeout_s: float = 30.0) -> None:
        self.base = base.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self._credentials = {"username": username, "password": password}
        self._sign_in()

    def _sign_in(self) -> None:
        reply = self.session.post(f"{self.base}/auth/token", json=self._credentials, timeout=self.timeout_s)
        if reply.status_code >= 400:
            raise RuntimeError(
                f"sign-in to {self.base} as {self._credentials['username']} failed: "
                f"HTTP {reply.status_code} {reply.text[:300]}"
            )
        self.session.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; an expired token (401) is renewed once."""
        url = f"{self.base}/api/v2/{path}"
        reply = self.session.request(method, url, timeout=self.timeout_s, **kwargs)
        if reply.status_code == 401:
            self._sign_in()
            reply = self.session.request(method, url, timeout=self.timeout_s, **kwargs)
        if reply.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> HTTP {reply.status_code}: {reply.text[:500]}")
        return reply.json() if reply.content else None

    def close(self) -> None:
        self.session.close()

    @classmethod
    def for_stack(cls, cfg: StackConfig | None = None) -> AirflowClient:
        """Signed in as the embedded stack's admin user."""
        from .airflow import ADMIN_USER, admin_password, api_url

        cfg = cfg or StackConfig.from_env()
        return cls(api_url(cfg), ADMIN_USER, admin_password(cfg))

    # -- plain calls -----------------------------------------------------------------------------
    def get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params=params)

    def send(self, method: str, path: str, body: dict) -> Any:
        return self._request(method, path, json=body)

    # -- runs --------------------------------------------------------------------------------------
    def wait_for_dag(self, dag_id: str, timeout_s: float = 300) -> None:
        """Until the DAG is parsed (raises on import errors or at the timeout); unpauses it."""
        deadline = time.monotonic() + timeout_s
        while True:
            errors = self.get("importErrors").get("import_errors", [])
            if errors:
                raise RuntimeError(f"DAG import errors: {errors}")
            try:
                self.get(f"dags/{dag_id}")
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{dag_id} did not appear in Airflow within {timeout_s:.0f} s") from None
                time.sleep(1)
        self.send("PATCH", f"dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict, run_id: str | None = None) -> str:
        """Start a run now with `conf`; returns its run id."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        return self.send("POST", f"dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"dags/{dag_id}/dagRuns/{run_id}")

    def fail_run(self, dag_id: str, run_id: str) -> None:
        """Mark a run failed (a benchmark's run past its time limit)."""
        self.send("PATCH", f"dags/{dag_id}/dagRuns/{run_id}", {"state": "failed"})

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """Every task instance of the run (all map indexes), paginated."""
        out: list[dict] = []
        while True:
            page = self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100, offset=len(out), order_by="id")
            items = page.get("task_instances", [])
            out.extend(items)
            if not items or len(out) >= int(page.get("total_entries", len(out))):
                return out

    def wait_run(
        self,
        dag_id: str,
        run_id: str,
        timeout_s: float,
        poll_s: float = 1.0,
        on_poll: Callable[[dict], None] | None = None,
    ) -> dict:
        """Poll until the run ends; returns the run. `on_poll(run)` is called at every poll."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.run(dag_id, run_id)
            if on_poll:
                on_poll(run)
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} of {dag_id} did not finish within {timeout_s:.0f} s")
            time.sleep(poll_s)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> list[str]:
        """A task instance's log, one string per line (structured entries as `level logger: event`)."""
        reply = self.get(
            f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            map_index=map_index,
            full_content="true",
        )
        lines: list[str] = []
        for entry in (reply or {}).get("content") or []:
            if isinstance(entry, dict):
                text = " ".join(str(entry.get(k, "")) for k in ("level", "logger", "event") if entry.get(k))
            else:
                text = str(entry)
            lines.extend(text.splitlines() or [""])
        return lines

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """An XCom value (decoded from JSON when it comes as a string), or None when there is none."""
        try:
            entry = self.get(
                f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}", map_index=map_index
            )
        except RuntimeError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        return xcom_value(entry.get("value"))
