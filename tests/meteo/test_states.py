"""Table tests of the météo's state computation on the example estate with SYNTHETIC scenarios
(statuses, measurements and incidents made up in tests/meteo/estate.py)."""

from __future__ import annotations

import pytest

from callipso_agent.meteo.builder import incident_number
from callipso_agent.model import IncidentState, Severity
from tests.meteo.estate import Scenario, incident, m, meteo_for, states

NOMINAL = ("nominal", "ras")
LINES = [
    "toip",
    "isicom",
    "visio",
    "sms-link",
    "sms-cycos",
    "annuaire",
    "guides-vocaux",
    "toip-vip",
    "HD13",
    "ARENC",
    "ST-SEBASTIEN",
    "remote",
]

# Each row: scenario id, the scenario, the lines that are NOT nominal with their (user, technical) states.
# Every line not listed must be nominal / RAS.
TABLE = [
    ("all-nominal", Scenario(), {}),
    (
        "remote-site-on-battery",
        Scenario(
            measurements=[
                m("ups-aubagne-mds", "ups_on_battery", 1),
                m("ups-aubagne-mds", "ups_battery_charge_percent", 62),
            ]
        ),
        {"remote": ("nominal", "perturbe")},
    ),
    (
        "sbc-alarm-check-only",
        Scenario(measurements=[m("sbc-hd13", "sbc_alarms_active", 2, labels={"severity": "major"})]),
        {"toip": ("nominal", "perturbe"), "HD13": ("nominal", "perturbe")},
    ),
    (
        "sbc-alarm-incident-degraded",
        Scenario(
            incidents=[
                incident(
                    41,
                    "sbc_alarm:sbc-hd13",
                    "Alarme majeure SBC sbc-hd13",
                    services=["toip", "sms-link"],
                    site="HD13",
                    device="sbc-hd13",
                    user_impact="degraded",
                    technical_impact="minor",
                )
            ]
        ),
        {
            "toip": ("perturbations", "perturbe"),
            "sms-link": ("perturbations", "perturbe"),
            "HD13": ("perturbations", "perturbe"),
        },
    ),
    (
        "sbc-alarm-incident-outage",
        Scenario(
            incidents=[
                incident(
                    42,
                    "sbc_alarm:sbc-hd13",
                    "SBC sbc-hd13 hors service, appels externes impossibles",
                    services=["toip"],
                    site="HD13",
                    device="sbc-hd13",
                    user_impact="outage",
                    technical_impact="major",
                )
            ]
        ),
        {"toip": ("inaccessible", "inaccessible"), "HD13": ("inaccessible", "inaccessible")},
    ),
    (
        "oxe-switchover-to-standby",
        Scenario(
            measurements=[
                m("oxe-hd13", "pbx_cpu_role", 0, text="standby"),
                m("oxe-arenc", "pbx_cpu_role", 1, text="main"),
            ]
        ),
        {
            "toip": ("nominal", "perturbe"),
            "toip-vip": ("nominal", "perturbe"),
            "HD13": ("nominal", "perturbe"),
        },
    ),
    (
        "oxe-twin-not-synchronised",
        Scenario(measurements=[m("oxe-hd13", "pbx_twin_switchover", 2, text="not_synchronised")]),
        {"toip": ("nominal", "perturbe"), "HD13": ("nominal", "perturbe")},
    ),
    (
        "one-oxe-down",
        Scenario(down={"oxe-arenc"}),
        {
            "toip": ("nominal", "perturbe"),
            "isicom": ("nominal", "perturbe"),
            "guides-vocaux": ("nominal", "perturbe"),
            "toip-vip": ("nominal", "perturbe"),
            "ARENC": ("nominal", "perturbe"),
        },
    ),
    (
        "both-oxe-down",
        Scenario(down={"oxe-hd13", "oxe-arenc"}),
        {
            "toip": ("inaccessible", "inaccessible"),
            "isicom": ("inaccessible", "inaccessible"),
            "guides-vocaux": ("inaccessible", "inaccessible"),
            "toip-vip": ("inaccessible", "inaccessible"),
            "HD13": ("nominal", "perturbe"),
            "ARENC": ("nominal", "perturbe"),
        },
    ),
    (
        "directory-sync-failed",
        Scenario(
            measurements=[m("ov8770-hd13", "ov_directory_sync_ok", 0, state=Severity.CRITICAL, text="failed")]
        ),
        {"annuaire": ("nominal", "perturbe"), "HD13": ("nominal", "perturbe")},
    ),
    (
        "directory-sync-anomalies",
        Scenario(measurements=[m("ov8770-hd13", "ov_directory_sync_anomalies", 3)]),
        {"annuaire": ("nominal", "perturbe"), "HD13": ("nominal", "perturbe")},
    ),
    (
        "directory-sync-stale",
        Scenario(
            measurements=[m("ov8770-hd13", "ov_directory_sync_last_timestamp_seconds", 1795000000.0)]
        ),  # 2026-11-18, six days before the météo
        {"annuaire": ("nominal", "perturbe"), "HD13": ("nominal", "perturbe")},
    ),
    (
        "oxe-backup-failed",
        Scenario(measurements=[m("oxe-hd13", "pbx_backup_ok", 0, state=Severity.CRITICAL, text="failed")]),
        {"toip": ("nominal", "perturbe"), "HD13": ("nominal", "perturbe")},
    ),
    (
        "every-carrier-trunk-down",
        Scenario(
            measurements=[
                m(s, "sbc_ip_group_up", 0, labels={"ip_group": "ITSP-OPERATEUR"}, text="down")
                for s in ("sbc-hd13", "sbc-arenc")
            ]
        ),
        {
            "toip": ("inaccessible", "inaccessible"),
            "isicom": ("inaccessible", "inaccessible"),
            "HD13": ("inaccessible", "inaccessible"),
            "ARENC": ("inaccessible", "inaccessible"),
        },
    ),
    (
        "sip-channels-near-capacity",
        Scenario(measurements=[m("sbc-arenc", "sbc_calls_active", 230)]),  # 230 of 250 licensed channels
        {"toip": ("nominal", "perturbe"), "ARENC": ("nominal", "perturbe")},
    ),
    (
        "remote-site-unreachable",
        Scenario(down_sites={"GARDANNE-MDS"}),
        {"remote": ("perturbations", "perturbe")},
    ),
    (
        "isicom-site-unreachable",
        Scenario(down_sites={"ISICOM-CC"}),
        {"isicom": ("inaccessible", "inaccessible"), "remote": ("perturbations", "perturbe")},
    ),
    (
        "remote-incident-outage-is-capped",
        Scenario(
            incidents=[
                incident(
                    7,
                    "site_down:MIRAMAS-MDS",
                    "Site MDS Miramas isolé",
                    services=["toip"],
                    site="MIRAMAS-MDS",
                    user_impact="outage",
                    technical_impact="major",
                )
            ]
        ),
        {"remote": ("perturbations", "perturbe")},
    ),
    (
        "data-centre-ups-on-battery",
        Scenario(measurements=[m("ups-arenc", "ups_on_battery", 1)]),
        {"ARENC": ("nominal", "perturbe")},
    ),
    (
        "room-too-hot",
        Scenario(measurements=[m("probe-hd13", "sensor_temperature_celsius", 35.5)]),
        {"HD13": ("nominal", "perturbe")},
    ),
    (
        "resolved-incidents-do-not-count",
        Scenario(
            incidents=[
                incident(
                    9,
                    "x",
                    "Ancien incident",
                    services=["toip"],
                    site="HD13",
                    user_impact="outage",
                    technical_impact="major",
                    state=IncidentState.RESOLVED,
                )
            ]
        ),
        {},
    ),
    (
        "otms-down",
        Scenario(down={"otms-hd13"}),
        {
            "visio": ("inaccessible", "inaccessible"),
            "sms-cycos": ("inaccessible", "inaccessible"),
            "HD13": ("nominal", "perturbe"),
        },
    ),
]


