"""The ABIS domain's exceptions, under the registry's one root."""

from __future__ import annotations

from central_api.exceptions import InternalError, RegistryError


class AbisError(RegistryError):
    """A request or a record the ABIS cannot serve; answered to MOSIP with a failure reason
    (an answer, never an HTTP error: MOSIP reads returnValue and failureReason)."""


class EngineUnavailable(InternalError):
    """The gallery shards cannot be reached (Ray cluster gone, actor not restarting)."""
