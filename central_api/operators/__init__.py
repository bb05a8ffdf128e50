"""Operators of the central registry's console: accounts, roles and sign-in."""
