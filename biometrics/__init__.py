"""Pure biometric algorithms over numpy arrays (no I/O, no project imports)."""
