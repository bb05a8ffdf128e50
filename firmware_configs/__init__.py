"""Firmware configuration data (YAML), validated by devices.firmware. No code."""
