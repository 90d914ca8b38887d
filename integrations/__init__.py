"""Third-party integrations (ServiceMax, ServiceTitan, Fleetio, Asana, Agile Fleet):
the Integration target, one client module per provider, portal pages and API."""
