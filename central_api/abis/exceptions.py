"""The ABIS domain's exception root."""

from __future__ import annotations

from central_api.exceptions import InternalError


class AbisError(Exception):
    """A request or a record the ABIS cannot serve; answered to MOSIP with a failure reason."""


class EngineUnavailable(InternalError):
    """The gallery shards cannot be reached (Ray cluster gone, actor not restarting)."""
