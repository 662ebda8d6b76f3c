"""Signing outgoing messages: S/MIME signatures and DKIM."""

from postroom.signing.dkim import sign_dkim
from postroom.signing.smime import sign_smime

__all__ = ["sign_dkim", "sign_smime"]
