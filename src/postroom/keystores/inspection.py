"""What an operator checks about a signing entry: the certificate's details and warnings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from postroom.keystores.loading import KeyEntry

_EXPIRY_WARNING_DAYS = 30
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


@dataclass(frozen=True, slots=True)
class KeystoreInfo:
    """What ``postroom keystores show`` prints about a key entry, with its warnings."""

    alias: str
    subject: str
    issuer: str
    serial: str  # upper-case hex without colons, as ``openssl x509 -serial`` prints it
    not_before: datetime
    not_after: datetime
    key_type: str  # "RSA", "EC P-256"...
    key_size: int
    emails: tuple[str, ...]
    chain_length: int
    warnings: tuple[str, ...]


def describe(
    entry: KeyEntry, *, address: str | None = None, now: datetime | None = None
) -> KeystoreInfo:
    """Summarise a key entry, warning about what would make signed mail look wrong.

    ``address`` is the sender the entry signs for: a certificate that does not name it
    makes recipients' clients flag the signature. ``now`` defaults to the current time.
    """
    cert = entry.certificate
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    emails = certificate_emails(cert)
    warnings = validity_warnings(cert, now)
    if address is not None and address.casefold() not in {e.casefold() for e in emails}:
        warnings.append(
            f"the certificate does not cover {address}: recipients' clients will show a warning"
        )
    warnings.extend(_usage_warnings(cert))
    key = entry.private_key
    if isinstance(key, rsa.RSAPrivateKey):
        key_type = "RSA"
    else:
        key_type = f"EC {_CURVE_NAMES.get(key.curve.name, key.curve.name)}"
    serial = f"{cert.serial_number:X}"
    return KeystoreInfo(
        alias=entry.alias,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=serial.zfill(len(serial) + len(serial) % 2),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        key_size=key.key_size,
        emails=emails,
        chain_length=len(entry.chain),
        warnings=tuple(warnings),
    )


def certificate_emails(cert: x509.Certificate) -> tuple[str, ...]:
    """rfc822Name entries of the SubjectAlternativeName, then the subject's emailAddress."""
    found: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found.extend(san.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        pass
    subject = cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    found.extend(str(attribute.value) for attribute in subject)
    unique: dict[str, str] = {}
    for email in found:
        unique.setdefault(email.casefold(), email)
    return tuple(unique.values())


def validity_warnings(cert: x509.Certificate, now: datetime) -> list[str]:
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < not_before:
        return [f"the certificate is not valid yet: it starts on {not_before:%Y-%m-%d %H:%M} UTC"]
    if now > not_after:
        return [f"the certificate expired on {not_after:%Y-%m-%d %H:%M} UTC"]
    days = (not_after - now).days
    if days < _EXPIRY_WARNING_DAYS:
        when = "within a day" if days == 0 else f"in {days} day{'s' if days > 1 else ''}"
        return [f"the certificate expires {when}, on {not_after:%Y-%m-%d %H:%M} UTC"]
    return []


def _usage_warnings(cert: x509.Certificate) -> list[str]:
    """Key usages that make mail clients reject the signature (only when the extension is there)."""
    warnings = []
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            warnings.append(
                "the certificate's key usage lacks digitalSignature: it may not sign email"
            )
    except x509.ExtensionNotFound:
        pass
    try:
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        allowed = {
            ExtendedKeyUsageOID.EMAIL_PROTECTION,
            ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
        }
        if not allowed.intersection(extended):
            warnings.append(
                "the certificate's extended key usage lacks emailProtection: "
                "it is not meant for email"
            )
    except x509.ExtensionNotFound:
        pass
    return warnings
