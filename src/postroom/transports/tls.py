"""TLS contexts for outgoing connections: verification is always on."""

from __future__ import annotations

import ssl

from postroom.accounts.advanced import TLS_VERSIONS, parse_advanced
from postroom.accounts.models import EmailAccount


def client_context(account: EmailAccount) -> ssl.SSLContext:
    """A verifying client context: the account's truststore, else the system CAs."""
    if account.truststore:
        # A truststore replaces the system CAs: it pins the relay to a private CA.
        context = ssl.create_default_context(cadata=account.truststore)
    else:
        context = ssl.create_default_context()
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    versions = parse_advanced(account.advanced).tls_versions
    floor = TLS_VERSIONS[account.tls_min_version]
    if versions:
        context.minimum_version = max(floor, TLS_VERSIONS[versions[0]])
        context.maximum_version = TLS_VERSIONS[versions[-1]]
    else:
        context.minimum_version = floor
    return context
