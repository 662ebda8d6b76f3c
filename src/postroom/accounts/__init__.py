"""Email accounts: sender settings, provider presets, resolution and connectivity."""

from postroom.accounts.advanced import KNOWN_PARAMETERS, SmtpOptions, parse_advanced
from postroom.accounts.models import DEFAULT_ACCOUNT, EmailAccount, Protocol
from postroom.accounts.presets import PRESETS, Provider, Security
from postroom.accounts.resolution import Resolution, candidate_accounts, resolve_account
from postroom.accounts.store import AccountStore

__all__ = [
    "DEFAULT_ACCOUNT",
    "KNOWN_PARAMETERS",
    "PRESETS",
    "AccountStore",
    "EmailAccount",
    "Protocol",
    "Provider",
    "Resolution",
    "Security",
    "SmtpOptions",
    "candidate_accounts",
    "parse_advanced",
    "resolve_account",
]
