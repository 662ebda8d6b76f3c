"""Correspondence: templates, sandboxed rendering and MIME building."""

from postroom.correspondence.mime import Attachment, Mailbox, OutgoingEmail, build_message
from postroom.correspondence.models import Correspondence
from postroom.correspondence.render import Rendered, Renderer
from postroom.correspondence.store import CorrespondenceStore, RendererCache

__all__ = [
    "Attachment",
    "Correspondence",
    "CorrespondenceStore",
    "Mailbox",
    "OutgoingEmail",
    "Rendered",
    "Renderer",
    "RendererCache",
    "build_message",
]
