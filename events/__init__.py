"""Events: the catalogue of the 14 event types, the event as detection hands it to
the outbox, and the one builder of event bodies. Below the fleet that produces
events and the webhooks and integrations that consume them."""
