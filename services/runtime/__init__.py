"""Plumbing the three services share; no business rule lives here."""
