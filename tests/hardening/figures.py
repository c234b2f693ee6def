"""Example counts per hypothesis profile, and the figures the hardening tests stand for.

The global profiles (tests/conftest.py) run ``dev`` 10, ``ci`` 30 and ``thorough`` 1000
examples; the hardening tests ask for more where the issue does. ``pytest tests/hardening``
prints the figures at the end of the run (tests/hardening/conftest.py); so does

    python tests/hardening/figures.py
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

from hypothesis import settings

OP_TABLE_EXAMPLES = {"dev": 10, "ci": 50, "thorough": 1000}
FUZZ_EXAMPLES = {"dev": 100, "ci": 1000, "thorough": 10_000}

# How many hypothesis examples each kind of test ran in this session (the summary prints them).
RAN: collections.Counter = collections.Counter()


def profile() -> str:
    return settings.get_current_profile_name()


def examples(table: dict) -> int:
    """The count for the current profile; an unknown profile keeps its own count."""
    return table.get(profile(), settings().max_examples)


def profile_settings(table: dict) -> settings:
    """The current profile's settings (derandomize, deadline, ...) with ``table``'s count."""
    return settings(settings(), max_examples=examples(table))


def static_figures() -> list[tuple[str, str]]:
    """(what, figure) pairs read from the tables themselves."""
    from tests.hardening import op_table
    from tests.hardening import test_checkpoint_attack as ckpt
    from tests.hardening import test_idx_attack as idx
    from tests.hardening import test_stability as stab
    from tests.hardening.test_op_table import public_ops

    public = public_ops()
    differentiable = public - set(op_table.NOT_DIFFERENTIABLE)
    per = ", ".join(f"{k} {v}" for k, v in OP_TABLE_EXAMPLES.items())
    fuzz = ", ".join(f"{k} {v}" for k, v in FUZZ_EXAMPLES.items())
    excluded = "; ".join(f"{k}: {v}" for k, v in sorted(op_table.NOT_DIFFERENTIABLE.items()))
    return [
        ("public ops in tinydl.functional", str(len(public))),
        (
            "differentiable ops covered by the op table",
            f"{len(op_table.COVERED & differentiable)} of {len(differentiable)} "
            f"({len(op_table.ENTRIES)} entries with variants)",
        ),
        ("ops excluded (no gradient)", excluded),
        ("op table examples per entry and profile", per),
        ("stability value sets (op x input x dtype)", str(stab.CASE_COUNT)),
        ("malformed checkpoint files", str(ckpt.MALFORMED_COUNT)),
        ("checkpoint fuzz examples per profile", fuzz),
        ("malformed IDX / MNIST files", str(idx.MALFORMED_COUNT)),
        ("IDX fuzz examples per profile", fuzz),
    ]


def lines(ran: collections.Counter | None = None) -> list[str]:
    out = [f"hardening figures (hypothesis profile {profile()!r}):"]
    try:
        out += [f"  {what}: {figure}" for what, figure in static_figures()]
    except Exception as exc:  # noqa: BLE001 - a summary must never break the test run
        out.append(f"  (figures unavailable: {type(exc).__name__}: {exc})")
    for what, n in sorted((ran or {}).items()):
        out.append(f"  examples run this session, {what}: {n}")
    return out


if __name__ == "__main__":  # python tests/hardening/figures.py, or python -m tests.hardening.figures
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
    import tests.conftest  # noqa: F401 - registers and loads the hypothesis profiles

    print("\n".join(lines()))
