"""The météo as HTML (Outlook-friendly, accessible) and plain text, and the HTML as Chromium draws it.
The morning shown is SYNTHETIC (tests/meteo/estate.py)."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from callipso_agent.meteo.builder import Meteo, diff_meteo, meteo_to_dict
from callipso_agent.meteo.changes import PlannedChange, select_changes
from callipso_agent.meteo.render import PALETTE, MeteoRenderer, subject
from tests.helpers.system import require_binary
from tests.meteo.estate import DAY, Scenario, incident, m, meteo_for
from tests.meteo.png import read_png

PARIS = ZoneInfo("Europe/Paris")
SERVICE_LABELS = [
    "INFRASTRUCTURE TOIP CALLIPSO",
    "CENTRE D'APPEL ISI-COM",
    "VISIO",
    "SMS LINK MOBILITY",
    "SMS MAIL CYCOS",
    "ANNUAIRE",
    "GUIDES VOCAUX DE FERMETURE (CDS/APA/MDPH)",
    "TOIP VIP/VVIP",
]


def busy_morning(lang: str = "fr") -> Meteo:
    """A morning with something on most lines, planned changes, and yesterday to compare with."""
    sc = Scenario(
        measurements=[
            m("ups-aubagne-mds", "ups_on_battery", 1),
            m("ov8770-hd13", "ov_directory_sync_ok", 0, text="failed"),
            m("oxe-hd13", "pbx_backup_ok", 0, text="failed"),
        ],
        down_sites={"GARDANNE-MDS"},
        incidents=[
            incident(
                4213,
                "sbc_alarm:sbc-hd13",
                "Alarme majeure sur le SBC sbc-hd13 : lien Ethernet 2 coupé",
                services=["toip", "isicom"],
                site="HD13",
                device="sbc-hd13",
                user_impact="degraded",
                itsm_ref="INC0042137",
            ),
            incident(
                57,
                "otms:voicemail",
                "Lenteurs de la messagerie vocale",
                services=["visio"],
                user_impact="degraded",
            ),
        ],
    )
    changes = [
        PlannedChange(
            datetime(2026, 11, 24, 20, 0, tzinfo=PARIS),
            datetime(2026, 11, 24, 22, 0, tzinfo=PARIS),
            "Mise à jour du firmware des SBC (7.40A.500)",
            ("HD13", "ARENC"),
            ("toip",),
            "CHG0001234",
        ),
        PlannedChange(
            datetime(2026, 11, 26, 7, 0, tzinfo=PARIS),
            datetime(2026, 11, 26, 8, 0, tzinfo=PARIS),
            "Remplacement des batteries de l'onduleur",
            ("ISTRES-MDS",),
            (),
            "CHG0001240",
            "maintenance",
        ),
        PlannedChange(
            None,
            None,
            "Ajout de 20 postes au CDS de Martigues",
            ("MARTIGUES-MDS",),
            ("toip",),
            "REQ0098765",
            "request",
        ),
        PlannedChange(datetime(2026, 12, 20, 7, 0, tzinfo=PARIS), None, "Hors horizon", (), (), "CHG9"),
    ]
    meteo, _ = meteo_for(sc, lang=lang, changes=select_changes(changes, DAY, PARIS, 7))
    yesterday = {
        "day": "2026-11-23",
        "services": [
            {
                "key": "toip",
                "user": "nominal",
                "technical": "perturbe",
                "findings": [
                    {
                        "key": "check:hypervisor_backup:hv-hd13-1",
                        "summary": "Sauvegarde en échec sur hv-hd13-1",
                        "refs": ["CAL-000120"],
                    },
                    {"key": "check:oxe_backup:oxe-hd13", "summary": "old", "refs": []},
                ],
            }
        ],
        "sites": [],
    }
    return diff_meteo(meteo, yesterday)


class Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.th_rows: list[str] = []
        self._in_row_th = False
        self._buf = ""
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "th" and a.get("scope") == "row":
            self._in_row_th, self._buf = True, ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "th" and self._in_row_th:
            self._in_row_th = False
            self.th_rows.append(self._buf)

    def handle_data(self, data: str) -> None:
        self.text += data
        if self._in_row_th:
            self._buf += data


def parse(html: str) -> Tree:
    t = Tree()
    t.feed(html)
    return t


def test_html_is_self_contained_accessible_and_in_french() -> None:
    meteo = busy_morning()
    html = MeteoRenderer().html(meteo)
    tree = parse(html)
    tags = [t for t, _ in tree.tags]
    assert tree.tags[0] == ("html", {"lang": "fr", "xmlns": "http://www.w3.org/1999/xhtml"})
    assert ("meta", {"charset": "utf-8"}) in tree.tags
    # Outlook and privacy: no script, no stylesheet, no external resource of any kind
    assert not {"script", "link", "style", "img", "iframe", "object"} & set(tags)
    for tag, attrs in tree.tags:
        for k, v in attrs.items():
            if k in ("src", "href", "background") or (v and "url(" in v):
                pytest.fail(f"external reference in <{tag} {k}={v!r}>")
    # data tables: headers with scope, rows headed by their line
    for tag, attrs in tree.tags:
        if tag == "th":
            assert attrs.get("scope") in ("col", "row", "colgroup"), attrs
    assert tags.count("thead") == tags.count("tbody")
    rows = [" ".join(r.split()) for r in tree.th_rows]
    for label, row in zip(SERVICE_LABELS, rows[:8], strict=True):
        assert row.startswith(label)
    assert [r.split(" ")[0] for r in rows[8:12]] == ["HD13", "ARENC", "ST-SEBASTIEN", "SITES"]
    # states: a symbol (hidden from screen readers) and a word, never a colour alone
    assert html.count('<span aria-hidden="true">▲</span>&nbsp;Perturbé') >= 3
    assert '<span aria-hidden="true">●</span>&nbsp;Nominal' in html
    assert '<span aria-hidden="true">■</span>&nbsp;Inaccessible' in html  # in the legend at least
    text = " ".join(tree.text.split())
    for needle in [
        "Météo du service Callipso",
        "Mardi 24 novembre 2026",
        "INC0042137",
        "CAL-000057",
        "Sur onduleur : 1",
        "Injoignables : 1",
        "Nominaux : 18",
        "20 sites",
        "INFORMATIONS / CHANGEMENTS / INTERVENTIONS PLANIFIÉES",
        "CHG0001234",
        "REQ0098765",
        "Remplacement des batteries",
        "Nouveau depuis hier",
        "Résolu depuis hier",
        "CAL-000120",
        "Légende",
        "Aucun impact pour les utilisateurs.",
        "Contrôles quotidiens",
    ]:
        assert needle in text, needle
    assert "Hors horizon" not in text
    assert text.count("NOUVEAU") >= 4
    # the email body is 880 px wide: between the 700 and 900 px Outlook readers are comfortable with
    assert 'width="880"' in html


def test_html_in_english() -> None:
    meteo = busy_morning("en")
    html = MeteoRenderer().html(meteo)
    tree = parse(html)
    assert tree.tags[0][1]["lang"] == "en"
    text = " ".join(tree.text.split())
    assert "Callipso service weather report" in text and "Tuesday 24 November 2026" in text
    assert "Disrupted" in text and "Degraded" in text and "REMOTE SITES" in text and "On UPS: 1" in text
    assert "Perturbé" not in text and "Légende" not in text
    assert subject(meteo) == "Callipso weather report for 2026-11-24"


def test_plain_text_alternative() -> None:
    meteo = busy_morning()
    text = MeteoRenderer().text(meteo)
    assert text.startswith("MÉTÉO DU SERVICE CALLIPSO — mardi 24 novembre 2026\n")
    positions = [text.index(f"\n{label}") for label in SERVICE_LABELS]
    assert positions == sorted(positions)
    toip = text[positions[0] : positions[1]]
    assert "État utilisateur : ▲ Perturbations" in toip and "État technique : ▲ Perturbé" in toip
    assert "[NOUVEAU] INC0042137 — Alarme majeure sur le SBC sbc-hd13" in toip
    assert "AUBAGNE-MDS — Onduleur ups-aubagne-mds sur batterie" in text
    assert "GARDANNE-MDS — Site MDS Gardanne injoignable" in text
    assert (
        "Lignes de service nominales : 4 sur 8 · Sites nominaux : 2 sur 4 · Incidents ouverts cités : 2"
        in text
    )
    assert "✓ CAL-000120 — Sauvegarde en échec sur hv-hd13-1" in text
    assert (
        "■ Inaccessible : Interruption totale d'un service critique ou d'un groupe supervisé entier." in text
    )
    assert "<" not in text.replace("->", "")  # no markup
    assert subject(meteo) == "Météo Callipso du 24/11/2026"


def test_archived_form_round_trips_through_the_diff() -> None:
    meteo = busy_morning()
    data = meteo_to_dict(meteo)
    assert [s["label"] for s in data["services"]] == SERVICE_LABELS
    # comparing a météo with itself: nothing new, nothing resolved, no state change
    same = diff_meteo(meteo, data)
    assert same.diff is not None and same.diff.empty
    assert not any(f.new for line in same.lines for f in line.findings)
    assert meteo.diff is not None
    assert [d.summary for d in meteo.diff.resolved] == ["Sauvegarde en échec sur hv-hd13-1"]
    assert [c.key for c in meteo.diff.changed] == ["toip"]
    new = {d.summary: d.lines for d in meteo.diff.new}
    assert new["Alarme majeure sur le SBC sbc-hd13 : lien Ethernet 2 coupé"] == (
        "INFRASTRUCTURE TOIP CALLIPSO",
        "CENTRE D'APPEL ISI-COM",
        "HD13",
    )
    # the OXE backup was already failing yesterday (on one line): not new, on any line
    assert [f.new for line in meteo.lines for f in line.findings if f.key == "check:oxe_backup:oxe-hd13"] == [
        False,
        False,
    ]


def _screenshot(html: str, tmp_path: Path) -> Path:
    chromium = require_binary("chromium", "chromium-browser", "google-chrome")
    page = tmp_path / "meteo.html"
    page.write_text(html, encoding="utf-8")
    png = tmp_path / "meteo.png"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1000,1400",
        f"--screenshot={png}",
        page.as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and png.is_file(), out.stderr[-2000:]
    return png


@pytest.mark.system
def test_chromium_draws_a_wide_coloured_non_blank_page(tmp_path: Path) -> None:
    html = MeteoRenderer().html(busy_morning())
    img = read_png(_screenshot(html, tmp_path))
    assert (img.width, img.height) == (1000, 1400)
    # not blank: the grey levels vary a lot
    sample = [sum(img.pixel(x, y)) / 3 for y in range(0, img.height, 7) for x in range(0, img.width, 7)]
    mean = sum(sample) / len(sample)
    variance = sum((v - mean) ** 2 for v in sample) / len(sample)
    assert variance > 500, variance
    # the white email body: its width on a row below the header
    y = 300
    row = img.row_pixels(y)
    white = [x for x, p in enumerate(row) if p == (255, 255, 255)]
    assert white, "no white body on the row"
    body = white[-1] - white[0] + 1
    assert 700 <= body <= 900, body
    # the state colours are drawn (a perturbed line, a nominal one), and the header band is dark blue
    colours = {img.pixel(x, yy) for yy in range(0, img.height, 3) for x in range(0, img.width, 3)}

    def rgb(hexa: str) -> tuple[int, int, int]:
        return tuple(int(hexa[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]

    assert rgb(PALETTE[0].background) in colours
    assert rgb(PALETTE[1].background) in colours
    assert rgb("#12355b") in colours


def test_no_jinja_leftovers_in_either_rendering() -> None:
    meteo = busy_morning()
    for out in (MeteoRenderer().html(meteo), MeteoRenderer().text(meteo)):
        assert not re.search(r"\{\{|\{%|\}\}|%\}|\bNone\b", out)
