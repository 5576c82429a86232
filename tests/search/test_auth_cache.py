"""The API remembers a validated token for a bounded time (`dependencies.TokenCache`): one
validation (signature + Airflow's revoked-token lookup) per token per `VIDSEARCH_AUTH_CACHE_S`,
never past the token's expiry, only successes; authorisation is still decided on every request."""

from __future__ import annotations

import time

import jwt
import pytest
from vidsearch_api import dependencies
from vidsearch_api.dependencies import TokenCache

C = "search_api"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _token(exp_in: float | None) -> str:
    claims = {"sub": "someone"} | ({"exp": int(time.time() + exp_in)} if exp_in is not None else {})
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


def test_a_token_is_remembered_for_the_ttl_then_validated_again():
    clock = Clock()
    cache = TokenCache(30, clock=clock)
    token = _token(3600)
    assert cache.get(token) is None
    cache.put(token, "user-a")
    assert cache.get(token) == "user-a"
    clock.now += 29.9
    assert cache.get(token) == "user-a"
    clock.now += 0.2
    assert cache.get(token) is None


def test_never_past_the_token_expiry_and_never_without_one():
    clock = Clock()
    cache = TokenCache(30, clock=clock)
    soon, none = _token(5), _token(None)
    cache.put(soon, "user-a")
    cache.put(none, "user-b")
    assert cache.get(none) is None  # no exp: not remembered at all
    clock.now += 6
    assert cache.get(soon) is None
    cache.put("not a jwt", "user-c")
    assert cache.get("not a jwt") is None


def test_bounded_and_off_at_zero():
    cache = TokenCache(30, entries=2)
    a, b, c = _token(3600), _token(3601), _token(3602)
    for t, u in ((a, "a"), (b, "b"), (c, "c")):
        cache.put(t, u)
    assert (cache.get(a), cache.get(b), cache.get(c)) == (None, "b", "c")
    off = TokenCache(0)
    off.put(a, "a")
    assert off.get(a) is None


@pytest.mark.integration
def test_the_api_validates_a_token_once_and_still_authorises_every_request(api_client, monkeypatch):
    from airflow.api_fastapi.core_api import security

    calls: list[str] = []
    real = security.resolve_user_from_token

    async def counting(token):
        calls.append(token)
        return await real(token)

    monkeypatch.setattr(security, "resolve_user_from_token", counting)
    dependencies.token_cache().clear()
    for _ in range(3):
        assert api_client.get(f"api/collections/{C}/videos").status_code == 200
    assert len(calls) == 1
    # Authorisation is not cached: a user the auth manager stops allowing is refused at once.
    monkeypatch.setattr(dependencies, "is_authorized", lambda user, access: False)
    assert api_client.get(f"api/collections/{C}/videos").status_code == 403
    # A bad token is never remembered.
    bad = api_client.get(f"api/collections/{C}/videos", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 403 and calls[-1] == "nope"
    again = api_client.get(f"api/collections/{C}/videos", headers={"Authorization": "Bearer nope"})
    assert again.status_code == 403 and calls[-2:] == ["nope", "nope"]
