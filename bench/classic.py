"""The classic handler for scgikit: `scgikit serve bench/classic.py:Handler`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apps  # noqa: E402

import scgikit.scgi_server  # noqa: E402


class Handler(scgikit.scgi_server.SCGIHandler):
    def produce(self, env, bodysize, input, output):
        apps.produce(env, bodysize, input, output)
