"""Email account records: presets, validation, advanced parameters, resolution."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from postroom.accounts import (
    KNOWN_PARAMETERS,
    EmailAccount,
    Provider,
    Security,
    candidate_accounts,
    parse_advanced,
    resolve_account,
)
from postroom.errors import NoAccountError, UnknownParameterError


def account(**fields: object) -> EmailAccount:
    values: dict[str, object] = {"name": "Default", "address": "noreply@example.com"}
    values.update(fields)
    return EmailAccount.model_validate(values)


@pytest.mark.parametrize(
    ("provider", "host", "port", "security"),
    [
        ("office365", "smtp.office365.com", 587, Security.STARTTLS),
        ("gmail", "smtp.gmail.com", 587, Security.STARTTLS),
        ("yahoo", "smtp.mail.yahoo.com", 465, Security.TLS),
        ("outlook", "smtp-mail.outlook.com", 587, Security.STARTTLS),
        ("icloud", "smtp.mail.me.com", 587, Security.STARTTLS),
        ("zoho", "smtp.zoho.com", 465, Security.TLS),
    ],
)
def test_provider_fills_connection(provider: str, host: str, port: int, security: Security) -> None:
    a = account(provider=provider)
    assert (a.host, a.port, a.security) == (host, port, security)
    assert a.warnings == []


def test_override_of_preset_stays_and_warns() -> None:
    a = account(provider="office365", port=25)
    assert a.host == "smtp.office365.com"
    assert a.port == 25
    assert len(a.warnings) == 1
    assert "port 25 departs from the office365 preset (587)" in a.warnings[0]


def test_custom_provider_needs_a_host() -> None:
    with pytest.raises(ValidationError, match="host is required"):
        account()


def test_port_defaults_follow_security() -> None:
    assert account(host="mail.example.com", security="tls").port == 465
    assert account(host="mail.example.com", security="starttls").port == 587
    assert account(host="mail.example.com", security="none").port == 25


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(ValidationError, match="provider"):
        account(provider="hotmail")


def test_user_id_defaults_to_address() -> None:
    assert account(host="h.example.com").login == "noreply@example.com"
    assert account(host="h.example.com", user_id="svc-mail").login == "svc-mail"


def test_password_without_encryption_is_refused_unless_allowed() -> None:
    with pytest.raises(ValidationError, match="without encryption"):
        account(host="127.0.0.1", security="none", password="pw-123")
    ok = account(host="127.0.0.1", security="none", password="pw-123", allow_insecure_auth=True)
    assert ok.password is not None


def test_password_is_masked_in_repr() -> None:
    a = account(host="h.example.com", password="very-secret-pw")
    assert "very-secret-pw" not in repr(a)
    assert "very-secret-pw" not in str(a.model_dump())


@pytest.mark.parametrize("field", ["address", "reply_to"])
def test_bad_addresses_are_refused(field: str) -> None:
    with pytest.raises(ValidationError, match="not a valid email address"):
        account(host="h.example.com", **{field: "not an address"})


def test_display_name_with_line_break_is_refused() -> None:
    with pytest.raises(ValidationError, match="control character"):
        account(host="h.example.com", display_name="Bank\r\nBcc: x@example.com")


def test_truststore_must_be_pem(ca_pem: str) -> None:
    assert account(host="h.example.com", truststore=ca_pem).truststore == ca_pem
    with pytest.raises(ValidationError, match="PEM"):
        account(host="h.example.com", truststore="not a certificate")


def test_tls_min_version() -> None:
    assert account(host="h.example.com", tls_min_version="TLSv1.3").tls_min_version == "1.3"
    with pytest.raises(ValidationError, match=r"1\.2 or 1\.3"):
        account(host="h.example.com", tls_min_version="1.0")


def test_graph_account_needs_a_profile_and_no_password() -> None:
    with pytest.raises(ValidationError, match="needs auth_profile"):
        account(protocol="graph")
    with pytest.raises(ValidationError, match="remove the password"):
        account(protocol="graph", auth_profile="p", password="x")
    graph = account(protocol="graph", auth_profile="p")
    assert graph.mailbox == graph.address  # the UPN defaults to the address
    assert graph.save_to_sent_items is True
    assert graph.warnings == []  # SMTP presets say nothing about Graph


def test_smtp_account_takes_a_password_or_a_profile_not_both() -> None:
    with pytest.raises(ValidationError, match="not both"):
        account(host="h.example.com", password="x", auth_profile="p")
    with pytest.raises(ValidationError, match="without encryption"):
        account(host="h.example.com", auth_profile="p", security="none")
    assert account(host="h.example.com", auth_profile="p").auth_profile == "p"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user_principal_name", "a/b@example.com"),
        ("user_principal_name", "a@example.com\r\nX: y"),
        ("graph_url", "ftp://graph.microsoft.com"),
        ("graph_url", "https://user:pw@graph.microsoft.com"),
        ("graph_url", "https://graph.microsoft.com?x=1"),
        ("graph_url", "https://graph.microsoft.com/beta"),
        ("on_unknown_outcome", "maybe"),
    ],
)
def test_graph_fields_are_checked(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        account(protocol="graph", auth_profile="p", **{field: value})


def test_advanced_parameters_parse_javamail_names() -> None:
    options = parse_advanced(
        {
            "mail.smtp.timeout": "30000",
            "mail.smtp.connectiontimeout": "5000",
            "mail.smtp.localhost": "app01.example.com",
            "mail.smtp.auth.plain.disable": "true",
            "mail.smtp.auth.login.disable": "false",
            "mail.smtp.ssl.protocols": "TLSv1.3 TLSv1.2",
        }
    )
    assert options.read_timeout == 30.0
    assert options.connect_timeout == 5.0
    assert options.local_hostname == "app01.example.com"
    assert options.disabled_auth == frozenset({"plain"})
    assert options.tls_versions == ("1.2", "1.3")


def test_unknown_advanced_parameter_lists_known_ones() -> None:
    with pytest.raises(UnknownParameterError) as info:
        parse_advanced({"mail.imaps.auth.plain.disable": "true"})
    for name in KNOWN_PARAMETERS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("mail.smtp.timeout", "soon", "milliseconds"),
        ("mail.smtp.timeout", "0", "between"),
        ("mail.smtp.auth.plain.disable", "yes", "true or false"),
        ("mail.smtp.ssl.protocols", "TLSv1", "insecure"),
        ("mail.smtp.localhost", "two words", "single host name"),
    ],
)
def test_bad_advanced_values(key: str, value: str, message: str) -> None:
    with pytest.raises(UnknownParameterError, match=message):
        parse_advanced({key: value})


def test_account_refuses_unknown_advanced_parameter() -> None:
    with pytest.raises(ValidationError, match="unknown advanced parameter"):
        account(host="h.example.com", advanced={"mail.smtp.bogus": "1"})


def test_advanced_booleans_from_yaml_become_strings() -> None:
    a = account(host="h.example.com", advanced={"mail.smtp.auth.login.disable": True})
    assert a.advanced == {"mail.smtp.auth.login.disable": "true"}


def test_candidates_walk_up_the_class_then_default() -> None:
    assert candidate_accounts("MyOrg-Mortgage-Work-MortgageRequest") == [
        "MyOrg-Mortgage-Work-MortgageRequest",
        "MyOrg-Mortgage-Work",
        "MyOrg-Mortgage",
        "MyOrg",
        "Default",
    ]
    assert candidate_accounts("Default") == ["Default"]


def test_resolution_prefers_the_most_specific_class() -> None:
    names = {"MyOrg-Mortgage-Work", "MyOrg", "Default"}
    r = resolve_account("MyOrg-Mortgage-Work-MortgageRequest", names.__contains__)
    assert r.account == "MyOrg-Mortgage-Work"
    assert "matches class MyOrg-Mortgage-Work" in r.reason
    assert "MyOrg-Mortgage-Work-MortgageRequest" in r.reason


def test_resolution_falls_back_to_default() -> None:
    r = resolve_account("Other-Work-Thing", {"Default"}.__contains__)
    assert r.account == "Default"
    assert "fell back to Default" in r.reason


def test_no_account_and_no_default_is_an_error() -> None:
    with pytest.raises(NoAccountError, match="no email account for class MyOrg-Work"):
        resolve_account("MyOrg-Work", set[str]().__contains__)


def test_provider_enum_lists_every_preset() -> None:
    assert {p.value for p in Provider} == {
        "custom",
        "office365",
        "gmail",
        "yahoo",
        "outlook",
        "icloud",
        "zoho",
    }
