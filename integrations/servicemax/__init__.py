"""ServiceMax, on Salesforce: technicians' locations follow their vehicles. Its
modules, from the bottom: signin (where an org signs in, the OAuth flow with PKCE),
salesforce (the org's REST API), technicians (which technician each driver is),
provider (the Provider, connecting and revoking) and views (the sign-in pages and
the technician form). Importing the package registers the provider."""

from integrations.servicemax.provider import SERVICEMAX

__all__ = ["SERVICEMAX"]
