"""The providers by key; each lives in its own module behind integrations.base.Provider
and registers itself when `load_providers` imports it."""

from __future__ import annotations

import importlib

from integrations.base import Provider

# In the order the portal lists them.
PROVIDER_MODULES = ("servicemax", "servicetitan", "fleetio", "asana", "agilefleet")

PROVIDERS: dict[str, Provider] = {}


def register(provider: Provider) -> None:
    PROVIDERS[provider.key] = provider


def load_providers() -> None:
    for name in PROVIDER_MODULES:
        importlib.import_module(f"integrations.{name}")
