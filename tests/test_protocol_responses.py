"""CGI response heads: the three forms a server may answer in, and broken answers."""

import pytest

from scgikit.protocol import (
    NEED_DATA,
    Body,
    EndOfMessage,
    Response,
    ResponseError,
    ResponseParser,
    error_response,
    format_response_head,
    parse_response_head,
)


def read_all(raw):
    parser = ResponseParser()
    parser.receive_data(raw)
    parser.receive_data(b"")
    head = parser.next_event()
    body = b""
    while not isinstance(event := parser.next_event(), EndOfMessage):
        body += event.data
    return head, body


def test_status_header_gives_status_and_reason():
    head = parse_response_head(b"Status: 404 Not Found\r\nContent-Type: text/plain")
    assert (head.status, head.reason, head.headers) == (404, "Not Found",
                                                        [("Content-Type", "text/plain")])


def test_http_status_line_is_accepted():
    head = parse_response_head(b"HTTP/1.1 201 Created\r\nX: y")
    assert (head.status, head.reason, head.headers) == (201, "Created", [("X", "y")])


def test_no_status_means_200():
    assert parse_response_head(b"Content-Type: text/html").status == 200


def test_location_without_status_means_302():
    assert parse_response_head(b"Location: /elsewhere").status == 302


def test_status_without_reason_gets_the_usual_one():
    assert parse_response_head(b"Status: 404").reason == "Not Found"


def test_repeated_headers_keep_their_order():
    head = parse_response_head(b"Set-Cookie: a=1\r\nX: 1\r\nSet-Cookie: b=2")
    assert head.headers == [("Set-Cookie", "a=1"), ("X", "1"), ("Set-Cookie", "b=2")]


def test_bare_lf_line_ends_are_accepted():
    head, body = read_all(b"Status: 200 OK\nContent-Type: text/plain\n\nbody")
    assert head.status == 200 and body == b"body"


@pytest.mark.parametrize("raw", [b"no colon here", b": empty name", b"Status: abc",
                                 b"Status: 20", b"Status: 099 Low", b"HTTP/1.1 xyz"])
def test_malformed_heads_are_response_errors(raw):
    with pytest.raises(ResponseError):
        parse_response_head(raw)


def test_response_fed_one_byte_at_a_time():
    raw = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"
    parser = ResponseParser()
    head, body = None, b""
    for i in range(len(raw) + 1):
        parser.receive_data(raw[i:i + 1])
        while (event := parser.next_event()) is not NEED_DATA:
            if isinstance(event, Response):
                head = event
            elif isinstance(event, Body):
                body += event.data
            elif isinstance(event, EndOfMessage):
                break
    assert head.status == 200 and body == b"hello"


def test_head_cut_short_is_a_response_error():
    parser = ResponseParser()
    parser.receive_data(b"Status: 200 OK\r\nContent-")
    parser.receive_data(b"")
    with pytest.raises(ResponseError, match="before the response head was complete"):
        parser.next_event()


def test_no_answer_is_a_response_error():
    parser = ResponseParser()
    parser.receive_data(b"")
    with pytest.raises(ResponseError, match="without a response"):
        parser.next_event()


def test_head_without_end_beyond_the_limit_is_refused():
    parser = ResponseParser(max_head_size=1024)
    parser.receive_data(b"X: " + b"y" * 2000)
    with pytest.raises(ResponseError, match="exceeds 1024 bytes"):
        parser.next_event()


def test_formatted_head_always_uses_the_status_header():
    head = format_response_head("200 OK", [("Content-Type", "text/plain"), ("X", "1")])
    assert head == b"Status: 200 OK\r\nContent-Type: text/plain\r\nX: 1\r\n\r\n"
    assert not head.startswith(b"HTTP/")


@pytest.mark.parametrize("status", [400, 408, 413, 431, 500, 502, 503])
def test_error_response_is_complete_and_says_nothing_more(status):
    head, body = read_all(error_response(status))
    assert head.status == status
    assert int(dict(head.headers)["Content-Length"]) == len(body)
    assert body.decode().startswith(str(status))
    assert len(body) < 64
