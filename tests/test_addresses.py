"""Addresses as operators write them, one parser for the server and the client."""

import socket

import pytest

from scgikit.addresses import Address, AddressError, parse_address

pytestmark = pytest.mark.one_path(reason="addresses are parsed by Python only")


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:4000", Address(host="127.0.0.1", port=4000)),
    ("localhost:8080", Address(host="localhost", port=8080)),
    ("localhost", Address(host="localhost", port=4000)),
    ("4001", Address(host="127.0.0.1", port=4001)),
    (":4002", Address(host="127.0.0.1", port=4002)),
    ("[::1]:4000", Address(host="::1", port=4000)),
    ("[::1]", Address(host="::1", port=4000)),
    ("unix:/run/app.sock", Address(path="/run/app.sock")),
    ("unix:///run/app.sock", Address(path="/run/app.sock")),
    ("fd://3", Address(fd=3)),
])
def test_address_forms(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("path", ["/tmp/app.sock", "./app.sock", "../run/app.sock",
                                  "/run/odd:name.sock"])
def test_a_path_is_a_unix_socket_as_uwsgi_takes_it(path):
    assert parse_address(path) == Address(path=path)
    assert str(parse_address(path)) == f"unix:{path}"


def test_an_empty_host_means_loopback_never_all_interfaces():
    assert parse_address(":80").host == "127.0.0.1"


def test_tuples_and_addresses_pass_through():
    assert parse_address(("127.0.0.1", 9000)) == Address(host="127.0.0.1", port=9000)
    address = Address(path="/x")
    assert parse_address(address) is address


@pytest.mark.parametrize(("text", "message"), [
    ("::1:4000", "brackets"),
    ("127.0.0.1:70000", "port must be a number"),
    ("127.0.0.1:abc", "port must be a number"),
    ("127.0.0.1:-1", "port must be a number"),
    ("unix:", "path is empty"),
    ("fd://x", "descriptor number"),
    ("[::1:4000", "closing ']'"),
    ("[::1]4000", "expected ':PORT'"),
    ("", "non-empty"),
])
def test_bad_addresses_say_what_is_wrong(text, message):
    with pytest.raises(AddressError, match=message):
        parse_address(text)


def test_tuple_without_port_is_refused():
    with pytest.raises(AddressError, match="needs a host and a port"):
        parse_address(("127.0.0.1",))


@pytest.mark.parametrize("text", ["127.0.0.1:4000", "[::1]:9", "unix:/a/b.sock", "fd://7"])
def test_str_round_trips(text):
    assert str(parse_address(text)) == text


def test_family_and_sockaddr():
    assert parse_address("[::1]:5").family == socket.AF_INET6
    assert parse_address("1.2.3.4:5").family == socket.AF_INET
    assert parse_address("unix:/s").family == socket.AF_UNIX
    assert parse_address("1.2.3.4:5").sockaddr == ("1.2.3.4", 5)
    assert parse_address("unix:/s").sockaddr == "/s"
    with pytest.raises(AddressError):
        parse_address("fd://3").sockaddr  # noqa: B018 - the property raises
