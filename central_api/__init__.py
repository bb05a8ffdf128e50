"""Central registry: enrolment intake, 1:N deduplication and IDCS issuance.

Importing this package is cheap and side-effect free, so that the kiosk can import the wire
contract (``central_api.enrolment.schemas``) without pulling in the server.
"""
