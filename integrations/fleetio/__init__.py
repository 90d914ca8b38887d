"""Fleetio: meter entries and faults from odometers and trouble codes. Its
modules: sending (Fleetio's API, as this integration calls it) below provider (the
Provider: its form and which events make which operations). Importing the package
registers the provider."""

from integrations.fleetio.provider import Fleetio

__all__ = ["Fleetio"]
