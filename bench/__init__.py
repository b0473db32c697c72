"""Benchmarks of the runtime against hand-written Redis consumers measured in the same run.

Run ``python -m bench.run`` (``--quick`` for the CI smoke test, ``--soak`` for the memory
soak); see ``docs/performance.md``.
"""
