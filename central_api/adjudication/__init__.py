"""Adjudication: the cases the automatic deduplication could not decide, decided by people."""
