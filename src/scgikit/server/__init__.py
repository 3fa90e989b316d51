"""The pre-forking server: sockets, the master (arbiter) and its workers."""
