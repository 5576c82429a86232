"""What every route of the search API depends on: the authenticated user, the read and write
authorisation and the search service (FastAPI dependencies).

Authentication is Airflow's own: `current_user` is `airflow.api_fastapi.core_api.security.get_user`
(a JWT as `Authorization: Bearer ...`, or the `_token` cookie the Airflow UI sets), validated by the
configured auth manager, so tokens from the Airflow API server work here too.

Authorisation is Airflow's too: the configured auth manager decides, through `is_authorized_dag` on the
ingest DAG `video_ingest` (the DAG that fills the collections). Reading (browse, search, counts, the
audit trail, the UI page) needs read access to it (`GET`); every write - labels, propagation preview,
apply and undo - needs edit access (`PUT`). With Airflow's SimpleAuthManager that is: VIEWER reads,
USER / OP / ADMIN also write, a token without a (known) role gets 403 everywhere. With the FAB auth
manager it is `can_read` / `can_edit` on `DAG:video_ingest` (or on all DAGs): Viewer reads, User, Op
and Admin write. Custom views are not used on purpose: SimpleAuthManager grants a custom view to any
VIEWER whatever the method, so it could not tell a reader from a writer (docs/security.md §1).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from vidsearch.search import SearchService

COOKIE_NAME = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN

bearer_scheme = HTTPBearer(auto_error=False, description="A JWT from the Airflow API server's POST /auth/token")
cookie_scheme = APIKeyCookie(name=COOKIE_NAME, auto_error=False, description="The JWT cookie the Airflow UI sets")
_auth_lock = threading.Lock()
log = logging.getLogger(__name__)

# The Airflow resource whose permissions decide who may use the API: the ingest DAG.
AUTHZ_DAG_ID = "video_ingest"
Access = Literal["read", "write"]
_METHOD: dict[Access, Literal["GET", "PUT"]] = {"read": "GET", "write": "PUT"}  # PUT: FAB's can_edit


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


def is_authorized(user: Any, access: Access) -> bool:
    """Whether the auth manager gives `user` read or write access (a DAG permission on `video_ingest`).

    An auth manager that fails to decide (e.g. a token whose role it does not know) denies."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    _ensure_auth_manager()
    try:
        return bool(
            get_auth_manager().is_authorized_dag(method=_METHOD[access], user=user, details=DagDetails(id=AUTHZ_DAG_ID))
        )
    except Exception:  # whatever the manager raises, the answer is no
        log.warning("the auth manager failed to authorise %s for %r; denied", access, _name(user), exc_info=True)
        return False


def _forbidden(access: Access) -> HTTPException:
    what = "read" if access == "read" else "edit"
    return HTTPException(
        status_code=403,
        detail=f"forbidden: this needs {what} access to the Airflow DAG {AUTHZ_DAG_ID!r} "
        f"({'VIEWER' if access == 'read' else 'USER, OP or ADMIN'} with the simple auth manager)",
    )


def reader(user: Any = Depends(current_user)) -> Any:
    """Authorises a read (every route of the API, the UI page and its files); returns the user."""
    if not is_authorized(user, "read"):
        raise _forbidden("read")
    return user


def write_actor(user: Any = Depends(reader)) -> str:
    """Authorises a write (labels, propagation preview / apply, undo) and names who makes it, for the
    audit trail (`label_events.actor`, `propagations.created_by`)."""
    if not is_authorized(user, "write"):
        raise _forbidden("write")
    return _name(user)


def _name(user: Any) -> str:
    try:
        return str(user.get_name())
    except Exception:  # noqa: BLE001 - an auth manager's user without a name still acts
        return str(getattr(user, "username", None) or "unknown")


def search_service(request: Request) -> SearchService:
    """The app's search service (`app.state.search`, built by `create_app`'s factory on first use)."""
    return request.app.state.search.get()
