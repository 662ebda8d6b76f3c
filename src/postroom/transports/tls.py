"""TLS contexts for outgoing connections: verification is always on."""

from __future__ import annotations

import ssl

from postroom.accounts.advanced import TLS_VERSIONS, parse_advanced
from postroom.accounts.models import EmailAccount


def client_context(account: EmailAccount) -> ssl.SSLContext:
    """A verifying client context: the account's truststore, else the system CAs."""
    context = verifying_context(account.truststore, tls_min_version=account.tls_min_version)
    versions = parse_advanced(account.advanced).tls_versions
    if versions:
        context.minimum_version = max(context.minimum_version, TLS_VERSIONS[versions[0]])
        context.maximum_version = TLS_VERSIONS[versions[-1]]
    return context


def verifying_context(truststore: str | None, *, tls_min_version: str) -> ssl.SSLContext:
    """A client context that checks the certificate and host name: ``truststore``'s CAs,
    else the system's; no TLS older than ``tls_min_version``."""
    if truststore:
        # A truststore replaces the system CAs: it pins the server to a private CA.
        context = ssl.create_default_context(cadata=truststore)
    else:
        context = ssl.create_default_context()
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = TLS_VERSIONS[tls_min_version]
    return context
