"""The protocol core is sans-I/O: importing it pulls in no sockets, loops or loggers."""

import subprocess
import sys


def test_protocol_module_imports_no_io():
    code = ("import sys, scgikit.protocol; "
            "print(' '.join(m for m in ('socket', 'asyncio', 'selectors', 'logging', 'ssl') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == ""
