"""The keystore record: a signing key and its certificate chain, kept encrypted."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

from postroom.keystores.loading import KeyEntry, KeystoreKind, detect_kind, load_keystore
from postroom.validation import check_record_name


class Keystore(BaseModel):
    """A .pfx/.p12, .jks or PEM keystore that accounts name to sign their mail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: KeystoreKind | None = None  # detected from the content when not given
    content: SecretStr  # the file's bytes, base64
    password: SecretStr | None = None
    alias: str | None = None  # the entry to use when the store holds several

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_record_name(v, what="keystore name")

    @model_validator(mode="before")
    @classmethod
    def _pem_text(cls, data: Any) -> Any:
        # `pem: |` in YAML is the same as a file: base64 of its bytes.
        if isinstance(data, dict) and "pem" in data:
            data = dict(data)
            pem = str(data.pop("pem"))
            data["content"] = base64.b64encode(pem.encode()).decode()
            data.setdefault("kind", KeystoreKind.PEM)
        return data

    @model_validator(mode="after")
    def _kind(self) -> Keystore:
        self.data  # noqa: B018 - raises a clear error for content that is not base64
        if self.kind is None:
            object.__setattr__(self, "kind", detect_kind(self.data))
        return self

    @property
    def data(self) -> bytes:
        try:
            return base64.b64decode(self.content.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("keystore content is not base64") from None

    @property
    def fingerprint(self) -> str:
        """Changes whenever the key material, password, kind or alias changes."""
        material = "\x00".join(
            (
                str(self.kind),
                self.content.get_secret_value(),
                self.password.get_secret_value() if self.password else "",
                self.alias or "",
            )
        )
        return hashlib.sha256(material.encode()).hexdigest()

    def entry(self, alias: str | None = None) -> KeyEntry:
        """The signing entry (``alias`` overrides the record's); ConfigurationError if not."""
        assert self.kind is not None
        return load_keystore(
            self.data,
            kind=self.kind,
            password=self.password.get_secret_value() if self.password else None,
            alias=alias or self.alias,
        )
