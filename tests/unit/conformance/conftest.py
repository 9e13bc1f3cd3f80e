"""Prints the conformance corpus summary at the end of a run that included it."""

from __future__ import annotations

import pytest

from tests.unit.conformance.corpus import outcomes, summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if outcomes.cache_info().currsize == 0:
        return  # the corpus did not run (skipped or deselected)
    n, valid, invalid, disagreements = summary()
    terminalreporter.write_line(
        f"conformance corpus: {n} variants, {valid} valid, {invalid} invalid, {disagreements} disagreements"
    )
