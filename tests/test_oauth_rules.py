"""Pure rules of OAuth and Graph sending: profiles, endpoints, error tables, outcomes."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from datetime import timedelta

import pytest
from pydantic import ValidationError

from postroom.auth import AccessToken, AuthProfile, check_endpoint, decode_claims
from postroom.auth.explain import explain_token_error
from postroom.errors import (
    ConfigurationError,
    CredentialsRejectedError,
    OutcomeUnknownError,
    PermanentDeliveryError,
    ThrottledError,
    TransientDeliveryError,
)
from postroom.outbox.outcome import decide
from postroom.outbox.retry import retry_after
from postroom.outbox.status import Hold, OutboxStatus, check_transition
from postroom.transports.gate import MailboxGates
from postroom.transports.graph_errors import graph_error
from tests.test_classify import NOW, POLICY, claimed


def profile(**fields: object) -> AuthProfile:
    values: dict[str, object] = {
        "name": "o365",
        "client_id": "app-1",
        "client_secret": "s3cret",
        "tenant_id": "contoso.onmicrosoft.com",
    }
    values.update(fields)
    return AuthProfile.model_validate(values)


def test_tenant_id_fills_the_microsoft_token_endpoint() -> None:
    p = profile()
    assert p.token_endpoint == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    )
    assert p.scope == "https://graph.microsoft.com/.default"
    us = profile(authority="https://login.microsoftonline.us/")
    assert us.token_endpoint.startswith("https://login.microsoftonline.us/contoso")


def test_profile_needs_an_endpoint_or_a_tenant() -> None:
    with pytest.raises(ValidationError, match="tenant_id"):
        profile(tenant_id=None)
    explicit = profile(tenant_id=None, token_endpoint="https://login.example.com/token")
    assert explicit.token_endpoint == "https://login.example.com/token"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tenant_id", "contoso/../x"),
        ("tenant_id", "a b"),
        ("client_id", "app\r\nX: 1"),
        ("client_secret", ""),
        ("token_endpoint", "https://login.example.com/token?x=1"),
        ("token_endpoint", "file:///etc/passwd"),
        ("tenant_id", "x@evil.example"),
        ("tenant_id", ".."),
        ("scope", "https://graph.microsoft.com"),
        ("scope", "https://a/.default https://b/.default"),
        ("grant_type", "password"),
    ],
)
def test_profile_fields_are_checked(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        profile(**{field: value})


def test_tenant_and_endpoint_must_agree() -> None:
    with pytest.raises(ValidationError, match="give one of them"):
        profile(token_endpoint="https://login.microsoftonline.com/other/oauth2/v2.0/token")


def test_secret_is_masked_and_part_of_the_fingerprint() -> None:
    p = profile()
    assert "s3cret" not in repr(p)
    assert "s3cret" not in str(p.model_dump())
    assert p.fingerprint != profile(client_secret="other").fingerprint
    assert p.fingerprint == profile().fingerprint


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://login.microsoftonline.com/t/oauth2/v2.0/token", ()),
        ("https://graph.microsoft.us", ()),
        ("http://127.0.0.1:8080", ("127.0.0.1",)),
        ("https://mail-gateway.example.com", ("mail-gateway.example.com",)),
    ],
)
def test_allowed_endpoints(url: str, allowed: tuple[str, ...]) -> None:
    assert check_endpoint(url, allowed=allowed, what="x") == url


@pytest.mark.parametrize(
    ("url", "allowed", "message"),
    [
        ("https://evil.example.com/token", (), "POSTROOM_ALLOWED_ENDPOINT_HOSTS"),
        ("http://graph.microsoft.com", (), "https"),
        ("http://mail-gateway.example.com", ("mail-gateway.example.com",), "loopback"),
        # A look-alike host is not Microsoft's.
        ("https://graph.microsoft.com.evil.example", (), "not a Microsoft host"),
    ],
)
def test_refused_endpoints(url: str, allowed: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_endpoint(url, allowed=allowed, what="x")


@pytest.mark.parametrize(
    ("error", "description", "code", "words", "transient"),
    [
        (
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
            7000215,
            "Value",
            False,
        ),
        ("unauthorized_client", "AADSTS700016: Application not found", 700016, "client_id", False),
        ("invalid_request", "AADSTS90002: Tenant 'x' not found.", 90002, "tenant_id", False),
        ("invalid_scope", "AADSTS70011: The provided value for scope", 70011, "/.default", False),
        ("invalid_scope", "no code here", None, "/.default", False),
        ("temporarily_unavailable", "AADSTS50000: busy", 50000, "busy", True),
    ],
)
def test_token_errors_are_explained(
    error: str, description: str, code: int | None, words: str, transient: bool
) -> None:
    problem = explain_token_error(error, description + "\r\nTrace ID: 1\r\nCorrelation ID: 2")
    assert problem.code == code
    assert words in problem.explanation
    assert problem.transient is transient
    assert "Trace ID" not in problem.describe()


def jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def test_claims_are_decoded_for_display_only() -> None:
    assert decode_claims(jwt({"aud": "https://graph.microsoft.com", "roles": ["Mail.Send"]})) == {
        "aud": "https://graph.microsoft.com",
        "roles": ["Mail.Send"],
    }
    assert decode_claims("opaque-token") == {}
    assert decode_claims("a.!!!.c") == {}


def test_token_is_refreshed_before_it_expires() -> None:
    hour = AccessToken("tok-VALUE", issued_at=0, expires_at=3600)
    assert hour.usable(3000)
    assert not hour.usable(3301)  # five minutes of margin
    short = AccessToken("t", issued_at=0, expires_at=10)
    assert short.usable(8.9)
    assert not short.usable(9.1)  # a tenth of a short lifetime
    assert "tok-VALUE" not in repr(hour)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after("7") == 7.0
    assert retry_after(None) is None
    assert retry_after("soon") is None
    when = "Thu, 01 Jan 2026 12:00:30 GMT"
    assert retry_after(when, now=NOW) == 30.0
    assert retry_after(when, now=NOW + timedelta(minutes=5)) == 0.0


def body(code: str, message: str = "m") -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "code", "kind", "words"),
    [
        (404, "ErrorInvalidUser", PermanentDeliveryError, "user_principal_name"),
        (404, "MailboxNotEnabledForRESTAPI", PermanentDeliveryError, "inactive, soft-deleted"),
        (403, "ErrorAccessDenied", PermanentDeliveryError, "Mail.Send"),
        (400, "ErrorInvalidRecipients", PermanentDeliveryError, "recipient"),
        (401, "InvalidAuthenticationToken", CredentialsRejectedError, "scope"),
        (503, "ServiceUnavailable", TransientDeliveryError, "503"),
        (500, "", TransientDeliveryError, "500"),
        (400, "ErrorQuotaExceeded", TransientDeliveryError, "quota"),
    ],
)
def test_graph_errors_are_classified_and_explained(
    status: int, code: str, kind: type[Exception], words: str
) -> None:
    error = graph_error(status, body(code), stage="sendMail")
    assert type(error) is kind
    assert words in str(error)
    assert error.code == status


def test_graph_error_without_json() -> None:
    error = graph_error(502, b"<html>Bad gateway</html>", stage="sendMail")
    assert isinstance(error, TransientDeliveryError)
    assert "Bad gateway" in str(error)


def test_refused_credentials_hold_the_email_uncounted() -> None:
    out = decide(
        claimed("a@example.com"), CredentialsRejectedError("AADSTS7000215"), policy=POLICY, now=NOW
    )
    assert out.status is OutboxStatus.HELD
    assert out.hold is Hold.ACCOUNT
    assert out.refund
    assert out.recipients == claimed("a@example.com").recipients  # nobody was refused
    # Even on the last allowed attempt: holding is not failing.
    late = decide(
        claimed("a@example.com", attempts=3), CredentialsRejectedError("x"), policy=POLICY, now=NOW
    )
    assert late.status is OutboxStatus.HELD


def test_throttling_waits_as_asked_uncounted() -> None:
    out = decide(
        claimed("a@example.com", attempts=3),
        ThrottledError("429", retry_after=42, code=429),
        policy=POLICY,
        now=NOW,
    )
    assert out.status is OutboxStatus.RETRY
    assert out.next_attempt_at == NOW + timedelta(seconds=42)
    assert out.refund


def test_unknown_outcome_is_retried_or_held_by_policy() -> None:
    error = OutcomeUnknownError("no answer after the request went out", stage="sendMail")
    retried = decide(claimed("a@example.com"), error, policy=POLICY, now=NOW)
    assert retried.status is OutboxStatus.RETRY
    assert retried.outcome_unknown
    assert not retried.refund
    held = decide(claimed("a@example.com"), error, policy=POLICY, now=NOW, hold_unknown=True)
    assert held.status is OutboxStatus.HELD
    assert held.hold is Hold.OUTCOME
    assert "Sent Items" in (held.last_error or "")


def test_held_emails_go_back_to_the_queue_or_are_cancelled() -> None:
    check_transition(OutboxStatus.SENDING, OutboxStatus.HELD, what="e")
    check_transition(OutboxStatus.HELD, OutboxStatus.QUEUED, what="e")
    check_transition(OutboxStatus.HELD, OutboxStatus.CANCELLED, what="e")


def test_gate_caps_concurrency_and_pauses_a_mailbox() -> None:
    now = [0.0]
    gates = MailboxGates(limit=2, clock=lambda: now[0])
    inside = 0
    peak = 0

    async def request() -> None:
        nonlocal inside, peak
        async with gates.slot("Sender@Contoso.example"):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    async def scenario() -> float:
        await asyncio.gather(*(request() for _ in range(6)))
        gates.pause("sender@contoso.example", 0.05)  # the same mailbox, other case
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def advance() -> None:
            await asyncio.sleep(0.05)
            now[0] += 0.05

        await asyncio.gather(request(), advance())
        return loop.time() - started

    waited = asyncio.run(scenario())
    assert peak == 2
    assert waited >= 0.05


def test_gate_cap_holds_across_event_loops_and_threads() -> None:
    gates = MailboxGates(limit=2)
    lock = threading.Lock()
    inside = peak = 0

    async def requests() -> None:
        async def one() -> None:
            nonlocal inside, peak
            async with gates.slot("m@example.com"):
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                await asyncio.sleep(0.02)
                with lock:
                    inside -= 1

        await asyncio.gather(*(one() for _ in range(4)))

    threads = [threading.Thread(target=lambda: asyncio.run(requests())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert peak == 2


def test_a_pause_longer_than_the_caller_waits_is_raised() -> None:
    gates = MailboxGates()
    gates.pause("m@example.com", 120)

    async def attempt() -> None:
        async with gates.slot("M@example.com", max_wait=10):
            pass

    with pytest.raises(ThrottledError) as throttled:
        asyncio.run(attempt())
    assert 110 < throttled.value.retry_after <= 120


def test_rows_held_without_asking_are_not_a_new_refusal() -> None:
    asked = decide(claimed("a@example.com"), CredentialsRejectedError("x", stage="token"),
                   policy=POLICY, now=NOW)  # fmt: skip
    assert asked.credentials_refused
    held = decide(claimed("a@example.com"), CredentialsRejectedError("x", stage="hold"),
                  policy=POLICY, now=NOW)  # fmt: skip
    assert held.status is OutboxStatus.HELD
    assert not held.credentials_refused
