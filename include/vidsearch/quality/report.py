"""Gate results: the typed record of a validation, its one-line summary, `enforce`, and the JSON and
Markdown reports stored next to the data."""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vidsearch.errors import QualityGateError
from vidsearch.quality.suites import SUITES
from vidsearch.stores import storage

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger(__name__)


# In the one-line summary: how many unexpected values / row ids to show per expectation.
_SUMMARY_VALUES = 5


class FailedExpectation(BaseModel):
    """One expectation that did not hold."""

    model_config = ConfigDict(extra="forbid")

    expectation: str = Field(description="GX expectation type, e.g. expect_column_values_to_be_between.")
    column: str | None = Field(None, description="Column checked (A,B for pair expectations).")
    observed: Any = Field(
        None,
        description="observed_value, or {unexpected_count, partial_unexpected_list, rows} for row-wise "
        "expectations, or {error} when the expectation raised.",
    )
    expected: str | None = Field(None, description="What was required, e.g. '> 2' or 'in [0, 1]'.")
    description: str = Field("", description="Short human text, e.g. 'frame timestamps strictly increasing'.")
    damage: str = Field("", description="The damage this expectation catches (from the suite).")


class GateResult(BaseModel):
    """The outcome of one gate on one subject."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    subject: str = Field(description="'video' or a segment name such as 'seg0003'.")
    success: bool
    evaluated: int = Field(description="Number of expectations evaluated.")
    failed: list[FailedExpectation] = Field(default_factory=list)
    gx_result: dict[str, Any] = Field(default_factory=dict, description="GX validation result (JSON dict).")

    def summary(self) -> str:
        """One line for logs and error messages."""
        if self.success:
            return f"{self.stage} gate passed for {self.subject}: {self.evaluated} expectations"
        row_id = (SUITES[self.stage].row_id if self.stage in SUITES else None) or "row"
        parts = [_describe_failure(f, row_id) for f in self.failed] or ["validation failed"]
        return f"{self.stage} gate failed for {self.subject}: " + "; ".join(parts)


def jsonable(value: Any) -> Any:
    """Strict-JSON-safe copy: numpy scalars to Python, tuples/sets to lists, NaN/inf to strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [jsonable(v) for v in sorted(value, key=str)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    return str(value)


def result_order(result: dict[str, Any]) -> int:
    meta = (result.get("expectation_config") or {}).get("meta") or {}
    order = meta.get("order")
    return order if isinstance(order, int) else 1_000_000


def _exception_message(info: Any) -> str | None:
    """GX reports a raised expectation either flat or keyed by metric id."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "expectation raised")
    for nested in info.values():
        message = _exception_message(nested) if isinstance(nested, dict) else None
        if message:
            return message
    return None


def _column(kwargs: dict[str, Any]) -> str | None:
    if kwargs.get("column") is not None:
        return str(kwargs["column"])
    if kwargs.get("column_A") is not None:
        return f"{kwargs['column_A']},{kwargs.get('column_B')}"
    return None


def _observed(result: dict[str, Any], row_id: str | None) -> Any:
    message = _exception_message(result.get("exception_info"))
    if message:
        return {"error": message}
    res = result.get("result") or {}
    if "observed_value" in res:
        return res["observed_value"]
    if "unexpected_count" in res:
        observed: dict[str, Any] = {
            "unexpected_count": res.get("unexpected_count"),
            "partial_unexpected_list": res.get("partial_unexpected_list") or [],
        }
        index_list = (res.get("partial_unexpected_index_list") or []) if row_id else []
        rows = [r.get(row_id) for r in index_list if isinstance(r, dict)]
        if rows:
            observed["rows"] = rows
        return observed
    return None


def _bound(value: Any) -> str:
    return _short(value, compact=True) if value is not None else ""


def _expected(kwargs: dict[str, Any], expectation: str) -> str | None:
    """Human form of what the expectation required, from its resolved kwargs."""
    if "value_set" in kwargs:
        return f"in {_bound(kwargs['value_set'])}"
    if "regex" in kwargs:
        return f"matches {kwargs['regex']}"
    if "strictly" in kwargs and "increasing" in expectation:
        return "strictly increasing" if kwargs.get("strictly") else "increasing"
    if expectation.endswith("to_be_null"):
        return "null"
    if expectation.endswith("to_not_be_null"):
        return "not null"
    if expectation.endswith("to_be_unique"):
        return "unique"
    if "column_A" in kwargs:
        op = ">=" if kwargs.get("or_equal") else ">"
        if "greater_than" in expectation:
            return f"{kwargs['column_A']} {op} {kwargs.get('column_B')}"
        return f"{kwargs['column_A']} == {kwargs.get('column_B')}"
    if "value" in kwargs:
        return f"== {_bound(kwargs['value'])}"
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    if lo is None and hi is None:
        return None
    if lo is not None and hi is not None and lo == hi and not (kwargs.get("strict_min") or kwargs.get("strict_max")):
        return f"== {_bound(lo)}"
    if hi is None:
        return f"{'>' if kwargs.get('strict_min') else '>='} {_bound(lo)}"
    if lo is None:
        return f"{'<' if kwargs.get('strict_max') else '<='} {_bound(hi)}"
    left = "(" if kwargs.get("strict_min") else "["
    right = ")" if kwargs.get("strict_max") else "]"
    return f"in {left}{_bound(lo)}, {_bound(hi)}{right}"


def failed_expectation(result: dict[str, Any], row_id: str | None) -> FailedExpectation:
    config = result.get("expectation_config") or {}
    kwargs = config.get("kwargs") or {}
    expectation = str(config.get("type") or "unknown_expectation")
    return FailedExpectation(
        expectation=expectation,
        column=_column(kwargs),
        observed=_observed(result, row_id),
        expected=_expected(kwargs, expectation),
        description=str(config.get("description") or ""),
        damage=str((config.get("meta") or {}).get("damage") or ""),
    )


def _short(value: Any, limit: int = _SUMMARY_VALUES, *, compact: bool = False) -> str:
    """Short text of a value; floats keep a ".0" (as observed) unless `compact` (bounds GX made float)."""
    if isinstance(value, (list, tuple)):
        items = [repr(_short(v)) if isinstance(v, str) else _short(v, compact=compact) for v in list(value)[:limit]]
        more = f", ... {len(value) - limit} more" if len(value) > limit else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(value, float):
        text = f"{value:.6g}"
        return text + ".0" if not compact and text.lstrip("-").isdigit() else text
    if isinstance(value, str):
        return value if len(value) <= 60 else value[:57] + "..."
    return str(value)


def _format_observed(observed: Any, row_id: str = "row") -> str:
    if isinstance(observed, dict) and "error" in observed:
        return f"error: {_short(str(observed['error']))}"
    if isinstance(observed, dict) and "unexpected_count" in observed:
        if not observed["unexpected_count"]:
            return "0 unexpected"
        text = f"{observed['unexpected_count']} unexpected {_short(observed.get('partial_unexpected_list') or [])}"
        if observed.get("rows"):
            text += f" at {row_id} {_short(observed['rows'])}"
        return text
    return _short(observed)


def _describe_failure(f: FailedExpectation, row_id: str = "row") -> str:
    head = f"{f.expectation}({f.column})" if f.column else f.expectation
    tail = ": ".join(part for part in (f"expected {f.expected}" if f.expected else "", f.description) if part)
    return f"{head} observed {_format_observed(f.observed, row_id)}" + (f" ({tail})" if tail else "")


def enforce(result: GateResult) -> GateResult:
    """`result` when it passed; otherwise raise `QualityGateError(result.summary())` (the result is on
    the exception as `gate_result`)."""
    if result.success:
        return result
    exc = QualityGateError(result.summary())
    exc.gate_result = result  # type: ignore[attr-defined]
    raise exc


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def _report_name(result: GateResult) -> str:
    return _UNSAFE_NAME.sub("_", f"{result.stage}-{result.subject}").strip("._") or "gate"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def report_markdown(result: GateResult) -> str:
    """The readable report: stage, subject, PASS/FAIL and every expectation with its outcome."""
    outcomes = result.gx_result.get("results") or []
    stats = result.gx_result.get("statistics") or {}
    passed = stats.get("successful_expectations", sum(1 for r in outcomes if r.get("success")))
    row_id = SUITES[result.stage].row_id if result.stage in SUITES else None
    lines = [
        f"# Quality gate: {result.stage} / {result.subject}",
        "",
        f"- **Stage:** {result.stage}",
        f"- **Subject:** {result.subject}",
        f"- **Result:** {'PASS' if result.success else 'FAIL'} ({passed} of {result.evaluated} expectations met)",
        f"- **Great Expectations:** {(result.gx_result.get('meta') or {}).get('great_expectations_version', '?')}",
        "",
        "| # | Result | Expectation | Column | Description | Expected | Observed |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, outcome in enumerate(outcomes, start=1):
        config = outcome.get("expectation_config") or {}
        kwargs = config.get("kwargs") or {}
        expectation = str(config.get("type") or "")
        lines.append(
            "| "
            + " | ".join(
                _cell(v)
                for v in (
                    n,
                    "PASS" if outcome.get("success") else "FAIL",
                    expectation,
                    _column(kwargs) or "",
                    config.get("description") or "",
                    _expected(kwargs, expectation) or "",
                    _format_observed(_observed(outcome, row_id), row_id or "row"),
                )
            )
            + " |"
        )
    if not result.success:
        lines += ["", "## Summary", "", result.summary()]
    return "\n".join(lines) + "\n"


def write_report(result: GateResult, uri_prefix: str) -> str:
    """Write `{prefix}/{stage}-{subject}.json` (the GateResult) and `.md` (readable); return the .md URI."""
    name = _report_name(result)
    storage.write_bytes(storage.join(uri_prefix, f"{name}.json"), result.model_dump_json(indent=1).encode())
    md_uri = storage.join(uri_prefix, f"{name}.md")
    storage.write_bytes(md_uri, report_markdown(result).encode())
    return md_uri
