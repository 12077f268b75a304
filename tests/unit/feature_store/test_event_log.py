"""The append-only event log: bounded rotation, readers that follow it, torn lines, limits."""

from __future__ import annotations

import json
import subprocess
import sys
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


WRITER = """
import sys
from pathlib import Path
from feature_store.events import EventLog, RatingEvent
directory, first = Path(sys.argv[1]), int(sys.argv[2])
log = EventLog(directory, segment_bytes=1024, max_segments=1000)
for n in range(first, first + 400):
    log.append([RatingEvent(user_id=n % 9, item_id=n, rating=3.5, timestamp=n)])
log.close()
"""


def test_several_writer_processes_share_one_log(tmp_path: Path) -> None:
    """The API workers of one server append to one log: a reader sees every event once."""
    starts = (0, 10_000, 20_000)
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(start)])
        for start in starts
    ]
    reader = EventLogReader(tmp_path)
    got = []
    while any(w.poll() is None for w in writers):
        got += reader.read_new()
    assert [w.wait() for w in writers] == [0, 0, 0]
    got += reader.read_new()
    expected = [n for start in starts for n in range(start, start + 400)]
    assert sorted(e.item_id for e in got) == expected  # every event, once
    assert len(list(tmp_path.glob("events-*.jsonl"))) > 10  # rotated many times meanwhile
    for start in starts:  # each writer's events stay in its order
        mine = [e.item_id for e in got if start <= e.item_id < start + 400]
        assert mine == list(range(start, start + 400))
