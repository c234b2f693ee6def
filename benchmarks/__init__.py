"""Benchmarks of tinydl against PyTorch CPU, run as ``python -m benchmarks <name>``.

Each benchmark prints a table with PyTorch beside tinydl, measured in the same run with the same
threads, and appends it to ``benchmarks/RESULTS.md`` with ``--write``.
"""
