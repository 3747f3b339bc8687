"""The BER codec: agreement with pysnmp's codec both ways, strictness, and fuzzing of the decoder."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder as pyasn1_decoder
from pyasn1.codec.ber import encoder as pyasn1_encoder
from pysnmp.proto import api, rfc1902, rfc1905

from callipso_agent.errors import ParseError
from callipso_agent.transports import ber
from callipso_agent.transports.snmp import SnmpValue, decode_value, oid_tuple

EXAMPLES = int(os.environ.get("CALLIPSO_FUZZ_EXAMPLES", "0") or 0)


def fuzz(ci_examples: int) -> Any:
    return settings(max_examples=EXAMPLES or ci_examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


V2 = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
V1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]

# one pysnmp value of each kind, with edge values
PYSNMP_VALUES: list[tuple[str, Any]] = [
    ("1.3.6.1.2.1.1.1.0", rfc1902.OctetString(b"Eaton 9PX \xff\x00 end")),
    ("1.3.6.1.2.1.1.2.0", rfc1902.ObjectName("1.3.6.1.4.1.705.1")),
    ("1.3.6.1.2.1.1.3.0", rfc1902.TimeTicks(4294967295)),
    ("1.3.6.1.2.1.2.2.1.10.1", rfc1902.Counter32(0)),
    ("1.3.6.1.2.1.2.2.1.5.1", rfc1902.Gauge32(4294967295)),
    ("1.3.6.1.2.1.31.1.1.1.6.1", rfc1902.Counter64(18446744073709551615)),
    ("1.3.6.1.2.1.4.20.1.1.10.0.0.1", rfc1902.IpAddress("10.0.0.1")),
    ("1.3.6.1.4.1.2021.10.1.6.1", rfc1902.Opaque(b"\x9f\x78\x04\x3f\x80\x00\x00")),
    ("1.3.6.1.2.1.33.1.2.5.0", rfc1902.Integer32(-2147483648)),
    ("1.3.6.1.2.1.33.1.2.6.0", rfc1902.Integer32(2147483647)),
    ("1.3.6.1.4.1.99999.200.16384.4294967295", rfc1902.Integer32(0)),
    ("2.999.1", rfc1902.OctetString(b"")),
    ("1.3.6.1.2.1.1.9.0", V2.Null("")),
    ("1.3.6.1.2.1.1.10.0", rfc1905.noSuchObject),
    ("1.3.6.1.2.1.1.11.0", rfc1905.noSuchInstance),
    ("1.3.6.1.2.1.1.12.0", rfc1905.endOfMibView),
]


def pysnmp_response(varbinds: list[tuple[str, Any]], *, request_id: int = 4242, status: int = 0, index: int = 0,
                    community: str = "public") -> bytes:
    pdu = V2.ResponsePDU()
    V2.apiPDU.set_defaults(pdu)
    V2.apiPDU.set_request_id(pdu, request_id)
    V2.apiPDU.set_error_status(pdu, status)
    V2.apiPDU.set_error_index(pdu, index)
    V2.apiPDU.set_varbinds(pdu, varbinds)
    msg = V2.Message()
    V2.apiMessage.set_defaults(msg)
    V2.apiMessage.set_community(msg, community)
    V2.apiMessage.set_pdu(msg, pdu)
    return bytes(pyasn1_encoder.encode(msg))


def test_decodes_what_pysnmp_encodes_as_the_pysnmp_transport_would() -> None:
    data = pysnmp_response(PYSNMP_VALUES, request_id=-7, status=0)
    msg = ber.decode_message(data)
    assert msg.version == ber.VERSION_2C and msg.community == b"public"
    assert isinstance(msg.pdu, ber.Pdu) and msg.pdu.tag == ber.RESPONSE and msg.pdu.request_id == -7
    # the pysnmp side: decode with pyasn1, translate with the transport's own decode_value
    rsp, rest = pyasn1_decoder.decode(data, asn1Spec=V2.Message())
    assert not rest
    expected = [(str(n), decode_value(v)) for n, v in V2.apiPDU.get_varbinds(V2.apiMessage.get_pdu(rsp))]
    assert msg.pdu.varbinds == expected
    assert [type(v.value) for _, v in msg.pdu.varbinds] == [type(v.value) for _, v in expected]


def test_pysnmp_decodes_what_we_encode() -> None:
    ours = [(oid, decode_value(v)) for oid, v in PYSNMP_VALUES]
    msg = ber.Message(ber.VERSION_2C, b"c\xe9", ber.Pdu(ber.RESPONSE, 123456, 0, 0, ours))
    data = ber.encode_message(msg)
    rsp, rest = pyasn1_decoder.decode(data, asn1Spec=V2.Message())
    assert not rest and bytes(V2.apiMessage.get_community(rsp)) == b"c\xe9"
    pdu = V2.apiMessage.get_pdu(rsp)
    assert int(V2.apiPDU.get_request_id(pdu)) == 123456
    assert [(str(n), decode_value(v)) for n, v in V2.apiPDU.get_varbinds(pdu)] == ours
    assert ber.decode_message(data) == msg
    # byte for byte as pysnmp, but for INTEGER -2**31 which pyasn1 encodes on five octets
    assert len(data) + 1 == len(pysnmp_response(PYSNMP_VALUES, request_id=123456, community="c\xe9"))


@pytest.mark.parametrize("tag", [ber.GET, ber.GETNEXT, ber.GETBULK, ber.SET, ber.INFORM, ber.TRAP_V2, ber.REPORT])
def test_requests_round_trip_and_match_pysnmp(tag: int) -> None:
    oids = ["1.3.6.1.2.1.1.1.0", "1.3.6.1.4.1.534.1.3.4.1.2.1", "1.3.6.1.4.1.99999.300.70000"]
    data = ber.encode_request(ber.VERSION_2C, b"public", tag, 99, oids, 0, 25)
    msg = ber.decode_message(data)
    assert isinstance(msg.pdu, ber.Pdu)
    assert (msg.pdu.tag, msg.pdu.request_id, msg.pdu.non_repeaters, msg.pdu.max_repetitions) == (tag, 99, 0, 25)
    assert msg.pdu.varbinds == [(o, SnmpValue("null", None)) for o in oids]
    req = ber.decode_request(data)
    assert [ber.oid_text(n) for n in req.names] == oids
    assert (req.tag, req.request_id, req.field2) == (tag, 99, 25)
    if tag == ber.GETBULK:
        pdu, _ = pyasn1_decoder.decode(data, asn1Spec=V2.Message())
        bulk = V2.apiMessage.get_pdu(pdu)
        assert int(V2.apiBulkPDU.get_max_repetitions(bulk)) == 25
        assert [str(n) for n, _ in V2.apiBulkPDU.get_varbinds(bulk)] == oids


def test_v1_trap_round_trip_and_matches_pysnmp() -> None:
    trap = ber.TrapV1Pdu("1.3.6.1.4.1.534", "192.0.2.7", 6, 5, 123456,
                         [("1.3.6.1.4.1.534.1.7.5.0", SnmpValue("integer", 3))])
    data = ber.encode_message(ber.Message(ber.VERSION_1, b"public", trap))
    assert ber.decode_message(data).pdu == trap
    msg, _ = pyasn1_decoder.decode(data, asn1Spec=V1.Message())
    pdu = V1.apiMessage.get_pdu(msg)
    assert str(V1.apiTrapPDU.get_enterprise(pdu)) == "1.3.6.1.4.1.534"
    assert V1.apiTrapPDU.get_agent_address(pdu).prettyPrint() == "192.0.2.7"
    assert int(V1.apiTrapPDU.get_specific_trap(pdu)) == 5
    assert int(V1.apiTrapPDU.get_timestamp(pdu)) == 123456


def _response_with_value(value_tlv: bytes) -> bytes:
    vb = ber.tlv(ber.SEQUENCE, ber.encode_oid("1.3.6.1.2.1.1.1.0") + value_tlv)
    return ber.encode_response(ber.VERSION_2C, b"public", 1, 0, 0, vb)


@pytest.mark.parametrize("value_tlv", [
    b"\x05\x01\x00",  # NULL with content
    b"\x80\x01\x00",  # noSuchObject with content
    b"\x40\x05\x0a\x00\x00\x01\x02",  # IpAddress of 5 octets
    b"\x41\x01\xff",  # Counter32 -1
    b"\x42\x05\x01\x00\x00\x00\x00",  # Gauge32 2**32
    b"\x46\x0a" + b"\x01" * 10,  # Counter64 of 10 octets
    b"\x02\x00",  # INTEGER of 0 octets
    b"\x02\x0a" + b"\x01" * 10,  # INTEGER of 10 octets
    b"\x24\x03\x04\x01a",  # constructed OCTET STRING
    b"\x47\x01\x01",  # unknown application tag
    b"\x06\x02\x2b\x80",  # OID ending inside a sub-identifier
    b"\x06\x03\x2b\x80\x01",  # sub-identifier with a leading 0x80
    b"\x06\x07\x2b\x90\x80\x80\x80\x00\x01",  # sub-identifier 2**32
    b"\x06\x00",  # empty OID
    b"\x06\x81\x80" + b"\x01" * 128,  # 129 sub-identifiers
    b"\x04\x80abc\x00\x00",  # indefinite length
    b"\x04\x85\x00\x00\x00\x00\x01a",  # five length octets
])
def test_refuses_malformed_values(value_tlv: bytes) -> None:
    with pytest.raises(ber.BerError):
        ber.decode_message(_response_with_value(value_tlv))


def test_accepts_non_minimal_integers_and_long_form_lengths() -> None:
    msg = ber.decode_message(_response_with_value(b"\x02\x03\x00\x00\x05"))
    assert msg.pdu.varbinds[0][1] == SnmpValue("integer", 5)
    msg = ber.decode_message(_response_with_value(b"\x04\x82\x00\x02ab"))
    assert msg.pdu.varbinds[0][1] == SnmpValue("octets", b"ab")


@pytest.mark.parametrize("mutate", [
    lambda d: d + b"\x00",  # trailing byte
    lambda d: d[:-1],  # truncated
    lambda d: d[:1] + bytes([d[1] + 1]) + d[2:] + b"\x00",  # outer length covering a trailing byte... in the PDU
    lambda d: d.replace(b"\x02\x01\x01\x04", b"\x02\x01\x03\x04", 1),  # version 3
    lambda d: d.replace(b"\xa2", b"\xa9", 1),  # unknown PDU
    lambda d: b"\x31" + d[1:],  # SET instead of SEQUENCE
])
def test_refuses_malformed_messages(mutate: Any) -> None:
    good = pysnmp_response(PYSNMP_VALUES[:3])
    ber.decode_message(good)
    with pytest.raises(ber.BerError):
        ber.decode_message(mutate(good))


def test_codec_error_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        ber.decode_message(b"\x30\x03\x02\x01")


def test_error_status_names() -> None:
    assert ber.error_status_name(5) == "genErr" == str(V2.apiPDU.get_error_status(
        V2.apiMessage.get_pdu(pyasn1_decoder.decode(pysnmp_response([], status=5), asn1Spec=V2.Message())[0]))
        .prettyPrint())
    assert ber.error_status_name(99) == "99"


def test_peek_request_id_on_truncated_answers() -> None:
    data = pysnmp_response(PYSNMP_VALUES, request_id=31337)
    assert ber.peek_request_id(data[:40]) == 31337
    assert ber.peek_request_id(b"\x30\x03") is None
    assert ber.peek_request_id(b"") is None


# -------------------------------------------------------------------------------------------- properties

OIDS = st.builds(
    lambda first, second, rest: (first, second if first == 2 else second % 40, *rest),
    st.integers(0, 2), st.integers(0, 2**32 - 81),
    st.lists(st.one_of(st.integers(0, 300), st.integers(0, 2**32 - 1)), min_size=0, max_size=20),
)
VALUES = st.one_of(
    st.builds(SnmpValue, st.just("integer"), st.integers(-(2**63), 2**63 - 1)),
    st.builds(SnmpValue, st.just("octets"), st.binary(max_size=300)),
    st.builds(SnmpValue, st.just("opaque"), st.binary(max_size=20)),
    st.builds(SnmpValue, st.sampled_from(["counter", "gauge", "timeticks"]), st.integers(0, 2**32 - 1)),
    st.builds(SnmpValue, st.just("counter64"), st.integers(0, 2**64 - 1)),
    st.builds(SnmpValue, st.just("ipaddress"), st.ip_addresses(v=4).map(str)),
    st.builds(SnmpValue, st.just("oid"), OIDS.map(lambda t: ".".join(map(str, t)))),
    st.builds(SnmpValue, st.sampled_from(["null", "nosuchobject", "nosuchinstance", "endofmibview"]), st.none()),
)
VARBINDS = st.lists(st.tuples(OIDS.map(lambda t: ".".join(map(str, t))), VALUES), max_size=30)


@fuzz(100)
@given(version=st.sampled_from([0, 1]), community=st.binary(max_size=40), request_id=st.integers(-(2**31), 2**31 - 1),
       tag=st.sampled_from(sorted(set(ber.PDU_NAMES) - {ber.TRAP_V1})), status=st.integers(0, 18),
       index=st.integers(0, 2**31 - 1), varbinds=VARBINDS)
def test_round_trip(version: int, community: bytes, request_id: int, tag: int, status: int, index: int,
                    varbinds: list[tuple[str, SnmpValue]]) -> None:
    msg = ber.Message(version, community, ber.Pdu(tag, request_id, status, index, varbinds))
    data = ber.encode_message(msg)
    assert ber.decode_message(data) == msg
    assert ber.peek_request_id(data) == request_id
    assert [ber.oid_text(n) for n in ber.decode_request(data).names] == [o for o, _ in varbinds]


@fuzz(200)
@given(a=OIDS, b=OIDS)
def test_oid_key_orders_like_tuples(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    ka, kb = ber.oid_key(ber.oid_content(a)), ber.oid_key(ber.oid_content(b))
    assert (ka < kb) == (a < b) and (ka == kb) == (a == b)
    assert ka.startswith(kb) == (a[: len(b)] == b)
    text = ".".join(map(str, a))
    assert ber.oid_text(ber.oid_content(text)) == text and oid_tuple(text) == a


def _valid_samples() -> list[bytes]:
    return [
        pysnmp_response(PYSNMP_VALUES),
        pysnmp_response([], status=2, index=1),
        ber.encode_request(ber.VERSION_1, b"public", ber.GETNEXT, 7, ["1.3.6.1.2.1.1.1.0"]),
        ber.encode_message(ber.Message(ber.VERSION_1, b"public", ber.TrapV1Pdu(
            "1.3.6.1.4.1.534", "192.0.2.7", 6, 5, 123, [("1.3.6.1.2.1.1.3.0", SnmpValue("timeticks", 5))]))),
    ]


def _decoders_only_raise_ber_error(data: bytes) -> None:
    for decode in (ber.decode_message, ber.decode_request):
        try:
            decode(data)
        except ber.BerError:
            pass
    ber.peek_request_id(data)  # never raises


@fuzz(1000)
@given(data=st.binary(max_size=600))
@example(data=b"\x30\x84\xff\xff\xff\xff")
@example(data=b"\x30\x80\x02\x01\x01\x00\x00")
@example(data=b"\x30\x06\x02\x01\x01\x04\x81\xff")
def test_random_bytes_only_raise_the_codec_error(data: bytes) -> None:
    _decoders_only_raise_ber_error(data)


@fuzz(500)
@given(sample=st.sampled_from(_valid_samples()), cut=st.integers(0, 400),
       flips=st.lists(st.tuples(st.integers(0, 399), st.integers(0, 255)), max_size=4),
       insert=st.tuples(st.integers(0, 399), st.binary(max_size=6)))
def test_mutated_and_truncated_messages_only_raise_the_codec_error(
        sample: bytes, cut: int, flips: list[tuple[int, int]], insert: tuple[int, bytes]) -> None:
    data = bytearray(sample)
    for pos, byte in flips:
        if data:
            data[pos % len(data)] = byte
    pos, extra = insert
    data[pos % (len(data) + 1):pos % (len(data) + 1)] = extra
    _decoders_only_raise_ber_error(bytes(data))
    _decoders_only_raise_ber_error(sample[: cut % (len(sample) + 1)])


def test_oversized_datagram_is_refused() -> None:
    vb = ber.encode_varbind("1.3.6.1.2.1.1.1.0", SnmpValue("octets", b"x" * 70000))
    with pytest.raises(ber.BerError, match="octets"):
        ber.decode_message(ber.encode_response(ber.VERSION_2C, b"public", 1, 0, 0, vb))


def test_encoding_refuses_values_out_of_range() -> None:
    for bad in (SnmpValue("counter", -1), SnmpValue("gauge", 2**32), SnmpValue("ipaddress", "1.2.3"),
                SnmpValue("oid", "1"), SnmpValue("integer", 2**64), SnmpValue("bits", b"")):
        with pytest.raises(ValueError):
            ber.encode_value(bad)
