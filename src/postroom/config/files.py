"""Files an apply file names, read relative to it: key stores, keys, certificates, templates.

``truststore_file: ca.pem``, ``html_file: letter.html``, a keystore's ``file:``, a DKIM
``private_key_file``, a certificate map's ``certificate_file`` and a correspondence's
``images: {logo: logo.png}`` keep long or binary content out of the YAML.
"""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from postroom.correspondence.images import MAX_IMAGE_BYTES, check_image
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


def read_images(entry: dict[str, Any], base: Path, where: str) -> None:
    """A correspondence's ``images: {logo: logo.png}`` (or ``{logo: {file: logo.png,
    filename: Logo.png}}``) become ``{logo: {filename, content_type, content (base64)}}``.

    The type is read from the bytes; the file's extension (or a ``content_type`` given)
    is what the file claims to be, and a file claiming one type and holding another is
    refused, as the API refuses it. An image given as ``{filename, content}`` (base64,
    as the API takes it) is left as it is.
    """
    images = entry.get("images")
    if not isinstance(images, dict):
        return
    read: dict[Any, Any] = {}
    for content_id, given in images.items():
        label = f"{where}: images.{printable(str(content_id))[:70]}"
        value = {"file": given} if isinstance(given, str) else given
        if not isinstance(value, dict) or "file" not in value:
            read[content_id] = value  # given inline, or wrong: the model says what is wrong
            continue
        if "content" in value:
            raise ConfigurationError(f"{label}: give file or content, not both")
        unknown = set(value) - {"file", "filename", "content_type"}
        if unknown:
            raise ConfigurationError(
                f"{label}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                "an image has file, filename and content_type"
            )
        written = str(value["file"])
        content = _image_bytes(base / written, label=label, written=printable(written))
        filename = str(value.get("filename") or Path(written).name)
        claimed = str(value.get("content_type") or "") or _claimed_type(written)
        try:
            content_type = check_image(content, content_type=claimed, filename=filename)
        except ValueError as exc:
            raise ConfigurationError(f"{label}: {printable(written)}: {_reason(exc)}") from None
        read[content_id] = {
            "filename": filename,
            "content_type": content_type,
            "content": base64.b64encode(content).decode("ascii"),
        }
    entry["images"] = read


def _claimed_type(written: str) -> str:
    """The image type a file's extension says (``.jpg`` and ``.jpeg``: image/jpeg), or ""
    when it says none: ``logo.bin`` claims nothing, and its bytes decide."""
    guessed, _ = mimetypes.guess_type(Path(written).name, strict=False)
    return guessed if guessed is not None and guessed.startswith("image/") else ""


def _image_bytes(path: Path, *, label: str, written: str) -> bytes:
    """The file's bytes, refused before reading when it is larger than an image may be."""
    try:
        with path.open("rb") as file:
            content = file.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"{label}: cannot read {written}: {exc.strerror}") from None
    if len(content) > MAX_IMAGE_BYTES:
        raise ConfigurationError(
            f"{label}: {written} is larger than {MAX_IMAGE_BYTES:,} bytes, "
            "the most an inline image may have"
        )
    return content


def _reason(exc: ValueError) -> str:
    """check_image's message without its "image NAME: " prefix (the label names the file)."""
    message = str(exc)
    return message.partition(": ")[2] if message.startswith("image ") else message


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
