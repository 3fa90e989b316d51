"""Run by test_server_asgi.py: an asyncio worker, in this process, gets SIGTERM after its
start (when the master hears "ready") and before its loop runs.  It must stop all the
same: prints "stopped" and exits 0, or is ended by SIGALRM if the signal was lost.

Arguments: the address to serve; the loop is SCGIKIT_LOOP's (asyncio or uvloop).
"""

import array
import os
import signal
import sys

from scgikit.config import Config
from scgikit.master.listeners import open_listeners
from scgikit.workers import make_worker
from scgikit.workers.base import Heartbeat

config = Config(target="asgi_apps:hello", bind=(sys.argv[1],),
                loop=os.environ.get("SCGIKIT_LOOP", "auto"))
listeners = open_listeners(config, {})
slots = memoryview(array.array("d", [0.0])).cast("B").cast("d")
worker = make_worker(config, [listener.sock for listener in listeners], None,
                     Heartbeat(slots, 0), os.getppid())
worker.start()
os.kill(os.getpid(), signal.SIGTERM)
signal.alarm(20)
worker.run()
for listener in listeners:
    listener.close(unlink=True)
print("stopped")
