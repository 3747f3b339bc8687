"""Benchmark harness: the agent against net-snmp and snmp_exporter on one simulated estate (see bench/README.md)."""
