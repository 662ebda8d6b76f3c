"""Loading and describing signing keystores, with key material made by cryptography and pyjks."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jks
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from postroom.errors import ConfigurationError
from postroom.keystores import (
    KeyEntry,
    KeystoreKind,
    describe,
    detect_kind,
    list_aliases,
    load_keystore,
)
from tests.smimekit import issue_leaf

PASSWORD = "Quokka-Lantern-4471!"
WRONG = "Narwhal-Teapot-9902?"
ADDRESS = "mortgages@example.com"
START = datetime(2026, 1, 1, tzinfo=UTC)
END = START + timedelta(days=365)
MIDDLE = START + timedelta(days=100)


@dataclass(frozen=True)
class Material:
    """A small CA and two leaves for the same mailbox: one RSA 2048, one EC P-256."""

    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    rsa_key: rsa.RSAPrivateKey
    rsa_cert: x509.Certificate
    ec_key: ec.EllipticCurvePrivateKey
    ec_cert: x509.Certificate


def _name(common_name: str, email: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if email:
        attributes.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    return x509.Name(attributes)


def _leaf(
    public_key: CertificatePublicKeyTypes,
    ca_key: CertificateIssuerPrivateKeyTypes,
    ca: x509.Certificate,
    *,
    subject: x509.Name | None = None,
    emails: Sequence[str] = (ADDRESS,),
    digital_signature: bool = True,
    usages: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.EMAIL_PROTECTION,),
) -> x509.Certificate:
    return issue_leaf(
        public_key,
        ca_key,
        ca,
        subject=subject or _name("Mortgages Desk"),
        emails=emails,
        not_before=START,
        not_after=END,
        serial=0x0ABCDEF123,
        digital_signature=digital_signature,
        usages=usages,
    )


@pytest.fixture(scope="module")
def material() -> Material:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Postroom Test CA"))
        .issuer_name(_name("Postroom Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(START)
        .not_valid_after(END + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    return Material(
        ca_key,
        ca,
        rsa_key,
        _leaf(rsa_key.public_key(), ca_key, ca),
        ec_key,
        _leaf(ec_key.public_key(), ca_key, ca),
    )


def _assert_signs(entry: KeyEntry) -> None:
    """The loaded key signs, and the certificate's public key verifies the signature."""
    data = b"Your mortgage offer is attached."
    key, public = entry.private_key, entry.certificate.public_key()
    if isinstance(key, rsa.RSAPrivateKey):
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(key.sign(data, padding.PKCS1v15(), hashes.SHA256()), data,
                      padding.PKCS1v15(), hashes.SHA256())  # fmt: skip
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(key.sign(data, ec.ECDSA(hashes.SHA256())), data, ec.ECDSA(hashes.SHA256()))


