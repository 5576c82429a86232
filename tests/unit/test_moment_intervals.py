"""The pure parts of the combined transcript query (`vidsearch.search`): closed-interval union and
intersection, the visible ranges of detections, query terms and the highlighting of chunk text."""

from __future__ import annotations

import pytest
from vidsearch.search import highlight, intersect_intervals, merge_intervals, query_terms, visible_ranges


def test_intersection_of_empty_inputs_is_empty():
    assert intersect_intervals([], []) == []
    assert intersect_intervals([(0.0, 1.0, "a")], []) == []
    assert intersect_intervals([], [(0.0, 1.0, "b")]) == []


def test_overlap_is_max_of_starts_to_min_of_ends():
    assert intersect_intervals([(1.0, 4.0, "a")], [(2.0, 6.0, "b")]) == [(2.0, 4.0, "a", "b")]
    assert intersect_intervals([(2.0, 6.0, "a")], [(1.0, 4.0, "b")]) == [(2.0, 4.0, "a", "b")]


def test_touching_intervals_meet_in_a_zero_length_overlap_and_apart_ones_do_not():
    assert intersect_intervals([(0.0, 2.0, "a")], [(2.0, 3.0, "b")]) == [(2.0, 2.0, "a", "b")]
    assert intersect_intervals([(2.0, 3.0, "a")], [(0.0, 2.0, "b")]) == [(2.0, 2.0, "a", "b")]
    assert intersect_intervals([(0.0, 1.9, "a")], [(2.0, 3.0, "b")]) == []


def test_nested_intervals_give_the_inner_one():
    assert intersect_intervals([(0.0, 10.0, "outer")], [(3.0, 4.0, "inner")]) == [(3.0, 4.0, "outer", "inner")]
    assert intersect_intervals([(3.0, 4.0, "inner")], [(0.0, 10.0, "outer")]) == [(3.0, 4.0, "inner", "outer")]


def test_unsorted_inputs_and_a_long_interval_before_short_ones():
    a = [(7.0, 8.0, "a2"), (0.5, 1.5, "a1"), (4.0, 4.5, "a3")]
    # A long interval first, short ones inside it: ends are not sorted by start.
    b = [(5.0, 5.5, "b3"), (0.0, 9.0, "long"), (1.0, 2.0, "b1")]
    got = intersect_intervals(a, b)
    assert got == [
        (0.5, 1.5, "a1", "long"),
        (1.0, 1.5, "a1", "b1"),
        (4.0, 4.5, "a3", "long"),
        (7.0, 8.0, "a2", "long"),
    ]
    # Against a brute force over every pair.
    brute = sorted(
        (max(s1, s2), min(e1, e2), p1, p2) for s1, e1, p1 in a for s2, e2, p2 in b if max(s1, s2) <= min(e1, e2)
    )
    assert sorted(got) == brute


def test_an_interval_ending_before_it_starts_is_refused():
    with pytest.raises(ValueError):
        intersect_intervals([(2.0, 1.0, "a")], [(0.0, 3.0, "b")])
    with pytest.raises(ValueError):
        merge_intervals([(2.0, 1.0, "a")])


def test_merge_unites_overlapping_touching_and_nested_intervals():
    got = merge_intervals([(5.0, 6.0, "d"), (0.0, 2.0, "a"), (2.0, 3.0, "b"), (0.5, 1.0, "c"), (7.0, 8.0, "e")])
    assert got == [(0.0, 3.0, ["a", "c", "b"]), (5.0, 6.0, ["d"]), (7.0, 8.0, ["e"])]
    assert merge_intervals([]) == []


def _sighting(oid: str, pts: float, track: str | None = None, label: str = "cat") -> dict:
    return {"object_id": oid, "pts_s": pts, "track_id": track, "label": label}


def test_visible_ranges_keep_a_track_whole_and_split_untracked_detections_at_gaps():
    sightings = [
        _sighting("t1", 1.0, track="T"),
        _sighting("t2", 4.0, track="T"),  # a track is one range, gap or not
        _sighting("u1", 0.0),
        _sighting("u2", 0.5),
        _sighting("u3", 3.0),  # 2.5 s after u2: a new range
        _sighting("d1", 0.5, label="dog"),  # another label: its own range
    ]
    ranges = visible_ranges(sightings, max_gap=0.75, pad=0.25)
    got = [(s, e, info["track_id"], info["label"], [o for _, o in info["objects"]]) for s, e, info in ranges]
    assert got == [
        (0.0, 0.75, None, "cat", ["u1", "u2"]),  # padding never reaches before 0
        (0.25, 0.75, None, "dog", ["d1"]),
        (0.75, 4.25, "T", "cat", ["t1", "t2"]),
        (2.75, 3.25, None, "cat", ["u3"]),
    ]
    assert visible_ranges([], 1.0, 0.5) == []


def test_query_terms_leave_out_operators_and_excluded_words():
    assert query_terms('zebra "red car" or -blue Crossing') == {"zebra", "red", "car", "crossing"}
    assert query_terms("-only") == set()


def test_highlight_escapes_the_text_and_marks_whole_words():
    text = 'the <b>bold</b> & "brave" zebra, Zebras and ZEBRA'
    out = highlight(text, {"zebra", "bold", "amp", "b"})
    assert out == (
        "the &lt;<mark>b</mark>&gt;<mark>bold</mark>&lt;/<mark>b</mark>&gt; &amp; &quot;brave&quot; "
        "<mark>zebra</mark>, Zebras and <mark>ZEBRA</mark>"
    )
    # Nothing of the text survives unescaped, and an entity is never split by a mark.
    assert "<b>" not in out and "&<mark>" not in out
    assert highlight("<script>alert(1)</script>", set()) == "&lt;script&gt;alert(1)&lt;/script&gt;"
