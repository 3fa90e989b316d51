"""--allow-from: which TCP peers may connect, decided from the address accept() returns."""

import subprocess
import sys

import pytest
from servers import child_env

from scgikit.allow import AllowList, AllowListError
from scgikit.config import Config, ConfigError


def tcp4(host):
    return (host, 40000)


def tcp6(host):
    return (host, 40000, 0, 0)


def test_single_ipv4_address_permits_only_itself():
    allow = AllowList(["192.0.2.7"])
    assert allow.permits(tcp4("192.0.2.7"))
    assert not allow.permits(tcp4("192.0.2.8"))
    assert not allow.permits(tcp4("127.0.0.1"))


@pytest.mark.parametrize(("host", "permitted"), [
    ("10.0.0.0", True), ("10.1.2.3", True), ("10.255.255.255", True),
    ("9.255.255.255", False), ("11.0.0.0", False), ("110.0.0.1", False),
])
def test_ipv4_cidr_range_permits_its_addresses_only(host, permitted):
    assert AllowList(["10.0.0.0/8"]).permits(tcp4(host)) is permitted


def test_netmask_notation_is_a_range_too():
    allow = AllowList(["192.168.0.0/255.255.0.0"])
    assert allow.permits(tcp4("192.168.40.1"))
    assert not allow.permits(tcp4("192.169.0.1"))


def test_ipv6_address_and_range():
    allow = AllowList(["::1", "fd00::/8"])
    assert allow.permits(tcp6("::1"))
    assert allow.permits(tcp6("fd12:3456::1"))
    assert not allow.permits(tcp6("::2"))
    assert not allow.permits(tcp6("fe80::1"))
    assert not allow.permits(tcp4("127.0.0.1"))  # an IPv6 rule does not admit IPv4 peers


def test_ipv6_peer_with_a_zone_index_is_matched_by_its_address():
    allow = AllowList(["fe80::/10"])
    assert allow.permits(tcp6("fe80::1%eth0"))
    assert not AllowList(["fd00::/8"]).permits(tcp6("fe80::1%eth0"))


def test_ipv4_rule_permits_ipv4_mapped_ipv6_peers():
    # A dual-stack IPv6 listener reports IPv4 clients as ::ffff:a.b.c.d.
    allow = AllowList(["10.0.0.0/8"])
    assert allow.permits(tcp6("::ffff:10.0.0.1"))
    assert allow.permits(tcp6("::ffff:a00:1"))  # the same address, written in hex
    assert not allow.permits(tcp6("::ffff:11.0.0.1"))
    assert not allow.permits(tcp6("::10.0.0.1"))  # IPv4-compatible, not mapped
    assert not allow.permits(tcp6("64:ff9b::10.0.0.1"))  # NAT64, not mapped


def test_mapped_ipv6_rule_permits_the_ipv4_peers_it_maps():
    allow = AllowList(["::ffff:192.168.0.0/112"])
    assert allow.permits(tcp4("192.168.3.4"))
    assert allow.permits(tcp6("::ffff:192.168.3.4"))
    assert not allow.permits(tcp4("192.169.0.1"))


def test_every_rule_counts_whatever_its_prefix_length():
    allow = AllowList(["127.0.0.1", "10.0.0.0/8", "172.16.0.0/12", "192.168.1.0/24",
                       "192.168.2.0/24", "0.0.0.0/32"])
    for host in ("127.0.0.1", "10.9.9.9", "172.31.255.255", "192.168.1.200", "192.168.2.1",
                 "0.0.0.0"):
        assert allow.permits(tcp4(host)), host
    for host in ("127.0.0.2", "172.32.0.0", "192.168.3.1", "0.0.0.1"):
        assert not allow.permits(tcp4(host)), host


def test_zero_prefix_permits_every_address_of_its_family():
    assert AllowList(["0.0.0.0/0"]).permits(tcp4("203.0.113.9"))
    assert AllowList(["0.0.0.0/0"]).permits(tcp6("::ffff:203.0.113.9"))
    assert not AllowList(["0.0.0.0/0"]).permits(tcp6("2001:db8::1"))
    assert AllowList(["::/0"]).permits(tcp6("2001:db8::1"))


