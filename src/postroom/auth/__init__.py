"""OAuth 2.0 authentication profiles and the access tokens they obtain."""

from postroom.auth.endpoints import MICROSOFT_HOSTS, check_endpoint
from postroom.auth.explain import TokenProblem, explain_token_error
from postroom.auth.models import GRAPH_SCOPE, OUTLOOK_SMTP_SCOPE, AuthProfile, GrantType
from postroom.auth.store import AuthProfileStore
from postroom.auth.tokens import AccessToken, TokenCache, decode_claims

__all__ = [
    "GRAPH_SCOPE",
    "MICROSOFT_HOSTS",
    "OUTLOOK_SMTP_SCOPE",
    "AccessToken",
    "AuthProfile",
    "AuthProfileStore",
    "GrantType",
    "TokenCache",
    "TokenProblem",
    "check_endpoint",
    "decode_claims",
    "explain_token_error",
]
