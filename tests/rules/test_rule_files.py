"""Rule files: the shipped set is complete and consistent; mistakes are reported with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from callipso_agent.errors import ConfigErrors
from callipso_agent.paths import checks_dir, collectors_dir, runbooks_dir
from callipso_agent.rules.loader import load_rules
from callipso_agent.rules.schema import SiteRule

SHIPPED = load_rules()


def test_every_rule_has_its_runbook() -> None:
    missing = [(r.name, r.runbook) for r in SHIPPED if not (runbooks_dir() / r.runbook).is_file()]
    assert missing == []
    assert len(SHIPPED) == len(load_rules(runbooks=runbooks_dir()))


def test_runbooks_follow_the_plan() -> None:
    for r in SHIPPED:
        text = (runbooks_dir() / r.runbook).read_text(encoding="utf-8")
        headings = [line for line in text.splitlines() if line.startswith("## ")]
        assert headings == [
            "## Symptôme",
            "## Impact et priorité",
            "## Diagnostic",
            "## Résolution",
            "## Escalade",
        ], r.runbook


def test_every_family_has_rules_of_its_own() -> None:
    families = yaml.safe_load((collectors_dir() / "_families.yaml").read_text(encoding="utf-8"))["families"]
    uncovered = [f for f in families if not any(f in r.families for r in SHIPPED)]
    assert uncovered == []
    generic = {r.name for r in SHIPPED if not r.families and not isinstance(r, SiteRule)}
    assert {"device_unreachable", "device_rebooted", "firmware_changed", "device_auth_failed"} <= generic


def test_texts_exist_in_both_languages_and_differ() -> None:
    for r in SHIPPED:
        assert r.text.fr != r.text.en, r.name


def _write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


GOOD = """\
rules:
  - name: ups_on_battery
    kind: threshold
    metric: ups_on_battery
    threshold: {direction: above, critical: 0.5}
    impact: {outage: backup}
    runbook: ups-on-battery.md
    text: {fr: "Onduleur {device}", en: "UPS {device}"}
"""


@pytest.mark.parametrize(
    ("body", "line", "field", "message"),
    [
        (
            GOOD.replace("    metric: ups_on_battery\n", "    metric: ups_on_battery\n    fro: 60s\n"),
            5,
            "rules[0].fro",
            "unknown field",
        ),
        (GOOD.replace("kind: threshold", "kind: thershold"), 2, "rules[0]", "unknown or missing rule kind"),
        (
            GOOD.replace("{direction: above, critical: 0.5}", "{direction: above}"),
            5,
            "rules[0].threshold",
            "warning limit, a critical limit or both",
        ),
        (
            GOOD.replace("critical: 0.5}", "critical: {ref: device.atributes.x}}"),
            5,
            "rules[0].threshold.critical",
            "unknown device field",
        ),
        (
            GOOD.replace("{outage: backup}", "{outage: catastrophe}"),
            6,
            "rules[0].impact.outage",
            "Input should be",
        ),
        (
            GOOD.replace('"Onduleur {device}"', '"Onduleur {devise}"'),
            8,
            "rules[0].text.fr",
            "unknown template field",
        ),
        (
            GOOD.replace("runbook: ups-on-battery.md", "runbook: ../etc/passwd"),
            7,
            "rules[0].runbook",
            "pattern",
        ),
        (
            GOOD.replace("    metric: ups_on_battery\n", "    metric: ups_on_battery\n    for: soon\n"),
            5,
            "rules[0].for",
            "duration",
        ),
        (
            GOOD + "  - name: ups_on_battery\n    kind: absence\n    errors: [timeout]\n"
            "    impact: {outage: partial}\n"
            "    runbook: a.md\n    text: {fr: a, en: b}\n",
            9,
            "rules[1].name",
            "duplicate rule name",
        ),
    ],
)
def test_mistakes_name_file_line_and_field(
    tmp_path: Path, body: str, line: int, field: str, message: str
) -> None:
    folder = _write(tmp_path, "ups.yaml", body)
    with pytest.raises(ConfigErrors) as info:
        load_rules(folder)
    errors = info.value.errors
    assert any(
        e.file == str(folder / "ups.yaml") and e.line == line and e.field == field and message in e.message
        for e in errors
    ), [str(e) for e in errors]


def test_site_rule_children_must_exist_and_correlate(tmp_path: Path) -> None:
    folder = _write(
        tmp_path,
        "site.yaml",
        GOOD
        + """\
  - name: site_unreachable
    kind: site
    children: [ups_on_battery, nothing_here]
    impact: {outage: outage}
    runbook: site-unreachable.md
    text: {fr: "Site {site}", en: "Site {site}"}
""",
    )
    with pytest.raises(ConfigErrors) as info:
        load_rules(folder)
    messages = sorted(e.message for e in info.value.errors)
    assert messages == [
        "child rule 'ups_on_battery' must declare correlate: site",
        "unknown child rule 'nothing_here'",
    ]
    assert all(e.line == 9 for e in info.value.errors)


def test_missing_runbook_is_an_error_when_checked(tmp_path: Path) -> None:
    folder = _write(tmp_path, "ups.yaml", GOOD.replace("ups-on-battery.md", "nowhere.md"))
    assert len(load_rules(folder)) == 1
    with pytest.raises(ConfigErrors, match=r"runbook 'nowhere\.md' not found"):
        load_rules(folder, runbooks=runbooks_dir())


def test_errors_of_several_files_come_together(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", "rules:\n  - name: Bad Name\n")
    _write(tmp_path, "b.yaml", "rules: [\n")
    _write(tmp_path, "c.yaml", "other: 1\n")
    with pytest.raises(ConfigErrors) as info:
        load_rules(tmp_path)
    files = {Path(e.file or "").name for e in info.value.errors}
    assert files == {"a.yaml", "b.yaml", "c.yaml"}


def test_shipped_rules_live_in_checks() -> None:
    assert (checks_dir() / "rules").is_dir()
    assert {Path(f).name for f, _ in (SHIPPED.origin(r.name) for r in SHIPPED)} >= {
        "ups.yaml",
        "devices.yaml",
        "site.yaml",
        "sbc.yaml",
    }
