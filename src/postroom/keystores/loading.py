"""Reading S/MIME signing keystores (PKCS#12, JKS, PEM) into a key and its certificates.

An email account names a keystore record; the record holds the file's bytes and
password. This module turns those bytes into a :class:`KeyEntry` ready to sign, and
:func:`describe` summarises one for operators. It is pure: no database, no files.

Every failure, whatever library raised it, leaves as a
:class:`~postroom.errors.ConfigurationError` whose message never contains the password.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import jks
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from postroom.errors import ConfigurationError

#: The key types S/MIME signing supports; anything else is refused when loading.
SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_JKS_MAGIC = b"\xfe\xed\xfe\xed"
_JCEKS_MAGIC = b"\xce\xce\xce\xce"
# DER contents of the object identifiers read while walking a PKCS#12 file.
_OID_DATA = bytes.fromhex("2a864886f70d010701")
_OID_KEY_BAG = bytes.fromhex("2a864886f70d010c0a0101")
_OID_SHROUDED_KEY_BAG = bytes.fromhex("2a864886f70d010c0a0102")
_OID_FRIENDLY_NAME = bytes.fromhex("2a864886f70d010914")
_EXPIRY_WARNING_DAYS = 30
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_PKCS12_UNREADABLE = "the keystore password is wrong (or the file is not a PKCS#12 keystore)"


class KeystoreKind(StrEnum):
    """The file formats a signing keystore may come in."""

    PKCS12 = "pkcs12"
    JKS = "jks"
    PEM = "pem"


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """A private key with its certificate and chain, ready to sign."""

    alias: str
    private_key: SigningKey
    certificate: x509.Certificate
    #: The other certificates of the chain (never the leaf), as the store holds them.
    chain: tuple[x509.Certificate, ...]


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A key entry as read from a store, before its key type and certificate are checked."""

    alias: str
    key: PrivateKeyTypes
    certificate: x509.Certificate | None
    chain: tuple[x509.Certificate, ...]


def detect_kind(data: bytes, filename: str | None = None) -> KeystoreKind:
    """Tell the format of keystore bytes, by content first and by file name only as a hint.

    Content wins because names lie: since Java 9, keytool writes PKCS#12 files that are
    still called ``*.jks``. JCEKS stores (Java's own format, with weak key protection)
    are refused; ``keytool -importkeystore`` converts them to PKCS#12.
    """
    head = data.lstrip()[:4]
    if head == _JCEKS_MAGIC:
        raise ConfigurationError(
            "JCEKS keystores are not supported: convert it to PKCS#12 with "
            "'keytool -importkeystore -deststoretype pkcs12'"
        )
    if head == _JKS_MAGIC:
        return KeystoreKind.JKS
    if b"-----BEGIN " in data:
        return KeystoreKind.PEM
    if head[:1] == b"\x30":  # a DER SEQUENCE: what every PKCS#12 file starts with
        return KeystoreKind.PKCS12
    if not data:
        raise ConfigurationError("the keystore file is empty")
    suffix = (filename or "").rpartition(".")[2].lower()
    if suffix in ("jks", "keystore"):
        return KeystoreKind.JKS
    if suffix in ("pem", "crt", "cer", "key"):
        return KeystoreKind.PEM
    return KeystoreKind.PKCS12


def list_aliases(data: bytes, *, kind: KeystoreKind, password: str | None) -> list[str]:
    """The aliases of the key entries of a keystore; certificate-only entries are not listed."""
    return [candidate.alias for candidate in _read(data, kind, password)]


def load_keystore(
    data: bytes, *, kind: KeystoreKind, password: str | None, alias: str | None = None
) -> KeyEntry:
    """Load the key entry named ``alias`` (optional when the store holds a single key)."""
    candidates = _read(data, kind, password)
    aliases = ", ".join(repr(c.alias) for c in candidates)
    if alias is None:
        if len(candidates) > 1:
            raise ConfigurationError(
                f"the keystore holds {len(candidates)} keys ({aliases}): "
                "give the alias of the one to use"
            )
        chosen = candidates[0]
    else:
        # Java compares aliases without regard to case; users copy them from keytool.
        matches = [c for c in candidates if c.alias.casefold() == alias.casefold()]
        if not matches:
            raise ConfigurationError(
                f"the keystore has no key entry {alias!r}; its entries are: {aliases}"
            )
        chosen = matches[0]
    return _finish(chosen)


def _read(data: bytes, kind: KeystoreKind, password: str | None) -> list[_Candidate]:
    """Every key entry of the store, in file order; at least one."""
    readers = {KeystoreKind.PKCS12: _read_pkcs12, KeystoreKind.JKS: _read_jks}
    candidates = readers.get(kind, _read_pem)(data, password)
    if not candidates:
        raise ConfigurationError("the keystore holds no private key")
    return candidates


