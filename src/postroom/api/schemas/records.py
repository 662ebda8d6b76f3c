"""Records that hold secrets, as the API reads and shows them (see :mod:`postroom.catalog`)."""

from __future__ import annotations

from postroom.catalog.views import (
    AccountIn,
    AccountView,
    AuthProfileIn,
    AuthProfileView,
    CertificateView,
    DkimIn,
    DkimView,
    KeystoreIn,
    KeystoreView,
)

__all__ = [
    "AccountIn",
    "AccountView",
    "AuthProfileIn",
    "AuthProfileView",
    "CertificateView",
    "DkimIn",
    "DkimView",
    "KeystoreIn",
    "KeystoreView",
]
