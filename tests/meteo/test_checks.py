"""Daily checks: conditions over measurements, grouping, missing data, supersession, the failed-check hook.
Checks and measurements are SYNTHETIC, written here."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from callipso_agent.meteo.checks import FailedCheck, evaluate_check, evaluate_checks, run_daily_checks
from callipso_agent.meteo.spec import CheckSpec
from callipso_agent.model import Severity
from tests.meteo.estate import AT, Scenario, example_config, m, shipped_spec


def check(**kw: Any) -> CheckSpec:
    base: dict[str, Any] = {
        "id": "c",
        "category": "test",
        "title": {"fr": "Contrôle", "en": "Check"},
        "summary": {"fr": "{device} : {value}", "en": "{device}: {value}"},
    }
    return CheckSpec.model_validate({**base, **kw})


def snap(sc: Scenario | None = None) -> Any:
    return (sc or Scenario()).snapshot(example_config())


@pytest.mark.parametrize(
    ("fail_when", "value", "failed"),
    [
        ({"op": "==", "value": 1}, 1, True),
        ({"op": "==", "value": 1}, 0, False),
        ({"op": "!=", "value": 1}, 0, True),
        ({"op": "<", "value": 80}, 79.5, True),
        ({"op": "<", "value": 80}, 80, False),
        ({"op": "<=", "value": 80}, 80, True),
        ({"op": ">", "value": 32}, 32, False),
        ({"op": ">=", "value": 32}, 32, True),
    ],
)
def test_comparisons(fail_when: dict[str, Any], value: float, failed: bool) -> None:
    c = check(devices=[{"name": "ups-istres-mds"}], metric="ups_battery_charge_percent", fail_when=fail_when)
    outcome, failures = evaluate_check(
        c, snap(Scenario(measurements=[m("ups-istres-mds", "ups_battery_charge_percent", value)]))
    )
    assert outcome == ("failed" if failed else "passed")
    assert len(failures) == (1 if failed else 0)


def test_state_condition_reads_the_normalised_severity_and_label() -> None:
    c = check(
        devices=[{"family": ["eaton-ups", "ups-mib"]}],
        metric="ups_self_test_result",
        fail_when={"state": ["warning", "critical"]},
        summary="{device}: {state}",
    )
    sc = Scenario(
        measurements=[m("ups-salon-mds", "ups_self_test_result", 3, state=Severity.CRITICAL, text="error")]
    )
    outcome, [f] = evaluate_check(c, snap(sc))
    assert outcome == "failed"
    assert (f.device, f.site, f.key) == ("ups-salon-mds", "SALON-MDS", "check:c:ups-salon-mds")
    assert f.summary("fr") == "ups-salon-mds: erreur"  # the profile's label, in the operators' language
    assert f.summary("en") == "ups-salon-mds: error"


def test_label_condition_and_the_shipped_self_test_check() -> None:
    """An aborted self-test (severity warning in the UPS-MIB profile) says nothing about the battery."""
    c = shipped_spec().check("ups_self_test")
    aborted = Scenario(
        measurements=[m("ups-salon-mds", "ups_self_test_result", 4, state=Severity.WARNING, text="aborted")]
    )
    assert evaluate_check(c, snap(aborted))[0] == "passed"
    warned = Scenario(
        measurements=[m("ups-salon-mds", "ups_self_test_result", 2, state=Severity.WARNING, text="warning")]
    )
    _, [f] = evaluate_check(c, snap(warned))
    assert f.summary() == "Dernier autotest de l'onduleur ups-salon-mds : avertissement"


def test_a_device_that_stopped_answering_is_judged_on_reachability_not_on_stale_values() -> None:
    stale = Scenario(measurements=[m("ups-salon-mds", "ups_on_battery", 1)], down={"ups-salon-mds"})
    run = evaluate_checks(shipped_spec().checks, snap(stale))
    assert [f.key for f in run.failed] == ["check:remote_device_unreachable:ups-salon-mds"]


def test_older_than_reads_a_unix_time() -> None:
    c = check(
        devices=[{"family": "oxe"}],
        metric="pbx_backup_last_success_timestamp_seconds",
        fail_when={"older_than": 36 * 3600},
    )
    fresh = (AT - timedelta(hours=30)).timestamp()
    stale = (AT - timedelta(hours=40)).timestamp()
    sc = Scenario(
        measurements=[
            m("oxe-hd13", "pbx_backup_last_success_timestamp_seconds", stale),
            m("oxe-arenc", "pbx_backup_last_success_timestamp_seconds", fresh),
        ]
    )
    _, failures = evaluate_check(c, snap(sc))
    assert [f.device for f in failures] == ["oxe-hd13"]


def test_labels_filter_with_patterns() -> None:
    c = check(
        devices=[{"family": "audiocodes-sbc"}],
        metric="sbc_ip_group_up",
        labels={"ip_group": "ITSP-*"},
        fail_when={"op": "==", "value": 0},
        summary="{series}",
    )
    sc = Scenario(
        measurements=[m("sbc-hd13", "sbc_ip_group_up", 0, labels={"ip_group": "OXE-HD13"}, text="down")]
    )
    assert evaluate_check(c, snap(sc))[0] == "passed"  # an OXE link is not a carrier trunk
    sc = Scenario(
        measurements=[m("sbc-hd13", "sbc_ip_group_up", 0, labels={"ip_group": "ITSP-OPERATEUR"}, text="down")]
    )
    _, [f] = evaluate_check(c, snap(sc))
    assert f.summary() == "sbc-hd13 ip_group=ITSP-OPERATEUR = hors ligne"
    assert f.summary("en") == "sbc-hd13 ip_group=ITSP-OPERATEUR = down"


def test_group_all_require_all_fails_only_when_every_series_fails() -> None:
    c = check(
        devices=[{"family": "audiocodes-sbc"}],
        metric="sbc_ip_group_up",
        labels={"ip_group": "ITSP-*"},
        fail_when={"op": "==", "value": 0},
        group_by="all",
        require="all",
        summary="{devices}",
    )
    one = Scenario(measurements=[m("sbc-hd13", "sbc_ip_group_up", 0, labels={"ip_group": "ITSP-OPERATEUR"})])
    assert evaluate_check(c, snap(one))[0] == "passed"
    both = Scenario(
        measurements=[
            m(s, "sbc_ip_group_up", 0, labels={"ip_group": "ITSP-OPERATEUR"})
            for s in ("sbc-hd13", "sbc-arenc")
        ]
    )
    _, [f] = evaluate_check(c, snap(both))
    assert (f.key, f.device, f.site, f.devices) == ("check:c", None, None, ("sbc-arenc", "sbc-hd13"))


def test_group_by_site_with_the_up_pseudo_metric() -> None:
    c = check(
        devices=[{"site_kind": "remote"}],
        metric="up",
        fail_when={"op": "==", "value": 0},
        group_by="site",
        require="all",
        summary="{site_name}",
    )
    half = Scenario(down={"ups-arles-mds", "gw-arles-mds"})
    assert evaluate_check(c, snap(half))[0] == "passed"
    whole = Scenario(down_sites={"ARLES-MDS"})
    _, [f] = evaluate_check(c, snap(whole))
    assert (f.key, f.site, f.summary()) == ("check:c:ARLES-MDS", "ARLES-MDS", "MDS Arles")


def test_ratio_to_a_device_attribute() -> None:
    c = check(
        devices=[{"family": "audiocodes-sbc"}],
        metric="sbc_calls_active",
        ratio_to_attribute="licensed_channels",
        fail_when={"op": ">=", "value": 80},
    )
    sc = Scenario(
        measurements=[m("sbc-hd13", "sbc_calls_active", 360), m("sbc-arenc", "sbc_calls_active", 199)]
    )
    _, failures = evaluate_check(c, snap(sc))
    assert [(f.device, f.summary()) for f in failures] == [
        ("sbc-hd13", "sbc-hd13 : 80")
    ]  # 360/450; 199/250 < 80 %


def test_missing_data_ignored_or_failed() -> None:
    sc = Scenario(drop={("oxe-hd13", "pbx_backup_ok"), ("oxe-arenc", "pbx_backup_ok")})
    ignore = check(devices=[{"family": "oxe"}], metric="pbx_backup_ok", fail_when={"op": "==", "value": 0})
    assert evaluate_check(ignore, snap(sc)) == ("no_data", [])
    strict = check(
        devices=[{"family": "oxe"}],
        metric="pbx_backup_ok",
        fail_when={"op": "==", "value": 0},
        missing="fail",
    )
    outcome, failures = evaluate_check(strict, snap(sc))
    assert outcome == "failed" and sorted(f.device or "" for f in failures) == ["oxe-arenc", "oxe-hd13"]
    assert all(s.missing for f in failures for s in f.series)


def test_never_polled_devices_are_not_down() -> None:
    config = example_config()
    from callipso_agent.meteo.snapshot import build_snapshot

    s = build_snapshot(config, at=AT, up={})  # nothing polled yet
    c = check(devices=[{"site_kind": "remote"}], metric="up", fail_when={"op": "==", "value": 0})
    assert evaluate_check(c, s) == ("no_data", [])


def test_impacts_in_the_incident_engines_words() -> None:
    sc = Scenario(
        measurements=[
            m(s, "sbc_ip_group_up", 0, labels={"ip_group": "ITSP-OPERATEUR"}, text="down")
            for s in ("sbc-hd13", "sbc-arenc")
        ]
    )
    run = evaluate_checks(shipped_spec().checks, snap(sc))
    impacts = {f.check_id: (f.user_impact, f.technical_impact) for f in run.failed}
    assert impacts == {"sip_trunks_all_down": ("outage", "major"), "sip_ip_group_down": ("none", "minor")}


def test_shipped_checks_on_a_quiet_morning_all_pass() -> None:
    run = evaluate_checks(shipped_spec().checks, snap())
    assert run.failed == ()
    assert len(run.passed) == len(shipped_spec().checks) == run.total


async def test_hook_receives_each_failure_and_its_time_and_a_failing_hook_does_not_stop_the_others() -> None:
    sc = Scenario(
        measurements=[m("ups-aubagne-mds", "ups_on_battery", 1), m("ups-berre-mds", "ups_on_battery", 1)]
    )
    calls: list[tuple[str, datetime]] = []

    async def hook(failed: FailedCheck, at: datetime) -> None:
        calls.append((failed.key, at))
        if failed.device == "ups-aubagne-mds":
            raise RuntimeError("incident engine unavailable")

    run = await run_daily_checks(shipped_spec().checks, snap(sc), on_failed_check=hook)
    assert sorted(calls) == [
        ("check:ups_on_battery:ups-aubagne-mds", AT),
        ("check:ups_on_battery:ups-berre-mds", AT),
    ]
    f = next(x for x in run.failed if x.device == "ups-berre-mds")
    assert (f.user_impact, f.technical_impact) == ("none", "minor")  # what the incident engine records
    assert f.services == ("toip",) and f.effect.technical.value == "perturbe"
    assert (
        f.title("en") == "UPS mains supply"
        and f.summary("en") == "UPS ups-berre-mds on battery (MDS Berre-l'Étang)"
    )
