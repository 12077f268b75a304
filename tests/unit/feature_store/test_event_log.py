"""The append-only event log: bounded rotation, readers that follow it, torn lines, limits."""

from __future__ import annotations

import json
from pathlib import Path

from feature_store.events import EventLog, EventLogReader, LogPosition, RatingEvent, read_log


def _event(n: int) -> RatingEvent:
    return RatingEvent(user_id=n % 9, item_id=n, rating=None if n % 4 == 0 else 3.5, timestamp=n)


def test_the_log_is_bounded_and_keeps_the_newest_events(tmp_path: Path) -> None:
    log = EventLog(tmp_path, segment_bytes=300, max_segments=3)
    for n in range(200):
        log.append([_event(n)])
    segments = sorted(tmp_path.glob("events-*.jsonl"))
    assert len(segments) == 3
    kept = [json.loads(line) for p in segments for line in p.read_text().splitlines()]
    assert [e["i"] for e in kept] == list(range(200 - len(kept), 200))  # a contiguous tail
    assert read_log(tmp_path) == [_event(i) for i in range(200 - len(kept), 200)]


def test_a_reader_follows_appends_across_segments_and_restarts(tmp_path: Path) -> None:
    log = EventLog(tmp_path, segment_bytes=250, max_segments=100)
    reader = EventLogReader(tmp_path)
    got = []
    for start in range(0, 60, 6):
        log.append([_event(n) for n in range(start, start + 6)])
        got += reader.read_new()
    assert got == [_event(n) for n in range(60)]
    assert reader.read_new() == []
    log.close()
    reopened = EventLog(tmp_path, segment_bytes=250, max_segments=100)  # a restarted writer
    reopened.append([_event(60)])
    assert reader.read_new() == [_event(60)]


def test_a_torn_line_waits_and_a_corrupt_one_is_skipped(tmp_path: Path) -> None:
    EventLog(tmp_path, segment_bytes=1 << 20, max_segments=2).append([_event(1)])
    reader = EventLogReader(tmp_path)
    assert reader.read_new() == [_event(1)]
    segment = next(tmp_path.glob("events-*.jsonl"))
    line = _event(2).to_line()
    with segment.open("a") as handle:
        handle.write(line[:10])  # a writer caught mid-line
    assert reader.read_new() == []
    with segment.open("a") as handle:
        handle.write(line[10:] + "\n" + "not json\n" + _event(3).to_line() + "\n")
    assert reader.read_new() == [_event(2), _event(3)]
    assert reader.corrupt_lines == 1


def test_reading_with_a_limit_resumes_where_it_stopped(tmp_path: Path) -> None:
    log = EventLog(tmp_path, segment_bytes=200, max_segments=100)
    log.append([_event(n) for n in range(25)])
    log.append([_event(n) for n in range(25, 40)])
    reader = EventLogReader(tmp_path, LogPosition(0, 0))
    chunks = []
    while chunk := reader.read_new(limit=7):
        assert len(chunk) <= 7
        chunks += chunk
    assert chunks == [_event(n) for n in range(40)]
