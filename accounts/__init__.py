"""Accounts (tenants), their users and roles, login, and API tokens."""
