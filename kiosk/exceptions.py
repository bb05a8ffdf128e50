"""The kiosk package's one exception root."""

from __future__ import annotations


class KioskError(Exception):
    """Root of every error the kiosk package raises (configuration, the registry's refusals
    and unauthentic answers, a failed capture step, the outbox)."""
