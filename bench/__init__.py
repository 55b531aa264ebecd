"""``nox -s bench``: throughput of connect-anyio's servers and clients, next to baselines.

Run it through nox (it installs what it needs); ``python -m bench.run --help``
lists the options. Every server and load generator runs in its own process
on 127.0.0.1; see ``bench/run.py`` for the rows and the targets they carry.
"""
