"""What every route of the search API depends on: the authenticated user, the write authorisation and
the search service (FastAPI dependencies).

Authentication is Airflow's own: `current_user` is `airflow.api_fastapi.core_api.security.get_user`
(a JWT as `Authorization: Bearer ...`, or the `_token` cookie the Airflow UI sets), validated by the
configured auth manager, so tokens from the Airflow API server work here too.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from vidsearch.search import SearchService

COOKIE_NAME = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN

bearer_scheme = HTTPBearer(auto_error=False, description="A JWT from the Airflow API server's POST /auth/token")
cookie_scheme = APIKeyCookie(name=COOKIE_NAME, auto_error=False, description="The JWT cookie the Airflow UI sets")
_auth_lock = threading.Lock()


def _ensure_auth_manager() -> None:
    """Inside the Airflow API server the auth manager exists; standalone (and in tests) create it once."""
    from airflow.api_fastapi.app import get_auth_manager, init_auth_manager

    try:
        get_auth_manager()
    except RuntimeError:
        with _auth_lock:
            try:
                get_auth_manager()
            except RuntimeError:
                init_auth_manager()


async def current_user(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
    _cookie_token: str | None = Depends(cookie_scheme),  # documents the cookie in the OpenAPI schema
) -> Any:
    """The authenticated Airflow user (401 without credentials, 403 for an invalid token), exactly as
    Airflow's core API decides it."""
    from airflow.api_fastapi.core_api.security import get_user

    _ensure_auth_manager()
    return await get_user(request, None, bearer)


async def write_actor(user: Any = Depends(current_user)) -> str:
    """Authorises a write (labels, propagation, undo) and names who made it, for the audit trail.

    Every authenticated Airflow user may write; this is the one place that would narrow that."""
    try:
        return str(user.get_name())
    except Exception:  # noqa: BLE001 - an auth manager's user without a name still acts
        return str(getattr(user, "username", None) or "unknown")


def search_service(request: Request) -> SearchService:
    """The app's search service (`app.state.search`, built by `create_app`'s factory on first use)."""
    return request.app.state.search.get()
