"""Plumbing every layer above stands on: settings, the database base and time, the
Flask extensions, errors, response security, secrets at rest, health, and the
helpers the REST API and the portal views share. It imports nothing of Fleethook's
domain."""
