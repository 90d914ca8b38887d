"""Webhooks: the event catalogue, the Webhook target, signing, URL safety, and the
Webhook Manager's portal pages and API."""
