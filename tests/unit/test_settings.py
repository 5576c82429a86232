"""`vidsearch.settings.number_from_env`: every numeric setting's one parser."""

from __future__ import annotations

import pytest
from vidsearch.errors import PermanentError
from vidsearch.settings import number_from_env

NAME = "VIDSEARCH_TEST_NUMBER"


@pytest.mark.parametrize("raw", ["", "   "])
def test_unset_or_blank_is_the_default(monkeypatch, raw):
    monkeypatch.setenv(NAME, raw)
    assert number_from_env(NAME, 7, int) == 7


def test_values_are_read_as_their_kind(monkeypatch):
    monkeypatch.setenv(NAME, " 12 ")
    assert number_from_env(NAME, 7, int) == 12
    monkeypatch.setenv(NAME, "2.5")
    assert number_from_env(NAME, 1.0, float, lo=0, hi=3) == 2.5


@pytest.mark.parametrize(
    ("raw", "kind", "options", "says"),
    [
        ("abc", int, {}, "must be an integer, got 'abc'"),
        ("2.5", int, {}, "must be an integer"),
        ("nan", float, {}, "must be a number"),
        ("inf", float, {"unit": "MiB"}, "must be a number of MiB"),
        ("0", int, {"positive": True}, "above 0"),
        ("-1", float, {"positive": True}, "above 0"),
        ("65", int, {"lo": 1, "hi": 64}, "between 1 and 64, got '65'"),
        ("-0.5", float, {"lo": 0, "hi": 10, "unit": "MiB"}, "between 0 and 10 MiB"),
    ],
)
def test_bad_values_name_the_setting_and_the_rule(monkeypatch, raw, kind, options, says):
    monkeypatch.setenv(NAME, raw)
    with pytest.raises(PermanentError, match=NAME) as caught:
        number_from_env(NAME, kind(1), kind, error=PermanentError, **options)
    assert says in str(caught.value)
