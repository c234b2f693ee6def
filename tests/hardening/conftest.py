"""Prints the hardening figures (ops covered, malformed files, fuzz examples) after a run that
collected tests from this folder."""

from tests.hardening import figures


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_sep("-", "hardening figures")
    for line in figures.lines(figures.RAN):
        terminalreporter.write_line(line)
