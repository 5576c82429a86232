"""Fixtures for the channel and reprocessing tests; helpers are in channel_helpers.py."""

from __future__ import annotations

import pytest
from channel_helpers import DAGS


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag
