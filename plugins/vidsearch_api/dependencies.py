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

Validating a token costs ~5 ms (its signature, and Airflow's lookup of revoked tokens in its database),
more than the search it guards. A validated token is remembered for `VIDSEARCH_AUTH_CACHE_S` seconds
(default 30; 0 turns the cache off), never past its own expiry: a token revoked (logout) keeps
working here for at most that long. Only successes are remembered; the key is the token's SHA-256.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from typing import Any, Literal

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from vidsearch.search import SearchService
from vidsearch.settings import number_from_env

COOKIE_NAME = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN

bearer_scheme = HTTPBearer(auto_error=False, description="A JWT from the Airflow API server's POST /auth/token")
cookie_scheme = APIKeyCookie(name=COOKIE_NAME, auto_error=False, description="The JWT cookie the Airflow UI sets")
_auth_lock = threading.Lock()
log = logging.getLogger(__name__)

# The Airflow resource whose permissions decide who may use the API: the ingest DAG.
AUTHZ_DAG_ID = "video_ingest"
Access = Literal["read", "write"]
_METHOD: dict[Access, Literal["GET", "PUT"]] = {"read": "GET", "write": "PUT"}  # PUT: FAB's can_edit


AUTH_CACHE_ENV = "VIDSEARCH_AUTH_CACHE_S"
DEFAULT_AUTH_CACHE_S = 30.0
AUTH_CACHE_ENTRIES = 10_000


class TokenCache:
    """Users of recently validated tokens, each until `ttl_s` after its validation or its token's
    expiry, whichever is first; at most `entries` (the least recently used go first)."""

    def __init__(self, ttl_s: float, entries: int = AUTH_CACHE_ENTRIES, clock: Any = time.monotonic):
        self.ttl_s = ttl_s
        self.entries = entries
        self._clock = clock
        self._users: collections.OrderedDict[str, tuple[float, Any]] = collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def get(self, token: str) -> Any | None:
        if self.ttl_s <= 0:
            return None
        key = self._key(token)
        with self._lock:
            hit = self._users.get(key)
            if hit is None:
                return None
            if self._clock() >= hit[0]:
                del self._users[key]
                return None
            self._users.move_to_end(key)
            return hit[1]

    def put(self, token: str, user: Any) -> None:
        if self.ttl_s <= 0:
            return
        deadline = self._clock() + min(self.ttl_s, _seconds_left(token))
        key = self._key(token)
        with self._lock:
            self._users[key] = (deadline, user)
            self._users.move_to_end(key)
            while len(self._users) > self.entries:
                self._users.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._users.clear()


def _seconds_left(token: str) -> float:
    """Seconds until the (already validated) token's `exp`; 0 when it has none or it cannot be read."""
    import jwt

    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return 0.0
    return max(0.0, float(exp) - time.time()) if isinstance(exp, (int, float)) else 0.0


_tokens: TokenCache | None = None


def token_cache() -> TokenCache:
    """The process's token cache (its lifetime read from `VIDSEARCH_AUTH_CACHE_S` on first use)."""
    global _tokens
    if _tokens is None:
        with _auth_lock:
            if _tokens is None:
                _tokens = TokenCache(number_from_env(AUTH_CACHE_ENV, DEFAULT_AUTH_CACHE_S, float, lo=0, hi=300))
    return _tokens


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
    Airflow's core API decides it; a token it accepted is remembered for a while (`TokenCache`)."""
    from airflow.api_fastapi.core_api.security import get_user

    # The token Airflow's get_user reads: the bearer credential wins over the cookie.
    if bearer is not None and bearer.scheme.lower() == "bearer":
        token: str | None = bearer.credentials
    else:
        token = request.cookies.get(COOKIE_NAME)
    cache = token_cache()
    if token and (user := cache.get(token)) is not None:
        return user
    _ensure_auth_manager()
    user = await get_user(request, None, bearer)
    if token:
        cache.put(token, user)
    return user


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
