"""Asana: a vehicle attribute in a custom field of each vehicle's task, and a task
for every DVIR with defects. Its modules: answers (how Asana's answers are read)
and dvir (the task a DVIR opens) below provider (the Provider: form, credential
check, events → messages, the calls). Importing the package registers it."""

from integrations.asana.provider import PROVIDER

__all__ = ["PROVIDER"]
