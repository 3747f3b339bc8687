"""The lab's recording edits: replace values in place, insert missing OIDs in OID order (pure)."""

from __future__ import annotations

from callipso_agent.lab.estate import apply_edits, load_lab_spec

LINES = ["1.3.6.1.2.1.1.1.0|4|x", "1.3.6.1.4.1.5003.9.10.10.2.5.2.0|2|2", "1.3.6.1.4.1.5003.9.10.10.2.5.10.0|2|7",
         "1.3.6.1.4.1.5003.10.1.0|2|1"]


def test_replace_and_insert_in_oid_order() -> None:
    out, n = apply_edits(LINES, {"1.3.6.1.2.1.1.1.0": "4|y"}, {"1.3.6.1.4.1.5003.9.10.10.2.5.4.0": "2|5",
                                                                "1.3.6.1.4.1.5003.9.10.10.2.5.2.0": "2|1"})
    assert n == 3
    assert out[0] == "1.3.6.1.2.1.1.1.0|4|y"
    # .2.5.2 (replaced in place) < .2.5.4 (inserted) < .2.5.10: numeric order, not text order
    assert out[1:4] == ["1.3.6.1.4.1.5003.9.10.10.2.5.2.0|2|1", "1.3.6.1.4.1.5003.9.10.10.2.5.4.0|2|5",
                        "1.3.6.1.4.1.5003.9.10.10.2.5.10.0|2|7"]
    assert out[-1] == "1.3.6.1.4.1.5003.10.1.0|2|1"


def test_set_never_inserts() -> None:
    out, n = apply_edits(LINES, {"1.3.6.1.9.9.0": "2|1"})
    assert out == LINES and n == 0


def test_shipped_lab_spec_is_valid() -> None:
    spec = load_lab_spec()
    assert {"on_battery", "unreachable", "trunk_down", "directory_sync_failed"} <= set(spec.faults)
    assert spec.faults["unreachable"].snmp_fault == "drop"
    assert spec.faults["ssh_host_key_changed"].ssh_fault == "changed_host_key"
