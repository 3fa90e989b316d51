"""The SCGI request codec, rule by rule (https://python.ca/scgi/protocol.txt).

Every test runs on both parse_head implementations, the pure one and the C one.
"""

import pytest
from netstrings import netstring, scgi_head
from parse_heads import implementation  # noqa: F401 (autouse: each test on each parse_head)

from scgikit import protocol
from scgikit.protocol import (
    NEED_DATA,
    Body,
    EndOfMessage,
    LocalProtocolError,
    ProtocolError,
    Request,
    RequestParser,
    encode_request,
)

GOOD = [("CONTENT_LENGTH", "5"), ("SCGI", "1"), ("REQUEST_METHOD", "POST")]


def parse(data, **kwargs):
    return protocol.parse_head(data, **kwargs)


def test_a_valid_head_gives_variables_body_length_and_body_offset():
    head = scgi_head(GOOD)
    environ, length, consumed = parse(head + b"hello")
    assert environ == {"CONTENT_LENGTH": "5", "SCGI": "1", "REQUEST_METHOD": "POST"}
    assert (length, consumed) == (5, len(head))


def test_the_example_from_the_specification_parses():
    spec = (b'70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00'
            b'REQUEST_URI\x00/deepthought\x00,What is the answer to life?')
    environ, length, consumed = parse(spec)
    assert environ["REQUEST_URI"] == "/deepthought" and length == 27
    assert spec[consumed:] == b"What is the answer to life?"


def test_every_strict_prefix_of_a_valid_head_needs_more_data():
    head = scgi_head(GOOD)
    for end in range(len(head)):
        assert parse(head[:end]) is None, head[:end]


@pytest.mark.parametrize("prefix", [b"+5:", b" 5:", b"5 :", b"-1:", b"0x10:", b"\xd9\xa3:",
                                    b"1e3:", b"5.0:"])
def test_length_must_be_ascii_digits(prefix):
    with pytest.raises(ProtocolError, match="not ASCII digits"):
        parse(prefix + b"x" * 2000 + b",")


def test_length_must_not_have_a_leading_zero():
    with pytest.raises(ProtocolError, match="leading zero"):
        parse(b"05:" + b"x" * 5 + b",")
    with pytest.raises(ProtocolError, match="leading zero"):
        parse(b"00")  # refused before the ':' arrives


@pytest.mark.parametrize("zeros", [1, 10, 30])
def test_leading_zeros_are_a_400_however_many_come_before_the_colon(zeros):
    data = b"0" * zeros + scgi_head([("CONTENT_LENGTH", "0"), ("SCGI", "1")])
    for end in (len(data), zeros + 2):  # whole, and with the ':' not yet in view
        with pytest.raises(ProtocolError, match="leading zero") as info:
            parse(data[:end])
        assert info.value.status == 400


def test_empty_length_is_refused():
    with pytest.raises(ProtocolError, match="empty"):
        parse(b":x,")


def test_garbage_is_refused_from_its_first_byte():
    with pytest.raises(ProtocolError, match="not ASCII digits"):
        parse(b"G")


def test_length_prefix_longer_than_the_limit_allows_is_refused_before_the_colon():
    # 64 KiB max: 5 digits at most, so a sixth digit is enough to refuse.
    with pytest.raises(ProtocolError) as info:
        parse(b"999999", max_header_size=65536)
    assert info.value.status == 431


def test_stated_length_above_the_limit_is_refused_before_the_header_arrives():
    with pytest.raises(ProtocolError, match="exceeds the maximum") as info:
        parse(b"70000:", max_header_size=65536)
    assert info.value.status == 431


def test_netstring_must_end_with_a_comma():
    head = scgi_head(GOOD)
    with pytest.raises(ProtocolError, match="not followed by ','"):
        parse(head[:-1] + b";")


def test_first_header_must_be_content_length():
    with pytest.raises(ProtocolError, match="first header must be CONTENT_LENGTH"):
        parse(scgi_head([("SCGI", "1"), ("CONTENT_LENGTH", "0")]))


def test_missing_content_length_is_refused():
    with pytest.raises(ProtocolError, match="CONTENT_LENGTH"):
        parse(scgi_head([("SCGI", "1")]))


@pytest.mark.parametrize("value", ["", "+5", "-5", "05", "5 ", " 5", "1e3", "\xb2", "0x1",
                                   "\xd9\xa3"])
def test_content_length_must_be_plain_ascii_digits(value):
    with pytest.raises(ProtocolError, match="CONTENT_LENGTH"):
        parse(scgi_head([("CONTENT_LENGTH", value), ("SCGI", "1")]))


def test_content_length_zero_is_fine():
    assert parse(scgi_head([("CONTENT_LENGTH", "0"), ("SCGI", "1")]))[1] == 0


def test_scgi_header_must_be_present():
    with pytest.raises(ProtocolError, match="missing SCGI header"):
        parse(scgi_head([("CONTENT_LENGTH", "0"), ("X", "y")]))


