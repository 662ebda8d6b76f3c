"""Transports that deliver outbox messages: a one-method interface, and SMTP."""

from postroom.transports.base import Envelope, Transport, TransportFactory
from postroom.transports.smtp import SmtpTransport, make_transport

__all__ = ["Envelope", "SmtpTransport", "Transport", "TransportFactory", "make_transport"]
