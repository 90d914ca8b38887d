"""The Webhook Manager: the page above both kinds of target — the event types and
providers one can add, and a grid of each kind — and the pause, resume and delete
every kind shares. The layer above webhooks/ and integrations/: it imports both,
and neither imports it."""
