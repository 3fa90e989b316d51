"""The master process: it binds the listeners, forks the workers and keeps them going;
with ``--session-affinity`` it also routes each request to its session's worker
(``sessions.py``)."""