def test_scgi_header_must_be_one():
    with pytest.raises(ProtocolError, match="SCGI header must be '1'"):
        parse(scgi_head([("CONTENT_LENGTH", "0"), ("SCGI", "2")]))


def test_empty_header_name_is_refused():
    with pytest.raises(ProtocolError, match="empty name"):
        parse(scgi_head([("CONTENT_LENGTH", "0"), ("SCGI", "1"), ("", "x")]))


@pytest.mark.parametrize("block", [
    b"CONTENT_LENGTH\x000\x00SCGI\x001",          # last value not NUL-terminated
    b"CONTENT_LENGTH\x000\x00SCGI\x00",           # a name without a value
    b"",                                          # nothing at all
])
def test_header_block_must_be_nul_terminated_pairs(block):
    with pytest.raises(ProtocolError):
        parse(netstring(block))


def test_repeated_cookie_is_joined_with_semicolons():
    environ = parse(scgi_head(GOOD + [("HTTP_COOKIE", "a=1"), ("HTTP_COOKIE", "b=2")]))[0]
    assert environ["HTTP_COOKIE"] == "a=1; b=2"


def test_other_repeated_http_headers_are_joined_with_commas():
    environ = parse(scgi_head(GOOD + [("HTTP_ACCEPT", "a"), ("HTTP_ACCEPT", "b"),
                                      ("HTTP_ACCEPT", "c")]))[0]
    assert environ["HTTP_ACCEPT"] == "a, b, c"


@pytest.mark.parametrize("name", ["REQUEST_METHOD", "SCGI", "CONTENT_LENGTH", "PATH_INFO"])
def test_repeated_non_http_variable_is_refused(name):
    with pytest.raises(ProtocolError, match=f"duplicate header '{name}'"):
        parse(scgi_head(GOOD + [(name, "once"), (name, "again")]))


def test_names_and_values_are_decoded_as_latin1():
    environ = parse(netstring(b"CONTENT_LENGTH\x000\x00SCGI\x001\x00X\x00\xff\xe9\x00"))[0]
    assert environ["X"] == "\xff\xe9"


# --- the incremental parser -----------------------------------------------------------------

def events(parser):
    out = []
    while (event := parser.next_event()) is not NEED_DATA:
        out.append(event)
        if isinstance(event, EndOfMessage):
            break
    return out


def test_request_fed_one_byte_at_a_time_gives_head_body_and_end():
    data = encode_request({"REQUEST_METHOD": "PUT"}, 5) + b"hello"
    parser = RequestParser()
    seen = []
    for i in range(len(data)):
        parser.receive_data(data[i:i + 1])
        seen += events(parser)
    assert isinstance(seen[0], Request) and seen[0].content_length == 5
    assert b"".join(e.data for e in seen if isinstance(e, Body)) == b"hello"
    assert isinstance(seen[-1], EndOfMessage)
    assert parser.next_event() is NEED_DATA


def test_body_shorter_than_announced_is_an_error_when_the_peer_closes():
    parser = RequestParser()
    parser.receive_data(encode_request({}, 10) + b"short")
    events(parser)
    parser.receive_data(b"")
    with pytest.raises(ProtocolError, match="5 body bytes missing"):
        parser.next_event()


def test_close_before_anything_and_in_the_middle_of_the_head():
    parser = RequestParser()
    parser.receive_data(b"")
    with pytest.raises(ProtocolError, match="before a request was sent"):
        parser.next_event()
    parser = RequestParser()
    parser.receive_data(b"12:CONT")
    parser.receive_data(b"")
    with pytest.raises(ProtocolError, match="before the header was complete"):
        parser.next_event()


def test_body_above_the_limit_is_refused_with_413():
    parser = RequestParser(max_body_size=100)
    parser.receive_data(encode_request({}, 101))
    with pytest.raises(ProtocolError) as info:
        parser.next_event()
    assert info.value.status == 413


def test_bytes_past_the_body_are_never_given_out():
    parser = RequestParser()
    parser.receive_data(encode_request({}, 3) + b"abcEXTRA")
    body = b"".join(e.data for e in events(parser) if isinstance(e, Body))
    assert body == b"abc"


# --- encoding ---------------------------------------------------------------------------------

def test_encode_puts_content_length_first_and_adds_scgi():
    data = encode_request({"SCGI": "9", "CONTENT_LENGTH": "99", "A": "b"}, 7)
    assert data.startswith(b"%d:CONTENT_LENGTH\x007\x00SCGI\x001\x00A\x00b\x00," % (
        len(b"CONTENT_LENGTH\x007\x00SCGI\x001\x00A\x00b\x00")))


@pytest.mark.parametrize("environ", [{"": "x"}, {"A\0B": "x"}, {"A": "x\0y"}, {"A": "\u20ac"}])
def test_encode_refuses_what_scgi_cannot_carry(environ):
    with pytest.raises(LocalProtocolError):
        encode_request(environ, 0)


def test_encode_refuses_a_negative_length():
    with pytest.raises(LocalProtocolError, match="negative"):
        encode_request({}, -1)
