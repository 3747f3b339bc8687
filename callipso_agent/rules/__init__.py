"""Rules and thresholds: range syntax, default thresholds."""
