"""Benchmarks (not tests): scenarios that print a markdown table and write JSON.

Run ``python -m bench`` (all) or ``python -m bench parsing trim`` (some); ``--json FILE``
writes the raw results.  Everything talks only to 127.0.0.1.
"""
