"""Access tokens per authentication profile, cached until shortly before they expire.

One :class:`TokenCache` serves every send of a process: many emails, one token
request. Concurrent sends that need a token wait for the one request in flight; a
token a service rejected (HTTP 401) is refreshed once however many sends saw it.
Authlib speaks OAuth 2.0; its and httpx2's exceptions are translated here, once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from postroom.auth.endpoints import check_endpoint
from postroom.auth.explain import explain_token_error
from postroom.auth.models import AuthProfile
from postroom.errors import (
    ConfigurationError,
    CredentialsRejectedError,
    DeliveryError,
    ThrottledError,
    TransientDeliveryError,
)
from postroom.outbox.retry import retry_after

log = logging.getLogger("postroom.auth")

MAX_REFRESH_MARGIN = 300.0  # refresh five minutes before expiry at the latest
STAGE = "token"


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token with its expiry and its (unverified, display-only) claims."""

    value: str = field(repr=False)
    issued_at: float
    expires_at: float
    claims: Mapping[str, Any] = field(default_factory=dict)

    def usable(self, now: float) -> bool:
        # A tenth of the lifetime, at most five minutes: a token never expires in flight.
        margin = min(MAX_REFRESH_MARGIN, (self.expires_at - self.issued_at) / 10)
        return now < self.expires_at - margin


def decode_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: shown to people, never trusted for decisions."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


@dataclass(slots=True)
class _Refused:
    fingerprint: str
    error: CredentialsRejectedError
    until: float


class TokenCache:
    """Access tokens of every profile a process uses, shared by all its sends."""

    def __init__(
        self,
        *,
        allowed_hosts: Collection[str] = (),
        timeout: float = 30.0,
        refusal_ttl: float = 30.0,
        clock: Callable[[], float] = time.time,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self._allowed = frozenset(allowed_hosts)
        self._timeout = timeout
        self._refusal_ttl = refusal_ttl
        self._clock = clock
        self._transport = transport
        self._tokens: dict[str, tuple[str, AccessToken]] = {}
        self._refused: dict[str, _Refused] = {}
        self._guard = threading.Lock()
        # asyncio locks belong to one event loop; the agent and immediate sends may
        # each run their own.
        self._locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()
        self.requests = 0

    async def get(self, profile: AuthProfile, *, stale: AccessToken | None = None) -> AccessToken:
        """A usable token; ``stale`` is one a service rejected, so it is never returned."""
        cached = self._cached(profile, stale)
        if cached is not None:
            return cached
        async with self._lock(profile.name):
            cached = self._cached(profile, stale)  # another send may have fetched it
            if cached is not None:
                return cached
            self._check_refused(profile)
            try:
                token = await self._fetch(profile)
            except CredentialsRejectedError as exc:
                with self._guard:
                    self._refused[profile.name] = _Refused(
                        profile.fingerprint, exc, self._clock() + self._refusal_ttl
                    )
                raise
            with self._guard:
                self._tokens[profile.name] = (profile.fingerprint, token)
                self._refused.pop(profile.name, None)
            return token

    def _cached(self, profile: AuthProfile, stale: AccessToken | None) -> AccessToken | None:
        with self._guard:
            entry = self._tokens.get(profile.name)
        if entry is None:
            return None
        fingerprint, token = entry
        if fingerprint != profile.fingerprint or not token.usable(self._clock()):
            return None
        if stale is not None and token.value == stale.value:
            return None
        return token

    def _check_refused(self, profile: AuthProfile) -> None:
        # The same credentials were refused moments ago: asking again at once only
        # hammers the identity provider (and can lock the application out).
        with self._guard:
            refused = self._refused.get(profile.name)
        if (
            refused is not None
            and refused.fingerprint == profile.fingerprint
            and self._clock() < refused.until
        ):
            raise CredentialsRejectedError(refused.error.text, stage=STAGE)

    def _lock(self, name: str) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._guard:
            locks = self._locks.setdefault(loop, {})
            return locks.setdefault(name, asyncio.Lock())

    async def _fetch(self, profile: AuthProfile) -> AccessToken:
        try:
            url = check_endpoint(
                profile.token_endpoint,
                allowed=self._allowed,
                what=f"profile {profile.name}: token_endpoint",
            )
        except ConfigurationError as exc:
            raise CredentialsRejectedError(str(exc), stage=STAGE) from None
        self.requests += 1
        log.info("requesting an access token for profile %s", profile.name)
        started = self._clock()
        try:
            async with AsyncOAuth2Client(
                client_id=profile.client_id,
                client_secret=profile.client_secret.get_secret_value(),
                scope=profile.scope,
                token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method name
                timeout=self._timeout,
                transport=self._transport,
            ) as client:
                raw = await client.fetch_token(url, grant_type=str(profile.grant_type))
        except AuthlibBaseError as exc:
            raise _oauth_error(exc) from None
        except httpx2.HTTPStatusError as exc:
            raise _status_error(exc.response, url) from None
        except httpx2.TimeoutException:
            raise TransientDeliveryError(
                f"the token endpoint {url} did not answer in {self._timeout:g} s", stage=STAGE
            ) from None
        except httpx2.HTTPError as exc:
            raise TransientDeliveryError(
                f"cannot reach the token endpoint {url} ({type(exc).__name__}: {exc})",
                stage=STAGE,
            ) from None
        except ValueError as exc:  # a body that is not a JSON object
            raise TransientDeliveryError(
                f"the token endpoint {url} answered something other than a token ({exc})",
                stage=STAGE,
            ) from None
        return _access_token(raw, issued_at=started, url=url)


def _access_token(raw: Mapping[str, Any], *, issued_at: float, url: str) -> AccessToken:
    value = raw.get("access_token")
    if not isinstance(value, str) or not value:
        raise TransientDeliveryError(f"the token endpoint {url} sent no access_token", stage=STAGE)
    try:
        lifetime = float(raw.get("expires_in", 3600))
    except (TypeError, ValueError):
        lifetime = 3600.0
    claims = decode_claims(value)
    return AccessToken(
        value=value, issued_at=issued_at, expires_at=issued_at + max(lifetime, 0.0), claims=claims
    )


def _oauth_error(exc: AuthlibBaseError) -> DeliveryError:
    problem = explain_token_error(str(exc.error or "oauth_error"), exc.description)
    if problem.transient:
        return TransientDeliveryError(problem.describe(), stage=STAGE)
    return CredentialsRejectedError(problem.describe(), stage=STAGE)


def _status_error(response: httpx2.Response, url: str) -> DeliveryError:
    status = response.status_code
    wait = retry_after(response.headers.get("Retry-After"))
    if status in (429, 503) and wait is not None:
        # The identity provider asked to wait: the emails wait, uncounted.
        return ThrottledError(
            f"the token endpoint {url} asked to wait (HTTP {status})",
            retry_after=min(max(wait, 1.0), 3600.0),
            code=status,
        )
    if status >= 500 or status == 429:
        return TransientDeliveryError(
            f"the token endpoint {url} answered HTTP {status}; trying again later", stage=STAGE
        )
    return CredentialsRejectedError(
        f"the token endpoint {url} answered HTTP {status} without an OAuth error: "
        "check token_endpoint (or tenant_id and authority)",
        code=status,
        stage=STAGE,
    )
