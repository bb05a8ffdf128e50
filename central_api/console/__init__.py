"""The operators' web console: adjudication, look-ups, kiosks and operators, reports."""
