"""Operating the registry: health, metrics."""