@pytest.mark.parametrize("peer", ["", b"", "/run/app.sock", b"\0abstract", None])
def test_unix_socket_peers_are_always_permitted(peer):
    assert AllowList(["10.0.0.0/8"]).permits(peer)
    assert AllowList([]).permits(peer)


def test_empty_list_permits_no_tcp_peer():
    assert not AllowList([]).permits(tcp4("127.0.0.1"))
    assert not AllowList(()).permits(tcp6("::1"))


@pytest.mark.parametrize("peer", [("not-an-address", 1), ("10.0.0.1\0", 1), ("", 1), (),
                                  (None, 1), (b"10.0.0.1", 1), ("10.0.0", 1), 42])
def test_peer_that_is_not_an_address_is_refused(peer):
    assert not AllowList(["0.0.0.0/0", "::/0"]).permits(peer)


@pytest.mark.parametrize(("entry", "message"), [
    ("nonsense", r"'nonsense' is not an IP address or a CIDR range such as 10\.0\.0\.0/8"),
    ("localhost", r"'localhost' is not an IP address"),
    ("", r"'' is not an IP address"),
    ("10.0.0.0/33", r"'10.0.0.0/33' is not an IP address or a CIDR range"),
    ("256.0.0.1", r"'256.0.0.1' is not an IP address"),
    ("10.0.0.1/8", r"'10.0.0.1/8' has host bits set: write 10\.0\.0\.0/8 for the whole range, "
                   r"or 10\.0\.0\.1 for that one address"),
    ("fd00::1/8", r"'fd00::1/8' has host bits set: write fd00::/8"),
    ("10.0.0.0/8,192.168.0.0/16", r"give one network per entry"),
    ("fe80::1%eth0", r"'fe80::1%eth0': a zone index"),
])
def test_bad_entry_is_an_allow_list_error_naming_it(entry, message):
    with pytest.raises(AllowListError, match=message):
        AllowList(["127.0.0.1", entry])


def test_one_string_instead_of_a_list_is_refused():
    with pytest.raises(AllowListError, match="not the single string '10.0.0.0/8'"):
        AllowList("10.0.0.0/8")


def test_entries_are_kept_parsed_and_shown():
    allow = AllowList([" 10.0.0.0/8 ", "::1"])
    assert [str(net) for net in allow.networks] == ["10.0.0.0/8", "::1/128"]
    assert repr(allow) == "AllowList(['10.0.0.0/8', '::1/128'])"


def test_config_validates_allow_from_naming_the_option():
    assert Config(target="a:b", allow_from=("10.0.0.0/8", "::1")).allow_from == (
        "10.0.0.0/8", "::1")
    with pytest.raises(ConfigError, match=r"^--allow-from: '10\.0\.0\.300' is not an IP"):
        Config(target="a:b", allow_from=("10.0.0.300",))


def test_bad_allow_from_on_the_command_line_is_one_clear_line():
    result = subprocess.run(
        [sys.executable, "-m", "scgikit", "serve", "wsgi_apps:hello", "--allow-from", "10/8"],
        capture_output=True, text=True, timeout=60, env=child_env())
    assert result.returncode == 2
    assert "--allow-from: '10/8' is not an IP address or a CIDR range" in result.stderr
    assert "Traceback" not in result.stderr


def test_allow_module_does_no_io():
    # What it imports: the standard library's ipaddress, and _socket for inet_pton (a text to
    # bytes conversion: no socket is made); nothing of scgikit's beyond itself.
    code = ("import sys, __future__, ipaddress, scgikit; before = set(sys.modules); "
            "import scgikit.allow; print(' '.join(sorted(set(sys.modules) - before)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True, env=child_env())
    assert set(result.stdout.split()) <= {"scgikit.allow", "_socket", "collections.abc"}
