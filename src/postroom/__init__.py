"""Postroom: two-way correspondence for case-management and workflow applications.

Open it on a database, apply records, create cases; a sender agent delivers::

    from postroom import Postroom

    with Postroom.open("sqlite:///postroom.db") as postroom:
        postroom.apply("examples/mortgage.yaml")
        case = postroom.cases.create("MyOrg-Mortgage-Work-MortgageRequest",
                                     data={"amount": 250000}, operator="alice")
"""

from postroom.accounts import DEFAULT_ACCOUNT, EmailAccount, Protocol, Provider, Security
from postroom.agent import AgentConfig, AgentStats, SenderAgent
from postroom.app import Postroom
from postroom.auth import AuthProfile
from postroom.cases import Case, CaseType, SendEmailStep
from postroom.correspondence import Correspondence
from postroom.errors import (
    ConfigurationError,
    CredentialsRejectedError,
    DatabaseFatalError,
    DeliveryError,
    InvalidTextError,
    MessageError,
    NoAccountError,
    NotFoundError,
    OutcomeUnknownError,
    PermanentDeliveryError,
    PostroomError,
    SecretError,
    StateError,
    TemplateError,
    TemplateLimitError,
    TemplateSecurityError,
    ThrottledError,
    TransientDeliveryError,
    UnknownParameterError,
)
from postroom.keystores.models import Keystore
from postroom.operators import Operator
from postroom.outbox import OutboxEntry, OutboxStatus
from postroom.settings import Settings
from postroom.transports import Envelope, Sender, Transport

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ACCOUNT",
    "AgentConfig",
    "AgentStats",
    "AuthProfile",
    "Case",
    "CaseType",
    "ConfigurationError",
    "Correspondence",
    "CredentialsRejectedError",
    "DatabaseFatalError",
    "DeliveryError",
    "EmailAccount",
    "Envelope",
    "InvalidTextError",
    "Keystore",
    "MessageError",
    "NoAccountError",
    "NotFoundError",
    "Operator",
    "OutboxEntry",
    "OutboxStatus",
    "OutcomeUnknownError",
    "PermanentDeliveryError",
    "Postroom",
    "PostroomError",
    "Protocol",
    "Provider",
    "SecretError",
    "Security",
    "SendEmailStep",
    "Sender",
    "SenderAgent",
    "Settings",
    "StateError",
    "TemplateError",
    "TemplateLimitError",
    "TemplateSecurityError",
    "ThrottledError",
    "TransientDeliveryError",
    "Transport",
    "UnknownParameterError",
    "__version__",
]
