"""GX plumbing: one ephemeral context per process, one datasource, one asset and suite per stage.

GX is imported lazily (it takes seconds; DAG parsing must not pay for it); a forked child inherits the
parent's context (`warm_up` in a preloading parent).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vidsearch.quality.config import STAGES, QualityConfig
from vidsearch.quality.report import GateResult, failed_expectation, jsonable, result_order
from vidsearch.quality.suites import SUITES

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)


_LOCK = threading.RLock()
_STATE: dict[str, Any] = {}
# Seconds each process spent importing GX and building its context and suites (a forked child that
# inherited them spent none).
_SETUP_SECONDS: dict[int, float] = {}


# GX logs at INFO while it imports (`_docs_decorators`: "Skipping registering function ..." for
# hundreds of functions) and while it builds a context: noise in every task log, none of it ours.
# Its loggers are set to WARNING, so GX's warnings and errors still show, and our own lines stay.
_QUIET_LOGGERS = ("great_expectations",)


def quiet_gx_logging() -> None:
    """GX's INFO chatter off (its WARNING and above kept); called before GX is first imported."""
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def _context() -> dict[str, Any]:
    """The process's GX objects, built on first use.

    A forked child inherits them (the ephemeral context holds only in-memory stores: no threads, files
    or connections), which is what `warm_up` in a preloading parent is for.
    """
    with _LOCK:
        if "context" not in _STATE:
            started = time.perf_counter()
            quiet_gx_logging()
            import great_expectations as gx
            from great_expectations.data_context.types.base import (
                DataContextConfig,
                InMemoryStoreBackendDefaults,
                ProgressBarsConfig,
            )

            context = gx.get_context(
                mode="ephemeral",
                project_config=DataContextConfig(
                    store_backend_defaults=InMemoryStoreBackendDefaults(),
                    analytics_enabled=False,
                    progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
                ),
            )
            datasource = context.data_sources.add_pandas("vidsearch")
            _STATE.update(gx=gx, context=context, datasource=datasource, stages={})
            _SETUP_SECONDS[os.getpid()] = _SETUP_SECONDS.get(os.getpid(), 0.0) + time.perf_counter() - started
            log.debug("GX %s context ready in %.2f s", gx.__version__, time.perf_counter() - started)
        return _STATE


def warm_up() -> None:
    """Import GX and build the context and every stage's suite now (a preloading parent process)."""
    for stage in SUITES:
        _stage(stage)


def setup_seconds() -> float:
    """Seconds this process (not a parent it was forked from) spent importing GX and building suites."""
    return _SETUP_SECONDS.get(os.getpid(), 0.0)


def _stage(stage: str) -> tuple[Any, Any]:
    """(batch definition, expectation suite) of `stage`, built once per process."""
    state = _context()
    with _LOCK:
        if stage not in state["stages"]:
            started = time.perf_counter()
            spec = SUITES[stage]
            gx = state["gx"]
            descriptions = [c.description for c in spec.checks]
            if len(set(descriptions)) != len(descriptions):
                raise RuntimeError(f"suite {stage}: expectation descriptions must be unique")
            suite = gx.ExpectationSuite(name=f"vidsearch.{stage}")
            for order, check in enumerate(spec.checks):
                cls = getattr(gx.expectations, check.expectation)
                suite.add_expectation(
                    cls(**check.kwargs, description=check.description, meta={"order": order, "damage": check.damage})
                )
            suite = state["context"].suites.add(suite)
            asset = state["datasource"].add_dataframe_asset(name=stage)
            batch_definition = asset.add_batch_definition_whole_dataframe("whole")
            state["stages"][stage] = (batch_definition, suite)
            _SETUP_SECONDS[os.getpid()] = _SETUP_SECONDS.get(os.getpid(), 0.0) + time.perf_counter() - started
        return state["stages"][stage]


def expectation_suite(stage: str) -> Any:
    """The GX `ExpectationSuite` of `stage` (for docs and inspection; imports GX)."""
    if stage not in SUITES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    return _stage(stage)[1]


def validate(stage: str, subject: str, df: pd.DataFrame, params: dict[str, Any], cfg: QualityConfig) -> GateResult:
    spec = SUITES[stage]
    started = time.perf_counter()
    batch_definition, suite = _stage(stage)
    result_format: dict[str, Any] = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": cfg.partial_unexpected_count,
    }
    if spec.row_id:
        result_format["unexpected_index_column_names"] = [spec.row_id]
    with _LOCK:  # GX objects are shared by the process; validations are short
        batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
        validation = batch.validate(suite, expectation_parameters=params, result_format=result_format)
    gx_result = jsonable(validation.to_json_dict())
    gx_result["results"] = sorted(gx_result.get("results") or [], key=result_order)
    failed = [failed_expectation(r, spec.row_id) for r in gx_result["results"] if not r.get("success")]
    statistics_ = gx_result.get("statistics") or {}
    gate = GateResult(
        stage=stage,
        subject=subject,
        success=bool(gx_result.get("success")) and not failed,
        evaluated=int(statistics_.get("evaluated_expectations") or len(gx_result["results"])),
        failed=failed,
        gx_result=gx_result,
    )
    log.debug("%s gate on %s: %d rows, %.1f ms", stage, subject, len(df), 1000 * (time.perf_counter() - started))
    return gate


def dataframe(columns: dict[str, tuple[str, Sequence[Any]]]) -> pd.DataFrame:
    """A DataFrame from {name: (dtype, values)}; dtypes hold even with zero rows."""
    import pandas as pd

    return pd.DataFrame({name: pd.Series(list(values), dtype=dtype) for name, (dtype, values) in columns.items()})
