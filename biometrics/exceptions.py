"""The biometrics package's one exception root."""

from __future__ import annotations


class BiometricError(ValueError):
    """An image or a template that cannot be used (``FaceError``, ``FingerprintError``,
    ``TemplateFormatError``). A ``ValueError``: the input is at fault, not the machine."""
