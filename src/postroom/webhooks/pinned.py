"""Webhook connections that go only to addresses the URL rules accept.

A check that resolves a name and a connection that resolves it again can get different
answers (DNS rebinding: a public address for the check, 127.0.0.1 for the connection).
So the name is resolved once, here, when a connection is opened: every address is checked
(``endpoint_addresses``; a host allowed where Postroom runs may have any) and the TCP
connection goes to those addresses, the first that answers.
TLS still speaks to the name (SNI and certificate) and the Host header still names it; only
the TCP connect is pinned. Kept-alive connections were checked when they were opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import httpcore2
import httpx2

from postroom.webhooks.urls import Lookup, endpoint_addresses


@dataclass(slots=True)
class AddressRules:
    """Which hosts may take any address, and the resolver (the system's unless set)."""

    allowed: Collection[str] = ()
    lookup: Lookup | None = None


@dataclass(frozen=True, slots=True)
class _Request:
    url: str
    rules: AddressRules = field(default_factory=AddressRules)


# The request whose connection is being opened: the connection pool opens it in the task
# that sends the request, so its URL and rules are at hand in ``connect_tcp``.
_current: ContextVar[_Request | None] = ContextVar("webhook_request", default=None)


@contextmanager
def connecting_for(url: str, rules: AddressRules) -> Iterator[None]:
    """Connections opened inside go to ``url``'s host under ``rules``."""
    token = _current.set(_Request(url, rules))
    try:
        yield
    finally:
        _current.reset(token)


class PinnedBackend(httpcore2.AsyncNetworkBackend):
    """Resolves and checks the host itself, then connects to a checked address."""

    def __init__(self, inner: httpcore2.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        request = _current.get()
        if request is None or httpx2.URL(request.url).host != host.lower():
            # Not a request of ours: the strict rules, no allowed hosts.
            request = _Request(str(httpx2.URL(scheme="https", host=host, port=port)))
        rules = request.rules
        addresses = await asyncio.to_thread(
            endpoint_addresses, request.url, allowed=rules.allowed, lookup=rules.lookup
        )
        failed: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failed = exc  # the next address may answer
        assert failed is not None  # endpoint_addresses never returns an empty list
        raise failed

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("webhooks are sent over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx2.AsyncHTTPTransport):
    """httpx's transport with its connection pool opening connections via PinnedBackend."""

    def __init__(self, *, limits: httpx2.Limits) -> None:
        super().__init__(limits=limits)
        # httpx takes no network backend, so its pool is replaced by one that does, with
        # the same settings (and the default TLS context, SSL_CERT_FILE honoured).
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(),
        )
