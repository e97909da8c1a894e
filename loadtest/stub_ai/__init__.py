"""A stub of the GPU side: one process speaking five image APIs, with latency and faults.

Start it with ``uv run python -m loadtest.stub_ai [--host H] [--port P]``; steer it at run
time through ``/stub/config``, ``/stub/stats`` and ``/stub/reset``.
"""
