"""Incident policy: the contract's priority matrix, business-hours calendar and SLA clocks."""
