"""The major-incident report (Markdown and HTML, French and English) and the ``incident`` CLI."""

from __future__ import annotations

import argparse
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from callipso_agent.incidents.cli import register, run
from callipso_agent.incidents.report import render_report
from callipso_agent.store import Store
from tests.incidents.harness import Scenario


async def _site_outage(sc: Scenario) -> int:
    for _ in range(4):
        for d in ("ups-aubagne", "probe-aubagne", "gw-aubagne"):
            await sc.fail(d)
        await sc.step(60)
    (view,) = await sc.engine.open_incidents(site="AUBAGNE")
    await sc.engine.acknowledge(view.id, "noc-jdupont")
    await sc.engine.add_timeline(
        view.id,
        "notification",
        "SMS à l'astreinte réseau",
        {"channel": "sms"},
        text_en="SMS to the network on-call",
        actor="outbox",
    )
    await sc.engine.add_timeline(
        view.id, "escalation", "Escalade opérateur : ticket 8812 | urgent", actor="noc-jdupont"
    )
    await sc.engine.add_note(view.id, "noc-jdupont", "Pelleteuse sur la fibre <rue Victor Hugo>")
    return view.id


async def test_markdown_report_in_french(store: Store) -> None:
    sc = await Scenario(store).start()
    incident = await _site_outage(sc)
    detail = await sc.engine.get(incident)
    assert detail is not None
    text = render_report(detail, fmt="md", lang="fr", now=sc.now)
    assert text.startswith(f"# Rapport d'incident majeur n° {incident}\n")
    for heading in (
        "## Synthèse",
        "### Justification de la priorité",
        "## Engagements contractuels (SLA)",
        "## Chronologie",
        "## Actions menées",
        "## Échanges et informations",
        "## Escalades",
        "## Alarmes rattachées",
        "### Cause racine",
        "### Plan d'actions correctives",
        "### Retour d'expérience",
    ):
        assert f"\n{heading}\n" in text, heading
    chronology = text.split("## Chronologie")[1].split("## Actions menées")[0]
    rows = [line for line in chronology.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(detail.timeline)  # every timeline entry, in order
    assert "Escalade opérateur : ticket 8812 \\| urgent" in chronology  # table cells are escaped
    assert (
        "| Prise en charge | " in text and "dépassée" not in text.split("## Chronologie")[0].split("SLA")[0]
    )
    plan = text.split("### Plan d'actions correctives")[1].split("###")[0]
    assert [line for line in plan.splitlines() if line.startswith("| ") and line[2].isdigit()] == [
        "| 1 |  |  |  |  |",
        "| 2 |  |  |  |  |",
        "| 3 |  |  |  |  |",
    ]
    assert text.count("device_unreachable") == 0 and "Équipement gw-aubagne injoignable" in text
    for line in detail.explanation:
        assert f"- {line}" in text
    escalations = text.split("## Escalades")[1].split("## Alarmes rattachées")[0]
    assert "Escalade opérateur" in escalations and "SMS" not in escalations


async def test_html_report_in_english_is_escaped(store: Store) -> None:
    sc = await Scenario(store).start()
    incident = await _site_outage(sc)
    detail = await sc.engine.get(incident)
    assert detail is not None
    html = render_report(detail, fmt="html", lang="en", now=sc.now)

    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.headings: list[str] = []
            self.tags: list[str] = []
            self._in: str | None = None

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(tag)
            self._in = tag if tag in ("h1", "h2", "h3") else None

        def handle_data(self, data: str) -> None:
            if self._in:
                self.headings.append(data.strip())
                self._in = None

    parser = Collect()
    parser.feed(html)
    assert parser.headings[0] == f"Major incident report #{incident}"
    assert {
        "Chronology",
        "Actions taken",
        "Exchanges and information",
        "Escalations",
        "Attached alarms",
        "Corrective action plan",
        "Root cause",
    } <= set(parser.headings)
    assert "&lt;rue Victor Hugo&gt;" in html and "<rue" not in html
    assert "SMS to the network on-call" in html and "Taken in charge by noc-jdupont" in html
    assert parser.tags.count("script") == 0


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="callipso-agent")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


async def test_cli_lists_and_reports(
    store: Store, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = await Scenario(store).start()
    incident = await _site_outage(sc)
    await sc.ups("ups-aix", True, 90)
    nowhere = str(tmp_path / "no-config")
    capsys.readouterr()
    assert await run(_args("incident", "--config", nowhere, "--store", store_url, "history")) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == [str(incident), "5"]
    assert "P2  acknowledged" in out[0] and "AUBAGNE" in out[0] and "Onduleur ups-aix" in out[1]
    assert (
        await run(
            _args(
                "incident", "--config", nowhere, "--store", store_url, "history", "--json", "--site", "AUBAGNE"
            )
        )
        == 0
    )
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["id"] == incident and json.loads(line)["state"] == "acknowledged"
    target = tmp_path / "report.html"
    assert (
        await run(
            _args(
                "incident",
                "--config",
                nowhere,
                "--store",
                store_url,
                "report",
                str(incident),
                "--format",
                "html",
                "--lang",
                "en",
                "-o",
                str(target),
            )
        )
        == 0
    )
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert await run(_args("incident", "--config", nowhere, "--store", store_url, "report", "999")) == 1
    assert "no incident 999" in capsys.readouterr().err


async def test_cli_takes_the_store_from_the_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "agent.yaml").write_text("agent:\n  state_dir: state\n  language: en\n", encoding="utf-8")
    (tmp_path / "state").mkdir()
    from callipso_agent.store.db import sqlite_url

    store = Store(sqlite_url(tmp_path / "state" / "callipso.sqlite"))
    await store.migrate()
    try:
        sc = await Scenario(store).start()
        await sc.ups("ups-aubagne", True, 90)
    finally:
        await store.close()
    capsys.readouterr()
    assert await run(_args("incident", "--config", str(tmp_path), "report", "1")) == 0
    assert capsys.readouterr().out.startswith("# Major incident report #1")
    (tmp_path / "agent.yaml").write_text("agent:\n  languag: en\n", encoding="utf-8")
    assert await run(_args("incident", "--config", str(tmp_path), "history")) == 2
    assert "agent.languag" in capsys.readouterr().err
