"""The providers by key; each lives in its own module behind integrations.base.Provider."""

from __future__ import annotations

from integrations.base import Provider

PROVIDERS: dict[str, Provider] = {}


def register(provider: Provider) -> None:
    PROVIDERS[provider.key] = provider