def _p12(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    cas: list[x509.Certificate] | None,
    *,
    name: bytes | None = b"mortgages",
    password: str | None = PASSWORD,
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(name, key, cert, cas, encryption)


def _pem(*parts: bytes) -> bytes:
    return b"".join(parts)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
    password: str | None = None,
    fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _jks_rsa_entry(m: Material, alias: str = "mortgages") -> object:
    """An RSA entry as pyjks builds one from a raw (PKCS#1) key."""
    raw = m.rsa_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return jks.PrivateKeyEntry.new(alias, [_der(m.rsa_cert), _der(m.ca)], raw, "rsa_raw")


def _jks_ec_entry(m: Material, alias: str = "ec-key") -> object:
    pkcs8 = m.ec_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return jks.PrivateKeyEntry.new(alias, [_der(m.ec_cert), _der(m.ca)], pkcs8)


def _jks(*entries: object, password: str = PASSWORD) -> bytes:
    data: bytes = jks.KeyStore.new("jks", list(entries)).saves(password)
    return data


# --- DER surgery: cryptography writes one key per PKCS#12 file, so two are merged here ---


def _tlv(data: bytes, pos: int) -> tuple[int, int]:
    """(start of contents, end) of the DER element at ``pos``."""
    length, start = data[pos + 1], pos + 2
    if length & 0x80:
        size = length & 0x7F
        length, start = int.from_bytes(data[start : start + size], "big"), start + size
    return start, start + length


def _encode(tag: int, contents: bytes) -> bytes:
    size = len(contents)
    if size < 0x80:
        return bytes([tag, size]) + contents
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + contents


def _safes(pfx: bytes) -> bytes:
    """The ContentInfo elements of a PFX's AuthenticatedSafe, concatenated."""
    start, _ = _tlv(pfx, 0)  # PFX
    _, end = _tlv(pfx, start)  # version
    pos, _ = _tlv(pfx, end)  # authSafe ContentInfo
    _, pos = _tlv(pfx, pos)  # contentType (data)
    pos, _ = _tlv(pfx, pos)  # [0]
    pos, _ = _tlv(pfx, pos)  # OCTET STRING
    pos, end = _tlv(pfx, pos)  # AuthenticatedSafe
    return pfx[pos:end]


def _merge_p12(*stores: bytes) -> bytes:
    """One PFX with the safes of all ``stores``, without a MAC (so none needs recomputing)."""
    data_oid = _encode(0x06, bytes.fromhex("2a864886f70d010701"))
    auth_safe = _encode(0x30, b"".join(_safes(s) for s in stores))
    content = _encode(0x30, data_oid + _encode(0xA0, _encode(0x04, auth_safe)))
    return _encode(0x30, _encode(0x02, b"\x03") + content)


def _message(exc: BaseException) -> str:
    """The error's text and that of every exception chained to it."""
    parts = []
    current: BaseException | None = exc
    while current is not None:
        parts.append(f"{current!s} {current!r}")
        current = current.__cause__ or current.__context__
    return " ".join(parts)


# --- detect_kind --------------------------------------------------------------------------


def test_detect_kind_by_content_then_name(material: Material) -> None:
    m = material
    p12 = _p12(m.rsa_key, m.rsa_cert, [m.ca])
    assert detect_kind(p12) is KeystoreKind.PKCS12
    assert detect_kind(p12, "legacy.jks") is KeystoreKind.PKCS12  # keytool's PKCS#12 ".jks"
    assert detect_kind(_jks(_jks_rsa_entry(m))) is KeystoreKind.JKS
    bundle = b"Bag Attributes\n" + _key_pem(m.ec_key) + _cert_pem(m.ec_cert)
    assert detect_kind(bundle) is KeystoreKind.PEM
    assert detect_kind(b"garbage", "store.jks") is KeystoreKind.JKS
    assert detect_kind(b"garbage", "signer.PEM") is KeystoreKind.PEM
    assert detect_kind(b"garbage") is KeystoreKind.PKCS12
    with pytest.raises(ConfigurationError, match="empty"):
        detect_kind(b"")


def test_jceks_is_refused() -> None:
    jceks = b"\xce\xce\xce\xce\x00\x00\x00\x02\x00\x00\x00\x00"
    with pytest.raises(ConfigurationError, match="JCEKS keystores are not supported"):
        detect_kind(jceks)
    with pytest.raises(ConfigurationError, match="JCEKS"):
        load_keystore(jceks, kind=KeystoreKind.JKS, password=PASSWORD)


# --- PKCS#12 ------------------------------------------------------------------------------


def test_pkcs12_rsa_with_chain(material: Material) -> None:
    m = material
    data = _p12(m.rsa_key, m.rsa_cert, [m.ca])
    entry = load_keystore(data, kind=KeystoreKind.PKCS12, password=PASSWORD)
    assert entry.alias == "mortgages"
    assert entry.certificate == m.rsa_cert
    assert entry.chain == (m.ca,)
    _assert_signs(entry)
    # Aliases compare without regard to case, as in Java.
    same = load_keystore(data, kind=KeystoreKind.PKCS12, password=PASSWORD, alias="MORTGAGES")
    assert same.certificate == m.rsa_cert
    assert list_aliases(data, kind=KeystoreKind.PKCS12, password=PASSWORD) == ["mortgages"]


def test_pkcs12_ec_without_name_or_password(material: Material) -> None:
    m = material
    data = _p12(m.ec_key, m.ec_cert, None, name=None, password=None)
    entry = load_keystore(data, kind=KeystoreKind.PKCS12, password=None)
    assert entry.alias == "Mortgages Desk"  # the certificate's CN stands in for a name
    assert entry.chain == ()
    assert isinstance(entry.private_key, ec.EllipticCurvePrivateKey)
    _assert_signs(entry)


@pytest.mark.parametrize("given", [WRONG, None])
def test_pkcs12_wrong_password(material: Material, given: str | None) -> None:
    data = _p12(material.rsa_key, material.rsa_cert, [material.ca])
    with pytest.raises(ConfigurationError) as caught:
        load_keystore(data, kind=KeystoreKind.PKCS12, password=given)
    assert str(caught.value) == (
        "the keystore password is wrong (or the file is not a PKCS#12 keystore)"
    )
    assert PASSWORD not in _message(caught.value)
    assert WRONG not in _message(caught.value)


def test_pkcs12_two_keys_need_an_alias(material: Material) -> None:
    m = material
    data = _merge_p12(
        _p12(m.rsa_key, m.rsa_cert, [m.ca], name=b"rsa-key"),
        _p12(m.ec_key, m.ec_cert, None, name=b"ec-key"),
    )
    assert list_aliases(data, kind=KeystoreKind.PKCS12, password=PASSWORD) == [
        "rsa-key",
        "ec-key",
    ]
    with pytest.raises(ConfigurationError, match="holds 2 keys \\('rsa-key', 'ec-key'\\)"):
        load_keystore(data, kind=KeystoreKind.PKCS12, password=PASSWORD)
    ec_entry = load_keystore(data, kind=KeystoreKind.PKCS12, password=PASSWORD, alias="EC-key")
    assert ec_entry.certificate == m.ec_cert
    assert ec_entry.chain == (m.ca,)  # the other key's certificate is not in the chain
    _assert_signs(ec_entry)
    rsa_entry = load_keystore(data, kind=KeystoreKind.PKCS12, password=PASSWORD, alias="rsa-key")
    assert rsa_entry.certificate == m.rsa_cert
    _assert_signs(rsa_entry)
    with pytest.raises(ConfigurationError) as caught:
        load_keystore(data, kind=KeystoreKind.PKCS12, password=WRONG, alias="rsa-key")
    assert WRONG not in _message(caught.value)


def test_pkcs12_key_without_its_certificate(material: Material) -> None:
    m = material
    encryption = serialization.BestAvailableEncryption(PASSWORD.encode())
    lost = pkcs12.serialize_key_and_certificates(b"lost", m.rsa_key, None, [m.ca], encryption)
    with pytest.raises(ConfigurationError, match=r"no certificate .*private key of entry 'lost'"):
        load_keystore(lost, kind=KeystoreKind.PKCS12, password=PASSWORD)
    trust = pkcs12.serialize_key_and_certificates(None, None, None, [m.ca], encryption)
    with pytest.raises(ConfigurationError, match="no private key"):
        load_keystore(trust, kind=KeystoreKind.PKCS12, password=PASSWORD)


def test_missing_alias_lists_the_entries(material: Material) -> None:
    data = _p12(material.rsa_key, material.rsa_cert, [material.ca])
    with pytest.raises(ConfigurationError, match=r"no key entry 'sales'.*'mortgages'"):
        load_keystore(data, kind=KeystoreKind.PKCS12, password=PASSWORD, alias="sales")
    store = _jks(_jks_rsa_entry(material), _jks_ec_entry(material))
    with pytest.raises(ConfigurationError, match=r"'mortgages', 'ec-key'|'ec-key', 'mortgages'"):
        load_keystore(store, kind=KeystoreKind.JKS, password=PASSWORD, alias="sales")


# --- JKS ----------------------------------------------------------------------------------


def test_jks_rsa_and_ec(material: Material) -> None:
    m = material
    data = _jks(_jks_rsa_entry(m), _jks_ec_entry(m))
    assert sorted(list_aliases(data, kind=KeystoreKind.JKS, password=PASSWORD)) == [
        "ec-key",
        "mortgages",
    ]
    with pytest.raises(ConfigurationError, match="holds 2 keys"):
        load_keystore(data, kind=KeystoreKind.JKS, password=PASSWORD)
    for alias, cert in (("Mortgages", m.rsa_cert), ("ec-key", m.ec_cert)):
        entry = load_keystore(data, kind=KeystoreKind.JKS, password=PASSWORD, alias=alias)
        assert entry.certificate == cert
        assert entry.chain == (m.ca,)
        _assert_signs(entry)


@pytest.mark.parametrize("given", [WRONG, None])
def test_jks_wrong_password(material: Material, given: str | None) -> None:
    data = _jks(_jks_rsa_entry(material))
    with pytest.raises(ConfigurationError, match="password") as caught:
        load_keystore(data, kind=KeystoreKind.JKS, password=given)
    assert PASSWORD not in _message(caught.value)
    assert WRONG not in _message(caught.value)


def test_jks_key_with_its_own_password(material: Material) -> None:
    entry = _jks_rsa_entry(material)
    entry.encrypt(WRONG)  # type: ignore[attr-defined]
    data = _jks(entry)
    with pytest.raises(ConfigurationError, match="its own password") as caught:
        load_keystore(data, kind=KeystoreKind.JKS, password=PASSWORD)
    assert WRONG not in _message(caught.value)


def test_jks_certificates_only(material: Material) -> None:
    data = _jks(jks.TrustedCertEntry.new("ca", _der(material.ca)))
    with pytest.raises(ConfigurationError, match="no private key"):
        load_keystore(data, kind=KeystoreKind.JKS, password=PASSWORD)


def test_jks_leaf_must_match_the_key(material: Material) -> None:
    m = material
    raw = m.rsa_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    entry = jks.PrivateKeyEntry.new("mixed", [_der(m.ec_cert)], raw, "rsa_raw")
    with pytest.raises(ConfigurationError, match="does not match its private key"):
        load_keystore(_jks(entry), kind=KeystoreKind.JKS, password=PASSWORD)


# --- PEM ----------------------------------------------------------------------------------


def test_pem_bundle_in_any_order(material: Material) -> None:
    m = material
    bundle = _pem(_cert_pem(m.ca), _key_pem(m.rsa_key), _cert_pem(m.rsa_cert))
    entry = load_keystore(bundle, kind=KeystoreKind.PEM, password=None)
    assert entry.alias == "Mortgages Desk"
    assert entry.certificate == m.rsa_cert
    assert entry.chain == (m.ca,)
    _assert_signs(entry)
    # A password recorded for the keystore does no harm when the key is in the clear.
    assert load_keystore(bundle, kind=KeystoreKind.PEM, password=PASSWORD).alias == entry.alias


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_pem_encrypted_key(material: Material, fmt: serialization.PrivateFormat) -> None:
    m = material
    bundle = _pem(_key_pem(m.ec_key, PASSWORD, fmt), _cert_pem(m.ec_cert), _cert_pem(m.ca))
    entry = load_keystore(bundle, kind=KeystoreKind.PEM, password=PASSWORD)
    _assert_signs(entry)
    for given in (WRONG, None):
        with pytest.raises(ConfigurationError, match="password") as caught:
            load_keystore(bundle, kind=KeystoreKind.PEM, password=given)
        assert PASSWORD not in _message(caught.value)
        assert WRONG not in _message(caught.value)


def test_pem_key_and_certificate_mismatch(material: Material) -> None:
    m = material
    bundle = _pem(_key_pem(m.rsa_key), _cert_pem(m.ec_cert), _cert_pem(m.ca))
    with pytest.raises(ConfigurationError, match=r"no certificate .* matches its private key"):
        load_keystore(bundle, kind=KeystoreKind.PEM, password=None)


def test_pem_without_key_or_with_two(material: Material) -> None:
    m = material
    with pytest.raises(ConfigurationError, match="no private key"):
        load_keystore(_cert_pem(m.rsa_cert), kind=KeystoreKind.PEM, password=None)
    two = _pem(_key_pem(m.rsa_key), _key_pem(m.ec_key), _cert_pem(m.rsa_cert))
    with pytest.raises(ConfigurationError, match="several private keys"):
        load_keystore(two, kind=KeystoreKind.PEM, password=None)


def test_unsupported_key_type(material: Material) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    cert = _leaf(key.public_key(), material.ca_key, material.ca)
    with pytest.raises(ConfigurationError, match="needs an RSA or EC key"):
        load_keystore(_pem(_key_pem(key), _cert_pem(cert)), kind=KeystoreKind.PEM, password=None)


# --- Corrupt files ------------------------------------------------------------------------


def _outcome(data: bytes, kind: KeystoreKind) -> str:
    """ "loaded", or the ConfigurationError's message; any other exception fails the test."""
    try:
        load_keystore(data, kind=kind, password=PASSWORD)
    except ConfigurationError as exc:
        return str(exc)
    return "loaded"


def test_corrupt_files_raise_configuration_errors_only(material: Material) -> None:
    m = material
    stores = {
        KeystoreKind.PKCS12: _p12(m.rsa_key, m.rsa_cert, [m.ca]),
        KeystoreKind.JKS: _jks(_jks_rsa_entry(m)),
        KeystoreKind.PEM: _pem(_key_pem(m.ec_key, PASSWORD), _cert_pem(m.ec_cert)),
    }
    for kind, data in stores.items():
        with pytest.raises(ConfigurationError):
            load_keystore(data[: len(data) // 2], kind=kind, password=PASSWORD)
        with pytest.raises(ConfigurationError):
            load_keystore(b"\x30\x03\x02\x01\x03", kind=kind, password=PASSWORD)
    # Damage anywhere must end as a ConfigurationError (or, rarely, harmlessly load).
    rng = random.Random(7)
    for kind, data in stores.items():
        for _ in range(40):
            damaged = bytearray(data)
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
            assert PASSWORD not in _outcome(bytes(damaged), kind)
        for cut in (4, 12, 40, len(data) - 20):
            assert PASSWORD not in _outcome(data[:cut], kind)


# --- describe -----------------------------------------------------------------------------


def test_describe_fields(material: Material) -> None:
    m = material
    entry = load_keystore(
        _p12(m.rsa_key, m.rsa_cert, [m.ca]), kind=KeystoreKind.PKCS12, password=PASSWORD
    )
    info = describe(entry, address="MORTGAGES@example.com", now=MIDDLE)
    assert info.alias == "mortgages"
    assert info.subject == "CN=Mortgages Desk"
    assert info.issuer == "CN=Postroom Test CA"
    assert info.serial == "0ABCDEF123"
    assert (info.not_before, info.not_after) == (START, END)
    assert (info.key_type, info.key_size) == ("RSA", 2048)
    assert info.emails == (ADDRESS,)
    assert info.chain_length == 1
    assert info.warnings == ()
    ec_entry = load_keystore(
        _p12(m.ec_key, m.ec_cert, None), kind=KeystoreKind.PKCS12, password=PASSWORD
    )
    ec_info = describe(ec_entry, now=MIDDLE.replace(tzinfo=None))  # naive means UTC
    assert (ec_info.key_type, ec_info.key_size, ec_info.chain_length) == ("EC P-256", 256, 0)


def test_describe_reads_the_subject_email(material: Material) -> None:
    m = material
    subject = _name("Desk", "Desk@Example.com")
    cert = _leaf(
        m.ec_key.public_key(), m.ca_key, m.ca, subject=subject, emails=["desk@example.com"]
    )
    entry = KeyEntry("desk", m.ec_key, cert, ())
    assert describe(entry, now=MIDDLE).emails == ("desk@example.com",)  # once, not twice
    bare = _leaf(m.ec_key.public_key(), m.ca_key, m.ca, subject=subject, emails=())
    info = describe(KeyEntry("desk", m.ec_key, bare, ()), address="desk@example.com", now=MIDDLE)
    assert info.emails == ("Desk@Example.com",)
    assert info.warnings == ()


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (END - timedelta(days=10, hours=1), "expires in 10 days, on 2027-01-01 00:00 UTC"),
        (END - timedelta(days=1, hours=1), "expires in 1 day, on 2027-01-01"),
        (END - timedelta(hours=3), "expires within a day"),
        (END + timedelta(seconds=1), "expired on 2027-01-01 00:00 UTC"),
        (START - timedelta(days=1), "not valid yet: it starts on 2026-01-01 00:00 UTC"),
    ],
)
def test_describe_validity_warnings(material: Material, now: datetime, expected: str) -> None:
    entry = KeyEntry("mortgages", material.rsa_key, material.rsa_cert, ())
    (warning,) = describe(entry, address=ADDRESS, now=now).warnings
    assert expected in warning


def test_describe_warns_about_a_foreign_address(material: Material) -> None:
    entry = KeyEntry("mortgages", material.rsa_key, material.rsa_cert, ())
    assert describe(entry, address="loans@example.com", now=MIDDLE).warnings == (
        "the certificate does not cover loans@example.com: recipients' clients will show a warning",
    )


def test_describe_warns_about_key_usages(material: Material) -> None:
    m = material
    cert = _leaf(
        m.ec_key.public_key(),
        m.ca_key,
        m.ca,
        digital_signature=False,
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    warnings = describe(KeyEntry("web", m.ec_key, cert, ()), now=MIDDLE).warnings
    assert len(warnings) == 2
    assert "digitalSignature" in warnings[0]
    assert "emailProtection" in warnings[1]
