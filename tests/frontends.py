"""Real nginx, Apache and lighttpd for the tests, each in a temporary folder on loopback.

Each front end runs the snippet ``scgikit config`` prints, wrapped in a harness
that keeps every file (pid, logs, temporary bodies) inside the folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from servers import free_port, wait_until

from scgikit.frontends import render

BINARIES = {"nginx": "/usr/sbin/nginx", "apache": "/usr/sbin/apache2",
            "lighttpd": "/usr/sbin/lighttpd"}
APACHE_MODULES = Path("/usr/lib/apache2/modules")


def available(name: str) -> str | None:
    """None if the front end can run here, else the reason it cannot."""
    binary = BINARIES[name]
    if not Path(binary).exists():
        return f"{binary} is not installed (Debian package {name}; scripts/install-test-deps)"
    return None


def _nginx_harness(folder: Path, port: int, snippet: str, host: str = "127.0.0.1") -> list[str]:
    shutil.copy("/etc/nginx/scgi_params", folder / "scgi_params")
    temp = "".join(f"    {kind}_temp_path {folder}/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (folder / "nginx.conf").write_text(
        f"user root;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log info;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n    access_log off;\n{temp}"
        + snippet.replace("listen 80;", f"listen {host}:{port};") + "}\n")
    return [BINARIES["nginx"], "-p", str(folder), "-c", str(folder / "nginx.conf"),
            "-g", "daemon off; master_process on;"]


def _apache_harness(folder: Path, port: int, snippet: str) -> list[str]:
    modules = "".join(f"LoadModule {name}_module {APACHE_MODULES}/mod_{name}.so\n"
                      for name in ("mpm_event", "authz_core", "proxy", "proxy_scgi", "headers"))
    (folder / "httpd.conf").write_text(
        f"ServerRoot {folder}\nListen 127.0.0.1:{port}\n{modules}"
        f"PidFile {folder}/httpd.pid\nErrorLog {folder}/error.log\nLogLevel info\n"
        f"DefaultRuntimeDir {folder}\nMutex file:{folder} default\n"
        "User www-data\nGroup www-data\nServerName localhost\n"
        "LimitRequestBody 0\nTimeout 60\n"
        + snippet.replace("<VirtualHost *:80>", f"<VirtualHost *:{port}>"))
    return [BINARIES["apache"], "-f", str(folder / "httpd.conf"), "-DFOREGROUND"]


def _lighttpd_harness(folder: Path, port: int, snippet: str) -> list[str]:
    (folder / "www").mkdir(exist_ok=True)
    (folder / "lighttpd.conf").write_text(
        f'server.document-root = "{folder}/www"\nserver.bind = "127.0.0.1"\n'
        f'server.port = {port}\nserver.pid-file = "{folder}/lighttpd.pid"\n'
        f'server.errorlog = "{folder}/error.log"\nserver.upload-dirs = ( "{folder}" )\n'
        'server.max-request-size = 0\n' + snippet)
    return [BINARIES["lighttpd"], "-D", "-f", str(folder / "lighttpd.conf")]


HARNESSES = {"nginx": _nginx_harness, "apache": _apache_harness, "lighttpd": _lighttpd_harness}


def _check_argv(name: str, folder: Path) -> list[str]:
    """The front end's own syntax check of the harness in ``folder``, with what it read."""
    if name == "nginx":  # -T: test, then dump the files it read
        return [BINARIES[name], "-T", "-p", str(folder), "-c", str(folder / "nginx.conf")]
    if name == "apache":  # the virtual hosts as parsed: address, port and name
        return [BINARIES[name], "-t", "-D", "DUMP_VHOSTS", "-f", str(folder / "httpd.conf")]
    return [BINARIES[name], "-tt", "-f", str(folder / "lighttpd.conf")]


def syntax_check(name: str, snippet: str) -> tuple[bool, str]:
    """Whether the real front end accepts ``snippet`` in its harness, and what it said.

    On success the message holds what the front end read: nginx's dump of its files
    (``nginx -T``), Apache's virtual hosts (``-D DUMP_VHOSTS``), or lighttpd's
    configuration as it parsed it (``lighttpd -p``).
    """
    with tempfile.TemporaryDirectory(prefix=f"scgikit-{name}-check-") as path:
        folder = Path(path)
        HARNESSES[name](folder, 80, snippet)
        runs = [_check_argv(name, folder)]
        if name == "lighttpd":
            runs.append([BINARIES[name], "-p", "-f", str(folder / "lighttpd.conf")])
        said = []
        for argv in runs:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=30)
            said.append((done.stdout + done.stderr).decode(errors="replace"))
            if done.returncode != 0 and not _elsewhere(name, said[-1]):
                return False, "".join(said)
    return True, "".join(said)


def _elsewhere(name: str, said: str) -> bool:
    """nginx -t binds its listen addresses: one that is not this machine's is no error of
    the configuration's (its syntax is ok), only of where the check runs."""
    emergencies = [line for line in said.splitlines() if "[emerg]" in line]
    return name == "nginx" and " syntax is ok" in said and bool(emergencies) and all(
        "bind() to " in line and "(99: Cannot assign requested address)" in line
        for line in emergencies)


class FrontEnd:
    """One front end process on 127.0.0.1:``port``, configured by ``render(...)``."""

    def __init__(self, name: str, folder: Path, bind: list[str], prefix: str = "/",
                 scgi_params: dict[str, str] | None = None, server_name: str | None = None,
                 listen: str | None = None) -> None:
        self.name = name
        self.folder = folder
        self.port = free_port()
        self.snippet = render(name, bind, prefix=prefix, server_name=server_name, listen=listen)
        if scgi_params:  # nginx: variables added to its scgi_params, for an app that needs them
            assert name == "nginx", "scgi_params= is for nginx"
            lines = "".join(f'        scgi_param {key} "{value}";\n'
                            for key, value in scgi_params.items())
            self.snippet = self.snippet.replace("include scgi_params;\n",
                                                f"include scgi_params;\n{lines}", 1)
        self.argv = HARNESSES[name](folder, self.port, self.snippet)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FrontEnd:
        os.chmod(self.folder, 0o755)  # Apache's children run as www-data
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        wait_until(lambda: self.proc.poll() is not None or self._accepting(), timeout=20)
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                               f"{self.proc.stderr.read().decode(errors='replace')}\n"
                               f"{self.error_log}\nconfig:\n{self.snippet}")
        return self

    def _accepting(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    @property
    def error_log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(20)
        if self.proc.stderr:
            self.proc.stderr.close()
