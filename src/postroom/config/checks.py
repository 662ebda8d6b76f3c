"""What ``apply`` checks of records against each other: steps, endpoints, profiles, keys.

Each check answers the warnings it has, or raises :class:`ConfigurationError`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from postroom.accounts import EmailAccount, Protocol, Security
from postroom.accounts.encryption import encryption_warnings
from postroom.auth import GRAPH_SCOPE, MICROSOFT_HOSTS, AuthProfile, check_endpoint
from postroom.auth.endpoints import check_token_host
from postroom.cases.models import CaseType, RecipientKind
from postroom.correspondence import Correspondence, Renderer
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, TemplateError
from postroom.keystores.inspection import describe
from postroom.keystores.models import Keystore
from postroom.operators import Operator


def check_steps(
    ct: CaseType,
    known: dict[str, Correspondence],
    renderer: Renderer,
    operators: dict[str, Operator],
) -> list[str]:
    """Each step names existing correspondence and operators, and its templates compile;
    warnings for a reviewer operator whose escalation would reach nobody."""
    warnings: list[str] = []
    for step in ct.steps:
        label = f"case type {ct.class_name}: step {step.name or step.on}"
        if step.correspondence and step.correspondence not in known:
            raise ConfigurationError(
                f"{label} names correspondence {step.correspondence!r}, which does not exist"
            )
        for text in (step.subject, step.body):
            try:
                if text is not None:
                    renderer.check_source(text, what=label)
            except TemplateError as exc:
                raise ConfigurationError(str(exc)) from None
        for r in (*step.to, *step.cc, *step.bcc):
            if r.kind is RecipientKind.OPERATOR and r.value not in operators:
                raise ConfigurationError(f"{label} sends to unknown operator {r.value!r}")
        by = step.review.by if step.review is not None else None
        if by is not None and by.kind is RecipientKind.OPERATOR:
            if by.value not in operators:
                raise ConfigurationError(f"{label} is reviewed by unknown operator {by.value!r}")
            warnings.extend(escalation_warnings(label, operators[by.value], operators))
    return warnings


def escalation_warnings(
    label: str, reviewer: Operator, operators: dict[str, Operator]
) -> list[str]:
    """A review waiting too long tells the reviewer's manager: say when nobody would be."""
    manager = reviewer.reports_to
    if manager is None:
        return [
            f"{label}: reviewer operator {reviewer.id} reports to nobody, so a review waiting "
            "too long tells nobody"
        ]
    found = operators.get(manager)
    if found is None or not found.email:
        lack = "is not an operator" if found is None else "has no email address"
        return [
            f"{label}: the manager of reviewer operator {reviewer.id}, {manager}, {lack}, "
            "so a review waiting too long tells nobody"
        ]
    return []


def check_endpoints(records: dict[str, list[Any]], allowed: frozenset[str]) -> None:
    for profile in records["auth_profiles"]:
        check_endpoint(
            profile.token_endpoint,
            allowed=allowed,
            what=f"auth profile {profile.name}: token_endpoint",
        )
    for account in records["accounts"]:
        if account.protocol is Protocol.GRAPH:
            check_endpoint(
                account.graph_url, allowed=allowed, what=f"account {account.name}: graph_url"
            )
        elif account.auth_profile and account.host:
            check_token_host(
                account.host,
                encrypted=account.security is not Security.NONE,
                allowed=allowed,
                what=f"account {account.name}: host",
            )


def check_profile(account: EmailAccount, profiles: dict[str, AuthProfile]) -> list[str]:
    if not account.auth_profile:
        return []
    profile = profiles.get(account.auth_profile)
    if profile is None:
        raise ConfigurationError(
            f"account {account.name} names auth_profile {account.auth_profile!r}, which does "
            f"not exist (known: {', '.join(sorted(profiles)) or 'none'})"
        )
    graph = account.protocol is Protocol.GRAPH
    microsoft = urlsplit(account.graph_url).hostname in MICROSOFT_HOSTS
    if graph and microsoft and not profile.scope.startswith(account.graph_url):
        return [
            f"account {account.name}: its profile's scope {profile.scope} is not for "
            f"{account.graph_url}; Graph needs {GRAPH_SCOPE} (or the national cloud's)"
        ]
    if not graph and profile.scope == GRAPH_SCOPE:
        return [
            f"account {account.name}: SMTP XOAUTH2 with a Graph scope will be refused; "
            "Office 365 needs https://outlook.office365.com/.default"
        ]
    return []


def check_keystore(keystore: Keystore) -> list[str]:
    """Open the store now (wrong password, alias): a bad keystore fails the apply."""
    info = describe(keystore.entry())
    return list(info.warnings)


def check_encryption(account: EmailAccount) -> list[str]:
    if account.encryption is None:
        return []
    found = encryption_warnings(account.encryption, now=utcnow())
    return [f"account {account.name}: {w}" for w in found]


def check_signing(account: EmailAccount, keystores: dict[str, Keystore]) -> list[str]:
    if account.signing is None:
        return []
    keystore = keystores.get(account.signing.keystore)
    if keystore is None:
        raise ConfigurationError(
            f"account {account.name} signs with keystore {account.signing.keystore!r}, which "
            f"does not exist (known: {', '.join(sorted(keystores)) or 'none'})"
        )
    info = describe(keystore.entry(account.signing.alias), address=account.address)
    return [f"account {account.name}: {w}" for w in info.warnings]
