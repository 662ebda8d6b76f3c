"""Protection of secrets at rest."""

from postroom.security.secrets import SecretBox, load_secret_box

__all__ = ["SecretBox", "load_secret_box"]
