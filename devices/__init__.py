"""Device drivers (camera, card reader, fingerprint reader) behind small interfaces."""