def _finish(candidate: _Candidate) -> KeyEntry:
    """Check the key type and that the certificate belongs to the key."""
    key = candidate.key
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigurationError(
            f"entry {candidate.alias!r} holds a {type(key).__name__.removeprefix('_')}: "
            "S/MIME signing needs an RSA or EC key"
        )
    certificate = candidate.certificate
    if certificate is None:
        raise ConfigurationError(
            f"no certificate of the keystore matches the private key of entry {candidate.alias!r}"
        )
    if not _matches(key, certificate):
        raise ConfigurationError(
            f"the certificate of entry {candidate.alias!r} does not match its private key"
        )
    return KeyEntry(candidate.alias, key, certificate, candidate.chain)


def _matches(key: PrivateKeyTypes, certificate: x509.Certificate) -> bool:
    """Whether the certificate certifies this key (their public keys are identical)."""
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        return key.public_key().public_bytes(*spki) == certificate.public_key().public_bytes(*spki)
    except Exception:  # a damaged or unsupported public key matches nothing
        return False


def _parsed(certificates: list[x509.Certificate]) -> list[x509.Certificate]:
    """The certificates, once every part Postroom reads has parsed.

    cryptography parses names and extensions lazily; a damaged certificate must fail
    here as a ConfigurationError, not later while signing or describing.
    """
    for cert in certificates:
        try:
            _ = (cert.subject, cert.issuer, cert.extensions, cert.not_valid_after_utc)
            _ = (cert.not_valid_before_utc, cert.public_key(), cert.subject.rfc4514_string())
        except Exception as exc:
            raise ConfigurationError(
                f"a certificate of the keystore is damaged ({type(exc).__name__})"
            ) from exc
    return certificates


def _common_name(certificate: x509.Certificate, default: str) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else default


def _split_certificates(
    key: PrivateKeyTypes, pool: list[x509.Certificate], other_keys: list[PrivateKeyTypes]
) -> tuple[x509.Certificate | None, tuple[x509.Certificate, ...]]:
    """The leaf of ``key`` in ``pool``, and the rest minus the leaves of ``other_keys``."""
    leaf = next((cert for cert in pool if _matches(key, cert)), None)
    chain = tuple(
        cert
        for cert in pool
        if cert is not leaf and not any(_matches(other, cert) for other in other_keys)
    )
    return leaf, chain


# --- PKCS#12 ---------------------------------------------------------------------------


def _read_pkcs12(data: bytes, password: str | None) -> list[_Candidate]:
    """Key entries of a PKCS#12 file; their aliases are the friendly names."""
    secret = password.encode() if password else None
    try:
        store = pkcs12.load_pkcs12(data, secret)
    except Exception as exc:  # cryptography says the same for a bad password and bad data
        raise ConfigurationError(_PKCS12_UNREADABLE) from exc
    pool = [store.cert, *store.additional_certs] if store.cert else store.additional_certs
    labelled = [(c.certificate, c.friendly_name) for c in pool]
    certificates = _parsed([cert for cert, _ in labelled])
    try:
        bags = _pkcs12_key_bags(data)
    except (ValueError, IndexError):  # BER or unusual layouts: keep to the one key below
        bags = []
    if len(bags) <= 1:
        # The usual case: cryptography already decrypted the only key.
        if store.key is None:
            return []
        named = bags[0][0] if bags else None
        keys: list[tuple[str | None, PrivateKeyTypes]] = [(named, store.key)]
    else:
        keys = [(name, _decrypt_bag(der, shrouded, secret, name)) for name, shrouded, der in bags]
    candidates = []
    for index, (name, key) in enumerate(keys):
        others = [other for i, (_, other) in enumerate(keys) if i != index]
        leaf, chain = _split_certificates(key, certificates, others)
        label = next((label for cert, label in labelled if cert is leaf), None)
        alias = name or (label.decode(errors="replace") if label else None)
        fallback = _common_name(leaf, "pkcs12") if leaf is not None else "pkcs12"
        candidates.append(_Candidate(alias or fallback, key, leaf, chain))
    return candidates


def _decrypt_bag(
    der: bytes, shrouded: bool, secret: bytes | None, name: str | None
) -> PrivateKeyTypes:
    try:
        return serialization.load_der_private_key(der, secret if shrouded else None)
    except Exception as exc:
        raise ConfigurationError(
            f"cannot decrypt the private key {name or ''!r} of the PKCS#12 keystore "
            "(unsupported encryption, or a key password different from the store password)"
        ) from exc