@pytest.mark.parametrize(
    ("scenario", "expected"), [(s, e) for _, s, e in TABLE], ids=[i for i, _, _ in TABLE]
)
def test_state_table(scenario: Scenario, expected: dict[str, tuple[str, str]]) -> None:
    meteo, _ = meteo_for(scenario)
    got = states(meteo)
    assert list(got) == LINES
    want = {key: expected.get(key, NOMINAL) for key in LINES}
    assert got == want
    for line in meteo.lines:
        # every non-nominal line says why; a nominal one has nothing to say
        assert bool(line.findings) == (not line.nominal), line.key


def test_nominal_morning_has_no_failed_check_and_counts_every_remote_site() -> None:
    meteo, run = meteo_for(Scenario())
    assert run.failed == ()
    assert "oxe_backup" in run.passed and "ups_on_battery" in run.passed
    remote = meteo.sites[-1]
    assert remote.total_sites == 20
    assert [(c.category, c.count) for c in remote.counts] == [
        ("nominal", 20),
        ("unreachable", 0),
        ("on_ups", 0),
        ("degraded", 0),
    ]


def test_remote_site_on_battery_is_counted_on_ups_and_named() -> None:
    meteo, _ = meteo_for(
        Scenario(
            measurements=[
                m("ups-aubagne-mds", "ups_on_battery", 1),
                m("ups-aubagne-mds", "ups_battery_charge_percent", 62),
            ]
        )
    )
    remote = meteo.sites[-1]
    assert {c.category: c.count for c in remote.counts} == {
        "nominal": 19,
        "unreachable": 0,
        "on_ups": 1,
        "degraded": 0,
    }
    [row] = remote.remote_rows
    assert (row.code, row.category) == ("AUBAGNE-MDS", "on_ups")
    # the falling charge is part of being on battery: one finding, not two
    assert [f.summary for f in row.findings] == ["Onduleur ups-aubagne-mds sur batterie (MDS Aubagne)"]


