"""Cost measurement of attention modules: parameters, FLOPs, latency, peak memory, and scaling with H x W.

The command is ``visattn bench`` (:mod:`.cli`); from Python:

Example:
    >>> from visattn.bench import BenchConfig, run_bench
    >>> report = run_bench(BenchConfig(["se"], channels=32, sizes=[(8, 8)], batch=2, repeat=2, warmup=1,
    ...                                memory=False))
    >>> row = report["results"][0]
    >>> row["key"], row["status"], row["params"]
    ('se', 'ok', 162)
"""

from .runner import BenchConfig, run_bench
from .schema import SCHEMA, validate

__all__ = ["BenchConfig", "run_bench", "SCHEMA", "validate"]
