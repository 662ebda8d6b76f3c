"""The Admin Studio: server-rendered pages over the Postroom services."""

from postroom.web.app import create_studio

__all__ = ["create_studio"]