def test_unreachable_remote_site_is_one_finding_not_one_per_device() -> None:
    meteo, run = meteo_for(Scenario(down_sites={"GARDANNE-MDS"}))
    remote = meteo.sites[-1]
    [row] = remote.remote_rows
    assert row.category == "unreachable"
    assert len(row.findings) == 1 and "MDS Gardanne injoignable" in row.findings[0].summary
    assert "remote_device_unreachable" in run.covered
    assert (meteo.checks.failed_checks, meteo.checks.covered) == (1, 1)  # its devices one by one: superseded


def test_every_remote_site_unreachable_is_a_total_outage() -> None:
    config_sites = {
        f"{s}"
        for s in (
            "AIX-MDS",
            "AIX-CG",
            "ARLES-MDS",
            "AUBAGNE-MDS",
            "ISTRES-MDS",
            "MARTIGUES-MDS",
            "SALON-MDS",
            "LACIOTAT-MDS",
            "MARIGNANE-MDS",
            "VITROLLES-MDS",
            "GARDANNE-MDS",
            "TARASCON-MDS",
            "MIRAMAS-MDS",
            "PORTDEBOUC-MDS",
            "CHATEAURENARD-MDS",
            "BERRE-MDS",
            "SDIS-CTA",
            "ARCHIVES",
            "ROUTES-CENTRE",
            "ISICOM-CC",
        )
    }
    meteo, _ = meteo_for(Scenario(down_sites=config_sites))
    remote = meteo.sites[-1]
    assert (remote.user.value, remote.technical.value) == ("inaccessible", "inaccessible")
    assert {c.category: c.count for c in remote.counts}["unreachable"] == 20


def test_incident_numbers_ticket_first_else_internal_id() -> None:
    with_ticket = incident(123, "a", "t", itsm_ref="INC0042137")
    without = incident(123, "b", "t")
    assert incident_number(with_ticket) == "INC0042137"
    assert incident_number(without) == "CAL-000123"
    assert incident_number(without, "CD13") == "CD13-000123"


