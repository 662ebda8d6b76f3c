"""S/MIME encryption settings of an account: whose certificate encrypts mail to whom.

The certificate map reads like a decision table: rows are tried in order and the
first whose ``recipient`` matches an address gives its certificate. A row names one
address (``carol@bank.example``) or a whole domain (``@bank.example``), for a
partner whose gateway decrypts for everyone there.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from postroom.errors import MessageError
from postroom.keystores.inspection import certificate_emails, validity_warnings
from postroom.validation import check_address

MAX_CERTIFICATE_ROWS = 10_000
_DOMAIN_PROBE = "postmaster"  # a domain row is checked as the address postmaster@domain


class WithoutCertificate(StrEnum):
    """What happens to recipients the certificate map has no certificate for."""

    FAIL = "fail"  # the whole email fails, saying who has no certificate
    SEND_UNENCRYPTED = "send_unencrypted"  # they get a separate, unencrypted copy


@functools.lru_cache(maxsize=1024)
def load_certificate(pem: str) -> x509.Certificate:
    """The one certificate in ``pem``; ``ValueError`` saying why it cannot encrypt."""
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise ValueError("certificate must be a PEM certificate (BEGIN CERTIFICATE)") from None
    if len(certificates) != 1:
        raise ValueError(f"certificate must hold exactly one certificate, not {len(certificates)}")
    certificate = certificates[0]
    if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
        # S/MIME key transport (RFC 8551) as the cryptography library builds it: RSA only.
        raise ValueError("an encryption certificate must have an RSA key")
    return certificate


class CertificateRow(BaseModel):
    """One row of the certificate map: a recipient address or ``@domain``, and its certificate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipient: str
    certificate: str

    @field_validator("recipient")
    @classmethod
    def _recipient(cls, v: str) -> str:
        v = v.strip()
        if v.startswith(("@", "*@")):
            domain = v.split("@", 1)[1]
            probe = check_address(f"{_DOMAIN_PROBE}@{domain}", what=f"recipient {v!r}")
            return "@" + probe.split("@", 1)[1].lower()
        return check_address(v, what="recipient").lower()

    @field_validator("certificate")
    @classmethod
    def _certificate(cls, v: str) -> str:
        load_certificate(v)
        return v

    @property
    def x509(self) -> x509.Certificate:
        return load_certificate(self.certificate)

    def matches(self, address: str) -> bool:
        address = address.lower()
        if self.recipient.startswith("@"):
            return address.endswith(self.recipient)
        return address == self.recipient


class Encryption(BaseModel):
    """S/MIME encryption (AES-256) for recipients whose certificates are known."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    certificates: list[CertificateRow] = Field(min_length=1, max_length=MAX_CERTIFICATE_ROWS)
    without_certificate: WithoutCertificate = WithoutCertificate.FAIL

    def certificate_for(self, address: str) -> CertificateRow | None:
        return next((row for row in self.certificates if row.matches(address)), None)


@dataclass(frozen=True, slots=True)
class Copy:
    """The recipients of one outgoing copy and the certificates it is encrypted to."""

    recipients: tuple[str, ...]
    certificates: tuple[x509.Certificate, ...] = ()

    @property
    def encrypted(self) -> bool:
        return bool(self.certificates)


def plan_copies(
    encryption: Encryption | None, recipients: Sequence[str], *, now: datetime
) -> list[Copy]:
    """Split ``recipients`` into an encrypted copy and, by the policy, an unencrypted one.

    Raises :class:`MessageError` when the policy is to fail and a recipient has no
    certificate, or when a recipient's certificate is not valid at ``now``: an expired
    certificate is never a reason to send in clear.
    """
    if encryption is None:
        return [Copy(tuple(recipients))]
    encrypted: list[str] = []
    certificates: dict[bytes, x509.Certificate] = {}
    plain: list[str] = []
    for address in recipients:
        row = encryption.certificate_for(address)
        if row is None:
            plain.append(address)
            continue
        certificate = row.x509
        _check_validity(certificate, address, now)
        encrypted.append(address)
        certificates.setdefault(certificate.fingerprint(hashes.SHA256()), certificate)
    if plain and encryption.without_certificate is WithoutCertificate.FAIL:
        raise MessageError(
            f"no encryption certificate for {', '.join(plain)}; the account sends only "
            "encrypted mail (without_certificate: fail): add their certificates to its map, "
            "or set without_certificate: send_unencrypted"
        )
    copies = []
    if encrypted:
        copies.append(Copy(tuple(encrypted), tuple(certificates.values())))
    if plain:
        copies.append(Copy(tuple(plain)))
    return copies


def _check_validity(certificate: x509.Certificate, address: str, now: datetime) -> None:
    if now > certificate.not_valid_after_utc:
        raise MessageError(
            f"the encryption certificate for {address} expired on "
            f"{certificate.not_valid_after_utc:%Y-%m-%d}: replace it in the certificate map"
        )
    if now < certificate.not_valid_before_utc:
        raise MessageError(
            f"the encryption certificate for {address} is not valid before "
            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )


def encryption_warnings(encryption: Encryption, *, now: datetime) -> list[str]:
    """What deserves a look in a certificate map: expiry, names, rows that never match."""
    warnings = []
    seen: set[str] = set()
    for row in encryption.certificates:
        if row.recipient in seen:
            warnings.append(f"{row.recipient}: an earlier row already matches; this one never will")
            continue
        seen.add(row.recipient)
        certificate = row.x509
        warnings.extend(f"{row.recipient}: {w}" for w in validity_warnings(certificate, now))
        warnings.extend(f"{row.recipient}: {w}" for w in _usage_warnings(certificate))
        emails = {e.casefold() for e in certificate_emails(certificate)}
        if not row.recipient.startswith("@") and emails and row.recipient not in emails:
            warnings.append(
                f"{row.recipient}: the certificate names {', '.join(sorted(emails))}, "
                "not this address; is it the right person's?"
            )
    return warnings


def _usage_warnings(certificate: x509.Certificate) -> list[str]:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return []
    if usage.key_encipherment:
        return []
    return ["the certificate's key usage lacks keyEncipherment: mail clients may not decrypt"]
