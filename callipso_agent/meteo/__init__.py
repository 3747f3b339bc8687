"""The daily météo of the Callipso service: checklist, states, report, email, archive.

Pipeline: a snapshot of the estate (:mod:`.snapshot`) -> the daily checks (:mod:`.checks`) -> the
states of each service line and site (:func:`.builder.compute_meteo`, pure) -> HTML and text
(:mod:`.render`) -> archive (:mod:`.archive`) and email (:mod:`.mail`), orchestrated by
:class:`.service.MeteoService`. The checklist is data: ``checks/meteo.yaml`` and ``checks/daily/*.yaml``.
"""

from callipso_agent.meteo.builder import Finding, Meteo, MeteoLine, compute_meteo, diff_meteo, incident_number
from callipso_agent.meteo.changes import PlannedChange, YamlChangesProvider
from callipso_agent.meteo.checks import CheckRun, FailedCheck, evaluate_checks, run_daily_checks
from callipso_agent.meteo.states import TechState, UserState

__all__ = [
    "CheckRun",
    "FailedCheck",
    "Finding",
    "Meteo",
    "MeteoLine",
    "PlannedChange",
    "TechState",
    "UserState",
    "YamlChangesProvider",
    "compute_meteo",
    "diff_meteo",
    "evaluate_checks",
    "incident_number",
    "run_daily_checks",
]
