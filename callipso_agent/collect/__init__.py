"""Collection: one coordinator per device, with explicit backoff, feeding the latest-value cache."""
