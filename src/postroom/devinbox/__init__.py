"""The dev inbox: a local SMTP sink for trying Postroom out."""

from postroom.devinbox.server import DevInbox, InboxMessage, read_inbox

__all__ = ["DevInbox", "InboxMessage", "read_inbox"]
