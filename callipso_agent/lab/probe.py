"""A minimal synchronous SNMP GET on raw sockets, used to see whether a lab agent is up.

It encodes one v2c GET with pysnmp's codec and waits for any answer; no engine, no event loop.
"""

from __future__ import annotations

import socket

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api


def snmp_get_sync(host: str, port: int, community: str, oid: str, timeout: float = 1.0) -> object | None:
    p = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    pdu = p.GetRequestPDU()
    p.apiPDU.set_defaults(pdu)
    p.apiPDU.set_varbinds(pdu, [(oid, p.Null(""))])
    msg = p.Message()
    p.apiMessage.set_defaults(msg)
    p.apiMessage.set_community(msg, community)
    p.apiMessage.set_pdu(msg, pdu)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(encoder.encode(msg), (host, port))
        try:
            data, _ = s.recvfrom(65535)
        except OSError:
            return None
    rsp, _ = decoder.decode(data, asn1Spec=p.Message())
    vbs = p.apiPDU.get_varbinds(p.apiMessage.get_pdu(rsp))
    return vbs[0][1] if vbs else None