def test_failed_check_and_its_incident_are_one_finding_with_the_number() -> None:
    # the incident engine opened the incident for the failed check under the check's problem key
    sc = Scenario(
        measurements=[m("ov8770-hd13", "ov_directory_sync_ok", 0, state=Severity.CRITICAL, text="failed")],
        incidents=[
            incident(
                77,
                "check:directory_sync:ov8770-hd13",
                "Synchronisation annuaire en échec",
                services=["annuaire"],
                site="HD13",
                device="ov8770-hd13",
            )
        ],
    )
    meteo, _ = meteo_for(sc)
    annuaire = next(line for line in meteo.services if line.key == "annuaire")
    [finding] = annuaire.findings
    assert finding.refs == ("CAL-000077",)
    assert finding.summary == "Synchronisation annuaire en échec"  # the ticket's title
    assert (finding.user.value, finding.technical.value) == ("nominal", "perturbe")
    assert meteo.checks.failed[0].refs == ("CAL-000077",)


@pytest.mark.parametrize(
    ("incident_kw", "merged"),
    [
        ({"key": "ups_on_battery:ups-aubagne-mds", "device": "ups-aubagne-mds"}, True),  # rule from the key
        ({"key": "x-17", "rule": "ups_on_battery", "device": "ups-aubagne-mds"}, True),  # explicit rule
        ({"key": "ups_on_battery:ups-berre-mds", "device": "ups-berre-mds"}, False),  # another UPS
        ({"key": "ups_low_battery:ups-aubagne-mds", "device": "ups-aubagne-mds"}, False),  # another rule
    ],
)
def test_an_incident_of_the_checks_rule_on_the_same_device_is_its_incident(
    incident_kw: dict[str, str], merged: bool
) -> None:
    inc = incident(
        31,
        incident_kw["key"],
        "Onduleur d'Aubagne sur batterie depuis 06:12",
        site="AUBAGNE-MDS",
        device=incident_kw["device"],
        rule=incident_kw.get("rule"),
        itsm_ref="INC0031000",
    )
    meteo, _ = meteo_for(Scenario(measurements=[m("ups-aubagne-mds", "ups_on_battery", 1)], incidents=[inc]))
    aubagne = next(r for r in meteo.sites[-1].remote_rows if r.code == "AUBAGNE-MDS")
    summaries = [f.summary for f in aubagne.findings]
    if merged:
        assert summaries == ["Onduleur d'Aubagne sur batterie depuis 06:12"]
        assert aubagne.findings[0].refs == ("INC0031000",)
        assert meteo.checks.failed[0].refs == ("INC0031000",)
    else:
        assert "Onduleur ups-aubagne-mds sur batterie (MDS Aubagne)" in summaries
        assert meteo.checks.failed[0].refs == ()


def test_user_impact_lifts_the_technical_state() -> None:
    # an outage the engine classed "minor" technically is still at least as bad technically as for users
    sc = Scenario(
        incidents=[
            incident(
                5,
                "k",
                "Messagerie vocale indisponible",
                services=["toip"],
                site="HD13",
                user_impact="outage",
                technical_impact="minor",
            )
        ]
    )
    meteo, _ = meteo_for(sc)
    assert states(meteo)["toip"] == ("inaccessible", "inaccessible")


def test_findings_are_sorted_worst_first() -> None:
    sc = Scenario(
        measurements=[m("oxe-hd13", "pbx_backup_ok", 0, text="failed")],
        incidents=[
            incident(
                8,
                "k8",
                "Appels entrants impossibles",
                services=["toip"],
                site="HD13",
                user_impact="outage",
                technical_impact="major",
                itsm_ref="INC0000008",
            )
        ],
    )
    meteo, _ = meteo_for(sc)
    toip = meteo.services[0]
    assert [f.refs for f in toip.findings] == [("INC0000008",), ()]


def test_english_labels_come_from_the_checklist_and_catalogue() -> None:
    meteo, _ = meteo_for(Scenario(down_sites={"GARDANNE-MDS"}), lang="en")
    remote = meteo.sites[-1]
    assert remote.label == "REMOTE SITES"
    assert [c.label for c in remote.counts] == ["Nominal", "Unreachable", "On UPS", "Degraded"]
    assert "Site MDS Gardanne unreachable" in remote.remote_rows[0].findings[0].summary
