"""The correspondence record: a named email template or a fragment of one."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from postroom.correspondence.images import check_image, check_images
from postroom.languages import DEFAULT_LANGUAGE, check_language

_CONTENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Translation(BaseModel):
    """A correspondence's subject, HTML and optional text in one more language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str | None = None
    html: str
    text: str | None = None


class InlineImage(BaseModel):
    """An image stored with a correspondence, shown in its HTML as ``<img src="cid:ID">``.

    ``content`` is bytes in Python and base64 in JSON; the type is checked against the
    bytes (a PNG must be a PNG) and the size is bounded, wherever the image comes from.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field("", max_length=64, description="Default: from the bytes")
    content: bytes = Field(description="The image; base64 in JSON")

    @field_validator("content", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                raise ValueError("image content must be base64") from None
        return value

    @field_serializer("content", when_used="json")
    def _encode(self, value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")

    @model_validator(mode="after")
    def _check(self) -> InlineImage:
        checked = check_image(self.content, content_type=self.content_type, filename=self.filename)
        if checked != self.content_type:
            object.__setattr__(self, "content_type", checked)  # frozen: set once, here
        return self


class Correspondence(BaseModel):
    """A template with subject, HTML and optional text; without a subject it is a fragment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    subject: str | None = None
    html: str
    text: str | None = None
    language: str = Field(DEFAULT_LANGUAGE, description="The language of subject, html, text")
    translations: dict[str, Translation] = Field(
        default_factory=dict, description="The texts in other languages, by language tag"
    )
    images: dict[str, InlineImage] = Field(
        default_factory=dict, description="Inline images by content id: <img src='cid:ID'>"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # Spaces are allowed: Pega correspondence names read like titles.
        if not v.strip() or any(ord(c) < 32 for c in v) or len(v) > 255:
            raise ValueError("correspondence name must be 1-255 printable characters")
        return v.strip()

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        return check_language(v, what=None)

    @field_validator("translations")
    @classmethod
    def _translations(
        cls, v: dict[str, Translation], info: ValidationInfo
    ) -> dict[str, Translation]:
        # Checked here, not after the model, so that each error names its translation
        # (translations.de), as the YAML and the API name it. ``language`` and ``subject``
        # are validated before: absent from info.data when they were refused themselves.
        own = info.data.get("language")
        fragment = "subject" in info.data and info.data["subject"] is None
        checked: dict[str, Translation] = {}
        problems: list[tuple[str, str]] = []
        for tag, translation in v.items():
            try:
                language = check_language(tag, what=None)
            except ValueError as exc:
                problems.append((tag, str(exc)))
                continue
            if language in checked:
                problems.append((tag, f"{language} is given twice"))
            elif language == own:
                problems.append(
                    (
                        tag,
                        f"{tag} is the correspondence's own language; its text is subject, "
                        "html and text",
                    )
                )
            elif fragment and translation.subject is not None:
                problems.append(
                    (tag, "a fragment (no subject) has no subject in its translations either")
                )
            elif (
                "subject" in info.data and not fragment and not (translation.subject or "").strip()
            ):
                problems.append((tag, "needs a subject, as the correspondence has"))
            checked[language] = translation
        if problems:
            raise _field_errors(problems, v)
        return checked

    @field_validator("images")
    @classmethod
    def _images(cls, v: dict[str, InlineImage]) -> dict[str, InlineImage]:
        for content_id in v:
            if not _CONTENT_ID.fullmatch(content_id):
                raise ValueError(
                    f"image {content_id[:70]!r}: a content id is 1-64 letters, digits, '.', "
                    "'_' or '-', starting with a letter or digit"
                )
        check_images(v.values())
        return v

    @property
    def is_fragment(self) -> bool:
        return self.subject is None

    @property
    def languages(self) -> list[str]:
        """The languages it is written in: its own first, then its translations."""
        return [self.language, *self.translations]


def _field_errors(problems: list[tuple[str, str]], value: Any) -> ValidationError:
    """Errors at ``translations.<tag>``: raised in a field's validator, pydantic puts the
    field's name before each location."""
    return ValidationError.from_exception_data(
        "Correspondence",
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{message}", {"message": message}),
                loc=(tag,),
                input=value,
            )
            for tag, message in problems
        ],
    )
