"""ServiceTitan: vehicle positions as GPS pings on the Dispatch map. Its modules:
client (the settings, token cache and pings request) below answers (how an answer
becomes one result per message) below provider (the Provider: form, credential
check, events → pings). Importing the package registers the provider."""

from integrations.servicetitan.provider import ServiceTitan

__all__ = ["ServiceTitan"]
