"""The REST API (``/api/v1``): records, cases, emails and operations over HTTP."""

from postroom.api.app import create_api

__all__ = ["create_api"]
