"""pipeline/spans.py: cutting a MovieLens folder into time-ordered spans."""

import numpy as np
import pytest

from pipeline import spans


def write(folder, lines):
    folder.mkdir()
    (folder / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\r\n"
                                         + b"".join(lines))
    (folder / "movies.csv").write_bytes(b"movieId,title,genres\r\n1,A (1999),Drama\r\n")


def test_spans_are_time_ranges_of_equal_size_keeping_lines_and_order(tmp_path):
    # File order is not time order; two ratings share time 50.
    times = [90, 10, 50, 70, 50, 30, 20, 80]
    lines = [f"{i + 1},1,4.0,{t}\r\n".encode() for i, t in enumerate(times)]
    write(tmp_path / "src", lines)
    sizes = spans.cut(tmp_path / "src", tmp_path / "dest", 4)
    got = [(tmp_path / "dest" / f"span-{n}" / "ratings.csv").read_bytes() for n in (1, 2, 3, 4)]
    header = b"userId,movieId,rating,timestamp\r\n"
    assert all(g.startswith(header) for g in got)
    bodies = [g[len(header):].splitlines(keepends=True) for g in got]
    # Quantile cuts at 30, 50, 80: [10, 20], [30], [50, 50, 70], [80, 90]; each in file order.
    assert bodies == [[lines[1], lines[6]], [lines[5]], [lines[2], lines[3], lines[4]],
                      [lines[0], lines[7]]]
    assert sizes == [2, 1, 3, 2]
    assert (tmp_path / "dest" / "movies.csv").read_bytes() == \
        (tmp_path / "src" / "movies.csv").read_bytes()
    assert spans.has_spans(tmp_path / "dest") and not spans.has_spans(tmp_path / "src")


def test_every_rating_lands_in_exactly_one_span_in_time_order():
    rng = np.random.default_rng(0)
    times = rng.integers(0, 1000, 5000)
    span = spans.span_of_lines(times, 7)
    assert set(span) == set(range(1, 8))
    for s in range(1, 7):  # each span is entirely older than the next
        assert times[span == s].max() <= times[span == s + 1].min()
    assert np.bincount(span)[1:].min() > 5000 / 7 * 0.8


def test_more_spans_than_distinct_times_is_a_clear_error(tmp_path):
    write(tmp_path / "src", [b"1,1,4.0,5\r\n", b"2,1,3.0,5\r\n"])
    with pytest.raises(spans.SpanError, match="cannot fill 2 spans"):
        spans.cut(tmp_path / "src", tmp_path / "dest", 2)


def test_a_line_without_a_timestamp_is_named(tmp_path, capsys):
    write(tmp_path / "src", [b"1,1,4.0,5\r\n", b"2,1,3.0\r\n"])
    assert spans.main([str(tmp_path / "src"), str(tmp_path / "dest"), "--spans", "1"]) == 2
    err = capsys.readouterr().err
    assert "ratings.csv line 3" in err and "Traceback" not in err


def test_a_new_span_changes_the_run_records_data_checksums(tmp_path):
    from pipeline import run_record

    write(tmp_path / "src", [b"1,1,4.0,5\r\n", b"2,1,3.0,7\r\n"])
    spans.cut(tmp_path / "src", tmp_path / "all", 2)
    data = tmp_path / "data"
    data.mkdir()
    (data / "movies.csv").write_bytes((tmp_path / "all" / "movies.csv").read_bytes())
    (data / "span-1").mkdir()
    (data / "span-1" / "ratings.csv").write_bytes(
        (tmp_path / "all" / "span-1" / "ratings.csv").read_bytes())
    before = run_record.data_checksums(data)
    assert list(before) == ["movies.csv", "span-1/ratings.csv"]
    (data / "span-2").mkdir()
    (data / "span-2" / "ratings.csv").write_bytes(
        (tmp_path / "all" / "span-2" / "ratings.csv").read_bytes())
    after = run_record.data_checksums(data)
    assert list(after) == ["movies.csv", "span-1/ratings.csv", "span-2/ratings.csv"]
    assert after != before
