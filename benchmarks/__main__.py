"""``python -m benchmarks <name> [options]``: run one benchmark; ``--help`` lists them."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "epoch": "benchmarks.epoch",
    "data_pipeline": "benchmarks.data_pipeline",
    "kernels": "benchmarks.kernels",
    "conv_layers": "benchmarks.conv_layers",
    "overhead": "benchmarks.overhead",
    "serve": "benchmarks.serve_load",
    "distributed": "benchmarks.distributed",
    "sequence": "benchmarks.sequence",
}


def _usage() -> str:
    lines = ["usage: python -m benchmarks <name> [options]   (<name> --help for its options)", ""]
    for name, module in BENCHMARKS.items():
        lines.append(f"  {name:<15} {importlib.import_module(module).DESCRIPTION}")
    lines += [
        "",
        "Every benchmark takes --steps, --warmup, --threads and --write (append to "
        "benchmarks/RESULTS.md).",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0].replace("-", "_"), argv[1:]
    if name not in BENCHMARKS:
        print(f"python -m benchmarks: unknown benchmark {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return importlib.import_module(BENCHMARKS[name]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
