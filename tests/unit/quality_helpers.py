"""Helpers shared by the quality gate tests (test modules cannot import conftest)."""

from __future__ import annotations

import pytest
from vidsearch.quality import FailedExpectation, GateResult

BETWEEN = "expect_column_values_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"


def failed(result: GateResult, expectation: str, column: str | None) -> FailedExpectation:
    """The failure of `expectation` on `column`; fails the test (listing what did fail) if absent."""
    for f in result.failed:
        if f.expectation == expectation and f.column == column:
            return f
    pytest.fail(f"no failed {expectation}({column}) in: {result.summary()}")


def failed_columns(result: GateResult) -> set[str | None]:
    return {f.column for f in result.failed}
