"""Files an apply file names, read relative to it: key stores, keys, certificates, templates.

``truststore_file: ca.pem``, ``html_file: letter.html``, a keystore's ``file:``, a DKIM
``private_key_file`` and a certificate map's ``certificate_file`` keep long or binary
content out of the YAML.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from postroom.errors import ConfigurationError
from postroom.text import check_tree, decode_utf8, printable


def read_file_field(entry: dict[str, Any], key: str, base: Path, where: str) -> None:
    """``KEY_file: path`` becomes ``KEY: the file's text``."""
    file_key = f"{key}_file"
    if file_key not in entry:
        return
    if key in entry:
        raise ConfigurationError(f"{where}: give {key} or {file_key}, not both")
    path = base / str(entry.pop(file_key))
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{where}: cannot read {path}: {exc.strerror}") from None
    source = f"{where}: {printable(str(path))}"
    entry[key] = check_tree(decode_utf8(content, source=source), field=source)


def read_keystore_file(entry: dict[str, Any], base: Path, where: str) -> None:
    """``file: signing.pfx`` (binary) becomes the base64 ``content``."""
    if "file" not in entry:
        return
    path = base / str(entry.pop("file"))
    try:
        entry["content"] = base64.b64encode(path.read_bytes()).decode()
    except OSError as exc:
        raise ConfigurationError(f"{where}: cannot read {path}: {exc.strerror}") from None


def read_dkim_key(entry: dict[str, Any], base: Path, where: str) -> None:
    dkim = entry.get("dkim")
    if isinstance(dkim, dict) and "private_key_file" in dkim:
        dkim = dict(dkim)
        read_file_field(dkim, "private_key", base, f"{where}: dkim")
        entry["dkim"] = dkim


def read_inbound_files(entry: dict[str, Any], base: Path, where: str) -> None:
    """The inbound section's ``truststore_file`` becomes its ``truststore``."""
    inbound = entry.get("inbound")
    if isinstance(inbound, dict) and "truststore_file" in inbound:
        inbound = dict(inbound)
        read_file_field(inbound, "truststore", base, f"{where}: inbound")
        entry["inbound"] = inbound


def read_certificate_files(entry: dict[str, Any], base: Path, where: str) -> None:
    """Each certificate map row's ``certificate_file`` (PEM or DER) becomes PEM text."""
    encryption = entry.get("encryption")
    if not isinstance(encryption, dict) or not isinstance(encryption.get("certificates"), list):
        return
    rows = []
    for i, row in enumerate(encryption["certificates"]):
        if isinstance(row, dict) and "certificate_file" in row:
            label = f"{where}: encryption.certificates[{i}]"
            if "certificate" in row:
                raise ConfigurationError(f"{label}: give certificate or certificate_file, not both")
            path = base / str(row["certificate_file"])
            rows.append({**_without(row, "certificate_file"), "certificate": _pem(path, label)})
        else:
            rows.append(row)
    entry["encryption"] = {**encryption, "certificates": rows}


def _without(row: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != key}


def _pem(path: Path, where: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{where}: cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN" in data:
        return data.decode("ascii", "replace")
    try:
        certificate = x509.load_der_x509_certificate(data)
    except ValueError:
        raise ConfigurationError(f"{where}: {path} is not a PEM or DER certificate") from None
    return certificate.public_bytes(serialization.Encoding.PEM).decode()
