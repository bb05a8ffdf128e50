"""The ABIS behind MOSIP's published interface (insert, identify, delete, ping, pendingJobs,
referenceCount), over ActiveMQ (STOMP) and HTTP, with its galleries in-process or sharded
across Ray actors. See ``service.py`` for the flow and ``docs/mosip-abis.md`` for the spec."""
