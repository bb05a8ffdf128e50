"""Simulated devices for tests and the demo: a camera playing a person rendered from a real
photo, a ten-print reader serving synthetic prints, an emulated eMRTD chip in vsmartcard's
virtual reader, and a MOSIP SBI device in its own process. Never imported on a real kiosk:
the driver registry (:mod:`devices.drivers`) loads it only for ``simulated`` specs."""
