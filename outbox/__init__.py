"""The delivery engine webhooks and integrations share: targets with their status
and counters, the outbox of messages, claiming under leases, the drain job, the
retry schedule and the sweeper. It knows the kinds of target only through the
registry that `webhooks/` and `integrations/` fill; it imports neither."""
