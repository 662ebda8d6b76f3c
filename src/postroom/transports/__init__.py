"""Transports: how a message leaves (SMTP, Microsoft Graph), behind one interface."""

from postroom.transports.base import Envelope, Sender, Transport, TransportFactory
from postroom.transports.factory import Transports
from postroom.transports.gate import MailboxGates
from postroom.transports.graph import GraphTransport
from postroom.transports.smtp import SmtpTransport

__all__ = [
    "Envelope",
    "GraphTransport",
    "MailboxGates",
    "Sender",
    "SmtpTransport",
    "Transport",
    "TransportFactory",
    "Transports",
]
