"""Benchmarks (not tests): scenarios that print a markdown table and write JSON.

Run ``python -m bench`` (all, ~11 minutes on 2 cores), ``python -m bench --quick`` (a ~2-minute
smoke run) or ``python -m bench e2e concurrency --platform slack`` (some); ``--json FILE`` writes
the raw results.  The bot runs as a real ``python -m bot serve`` process against the local fakes;
everything talks only to 127.0.0.1.  Results and method: ``docs/benchmarks.md``.
"""