def _tlvs(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split DER into (tag, contents, whole encoding) triples; raises ValueError on BER."""
    items, pos = [], 0
    while pos < len(data):
        tag, length, start = data[pos], data[pos + 1], pos + 2
        if length & 0x80:
            size = length & 0x7F
            if not 0 < size <= 4:
                raise ValueError("not DER: indefinite or oversized length")
            length, start = int.from_bytes(data[start : start + size], "big"), start + size
        if start + length > len(data):
            raise ValueError("truncated DER")
        items.append((tag, data[start : start + length], data[pos : start + length]))
        pos = start + length
    return items


def _pkcs12_key_bags(data: bytes) -> list[tuple[str | None, bool, bytes]]:
    """(friendly name, shrouded?, PKCS#8 DER) of each key bag, in file order.

    cryptography returns only the first key of a PKCS#12 file, so stores holding several
    keys are walked here. Key bags sit in plain ``data`` safes (they are encrypted one by
    one), so the encrypted safes, which hold certificates, need not be opened.
    """
    pfx = _tlvs(_tlvs(data)[0][1])
    oid, explicit = _tlvs(pfx[1][1])[:2]
    if oid[1] != _OID_DATA:
        return []
    safes = _tlvs(_tlvs(_tlvs(explicit[1])[0][1])[0][1])
    bags = []
    for _, content_info, _ in safes:
        kind, *rest = _tlvs(content_info)
        if kind[1] != _OID_DATA or not rest:
            continue
        for _, bag, _ in _tlvs(_tlvs(_tlvs(rest[0][1])[0][1])[0][1]):
            bag_id, value, *attributes = _tlvs(bag)
            if bag_id[1] not in (_OID_KEY_BAG, _OID_SHROUDED_KEY_BAG):
                continue
            name = None
            for _, attribute, _ in _tlvs(attributes[0][1]) if attributes else []:
                attr_id, values = _tlvs(attribute)[:2]
                if attr_id[1] == _OID_FRIENDLY_NAME:  # a BMPString: UTF-16 big-endian
                    name = _tlvs(values[1])[0][1].decode("utf-16-be")
            bags.append((name, bag_id[1] == _OID_SHROUDED_KEY_BAG, _tlvs(value[1])[0][2]))
    return bags


# --- JKS --------------------------------------------------------------------------------


def _read_jks(data: bytes, password: str | None) -> list[_Candidate]:
    """Key entries of a Java keystore; each key must use the store password."""
    if data[:4] == _JCEKS_MAGIC:
        detect_kind(data)  # raises the explanation
    if data[:4] != _JKS_MAGIC:
        raise ConfigurationError("the file is not a JKS keystore")
    if not password:
        raise ConfigurationError("a JKS keystore cannot be read without its password")
    try:
        store = jks.KeyStore.loads(data, password)
    except jks.util.KeystoreSignatureException as exc:
        raise ConfigurationError("the keystore password is wrong") from exc
    except Exception as exc:
        raise ConfigurationError(
            f"the JKS keystore is corrupt or unreadable ({type(exc).__name__})"
        ) from exc
    candidates = []
    for alias, entry in store.private_keys.items():
        if not entry.is_decrypted():
            raise ConfigurationError(
                f"the key of entry {alias!r} has its own password: Postroom needs the key "
                "password to equal the store password (change it with 'keytool -keypasswd')"
            )
        try:
            key = serialization.load_der_private_key(entry.pkey_pkcs8, None)
            certs = [x509.load_der_x509_certificate(der) for _, der in entry.cert_chain]
        except Exception as exc:
            raise ConfigurationError(
                f"entry {alias!r} of the JKS keystore cannot be read ({type(exc).__name__})"
            ) from exc
        leaf = certs[0] if _parsed(certs) else None
        candidates.append(_Candidate(alias, key, leaf, tuple(certs[1:])))
    return candidates


# --- PEM --------------------------------------------------------------------------------


def _read_pem(data: bytes, password: str | None) -> list[_Candidate]:
    """The one key entry of a PEM bundle: a private key and its certificates."""
    blocks = [b"-----BEGIN " + part for part in data.split(b"-----BEGIN ")[1:]]
    key_blocks = [b for b in blocks if b.split(b"\n", 1)[0].rstrip().endswith(b"PRIVATE KEY-----")]
    if len(key_blocks) > 1:
        raise ConfigurationError("the PEM bundle holds several private keys; keep only one")
    try:
        loaded = x509.load_pem_x509_certificates(data) if b"CERTIFICATE-----" in data else []
    except Exception as exc:
        raise ConfigurationError(f"a certificate of the PEM bundle is unreadable: {exc}") from exc
    certificates = _parsed(loaded)
    if not key_blocks:
        return []
    block = key_blocks[0]
    # A password recorded for the keystore is not an error when the key is in the clear.
    encrypted = block.startswith(b"-----BEGIN ENCRYPTED") or b"Proc-Type: 4,ENCRYPTED" in block
    if encrypted and not password:
        raise ConfigurationError("the private key is encrypted: the keystore password is needed")
    try:
        key = serialization.load_pem_private_key(
            block, password.encode() if encrypted and password else None
        )
    except Exception as exc:
        reason = "the keystore password is wrong" if encrypted else "the private key is unreadable"
        raise ConfigurationError(f"{reason} (or the PEM key is corrupt)") from exc
    leaf, chain = _split_certificates(key, certificates, [])
    if leaf is None:
        if not certificates:
            raise ConfigurationError("the PEM bundle holds no certificate for its private key")
        raise ConfigurationError("no certificate of the PEM bundle matches its private key")
    return [_Candidate(_common_name(leaf, "pem"), key, leaf, chain)]


# --- Inspection -------------------------------------------------------------------------
