"""Properties of the codec over arbitrary inputs (hypothesis), on both parse_head versions."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parse_heads import implementation  # noqa: F401 (autouse: each test on each parse_head)

from scgikit import protocol
from scgikit.protocol import (
    NEED_DATA,
    Body,
    EndOfMessage,
    ProtocolError,
    Request,
    RequestParser,
    Response,
    ResponseError,
    ResponseParser,
    encode_request,
    format_response_head,
)

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

latin1 = st.characters(min_codepoint=1, max_codepoint=255)
names = st.text(latin1, min_size=1, max_size=20).filter(
    lambda n: n not in ("CONTENT_LENGTH", "SCGI"))
environs = st.dictionaries(names, st.text(latin1, max_size=40), max_size=12)
bodies = st.binary(max_size=3000)


def split(data, cuts):
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points + [len(data)]:
        pieces.append(data[start:point])
        start = point
    return [p for p in pieces if p]


def run_parser(pieces):
    parser = RequestParser(max_header_size=1 << 20)
    request, body, ended = None, b"", False
    for piece in pieces + [b""]:
        parser.receive_data(piece)
        while (event := parser.next_event()) is not NEED_DATA:
            if isinstance(event, Request):
                request = event
            elif isinstance(event, Body):
                body += event.data
            elif isinstance(event, EndOfMessage):
                ended = True
                break
        if ended:
            break
    return request, body, ended


@SETTINGS
@given(environs, bodies, st.lists(st.integers(min_value=0), max_size=8))
def test_encoded_requests_parse_back_whatever_the_split(environ, body, cuts):
    data = encode_request(environ, len(body)) + body
    request, received, ended = run_parser(split(data, cuts))
    assert ended and received == body
    assert request.content_length == len(body)
    expected = {"CONTENT_LENGTH": str(len(body)), "SCGI": "1", **environ}
    assert request.environ == expected


@SETTINGS
@given(environs, bodies)
def test_parse_head_agrees_with_the_incremental_parser(environ, body):
    data = encode_request(environ, len(body)) + body
    parsed_environ, length, consumed = protocol.parse_head(data, max_header_size=1 << 20)
    assert data[consumed:consumed + length] == body
    assert parsed_environ["CONTENT_LENGTH"] == str(len(body))


@SETTINGS
@given(st.binary(max_size=500), st.lists(st.integers(min_value=0), max_size=5))
def test_arbitrary_bytes_raise_only_protocol_errors(data, cuts):
    try:
        run_parser(split(data, cuts))
    except ProtocolError:
        pass


@SETTINGS
@given(environs, bodies, st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_mutated_requests_raise_only_protocol_errors(environ, body, where, byte):
    data = bytearray(encode_request(environ, len(body)) + body)
    data[where % len(data)] = byte
    try:
        run_parser([bytes(data)])
    except ProtocolError:
        pass


@SETTINGS
@given(st.binary(max_size=100))
def test_truncated_requests_raise_only_protocol_errors(tail):
    data = encode_request({"A": "b"}, 50) + tail
    try:
        run_parser([data])
    except ProtocolError as exc:
        assert exc.status in (400, 413, 431)


header_names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,15}\Z").filter(
    lambda n: n.lower() not in ("status", "location"))
header_values = st.from_regex(r"\A[!-~]([ !-~]{0,30}[!-~])?\Z")


@SETTINGS
@given(st.integers(min_value=100, max_value=999),
       st.lists(st.tuples(header_names, header_values), max_size=8), bodies,
       st.lists(st.integers(min_value=0), max_size=6))
def test_response_heads_round_trip(status, headers, body, cuts):
    data = format_response_head(f"{status} Reason", headers) + body
    parser = ResponseParser()
    head, received = None, b""
    for piece in split(data, cuts) + [b""]:
        parser.receive_data(piece)
        while (event := parser.next_event()) is not NEED_DATA:
            if isinstance(event, Response):
                head = event
            elif isinstance(event, Body):
                received += event.data
            elif isinstance(event, EndOfMessage):
                break
    assert (head.status, head.reason, head.headers) == (status, "Reason", headers)
    assert received == body


@SETTINGS
@given(st.binary(max_size=500))
def test_arbitrary_answers_raise_only_response_errors(data):
    parser = ResponseParser(max_head_size=256)
    parser.receive_data(data)
    parser.receive_data(b"")
    try:
        while not isinstance(parser.next_event(), EndOfMessage):
            pass
    except ResponseError:
        pass
