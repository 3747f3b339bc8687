"""ITSM output: EasyVista Service Manager tickets for incidents."""

from callipso_agent.itsm.config import EasyVistaSettings, TicketMapping
from callipso_agent.itsm.easyvista import EasyVistaClient, TicketRef, ref_from_href
from callipso_agent.itsm.errors import (
    ItsmAuthError,
    ItsmError,
    ItsmFunctionalError,
    ItsmNotFound,
    ItsmProtocolError,
    ItsmRejected,
    ItsmTimeout,
    ItsmUnavailable,
)
from callipso_agent.itsm.tickets import EasyVistaDeliverer, ItsmPublisher, TicketMapper

__all__ = [
    "EasyVistaClient",
    "EasyVistaDeliverer",
    "EasyVistaSettings",
    "ItsmAuthError",
    "ItsmError",
    "ItsmFunctionalError",
    "ItsmNotFound",
    "ItsmProtocolError",
    "ItsmPublisher",
    "ItsmRejected",
    "ItsmTimeout",
    "ItsmUnavailable",
    "TicketMapper",
    "TicketMapping",
    "TicketRef",
    "ref_from_href",
]
