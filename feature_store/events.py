"""Rating events after training, and the append-only log that keeps them on disk.

A `RatingEvent` is one rating (or an unrated interaction) a user gave after the feature snapshot
was built. POST /events accepts them; every process that holds user state reads them from the
log (`EventLogReader`), so a restart replays what it had and the next request of every stage
sees the event as soon as the 200 was sent.

On disk the log is a directory of JSON-lines segments ``events-00000001.jsonl``, ... . The writer
appends one ``write()`` per call (whole lines), starts a new segment past ``segment_bytes`` and
deletes the oldest segments beyond ``max_segments``, so the log is bounded. Readers follow the
segments in order by byte offset; they never hold a lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

SEGMENT_GLOB = "events-*.jsonl"
LOCK_FILE = "events.lock"  # writers of one directory take turns on it (flock)


@dataclass(frozen=True, slots=True)
class RatingEvent:
    """One rating given after the snapshot; `rating` None is an unrated interaction."""

    user_id: int
    item_id: int
    rating: float | None
    timestamp: int  # seconds since the epoch

    def key(self) -> tuple[int, int, int]:
        """What makes two events the same (the deduplication key)."""
        return (self.user_id, self.item_id, self.timestamp)

    def to_line(self) -> str:
        """The JSON line of this event in the log."""
        return json.dumps(
            {"u": self.user_id, "i": self.item_id, "r": self.rating, "t": self.timestamp},
            separators=(",", ":"),
        )

    @classmethod
    def from_line(cls, line: str | bytes) -> RatingEvent:
        """Parse one log line (raises ValueError/KeyError on a corrupt one)."""
        raw = json.loads(line)
        rating = raw["r"]
        return cls(int(raw["u"]), int(raw["i"]), None if rating is None else float(rating),
                   int(raw["t"]))  # fmt: skip


def event_keys(user_ids: np.ndarray, item_ids: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """One int64 per (user, item, timestamp), for deduplication by sorted search.

    A multiplicative mix (wrapping in int64): distinct triples collide with probability ~2^-64.
    """
    with np.errstate(over="ignore"):
        key = np.asarray(user_ids, np.int64) * np.int64(0x9E3779B97F4A7C15 - 2**64)
        key = (key + np.asarray(item_ids, np.int64)) * np.int64(0xBF58476D1CE4E5B9 - 2**64)
        return key + np.asarray(timestamps, np.int64)


class KnownEvents:
    """Which (user, item, timestamp) triples a state already holds (snapshot history + applied)."""

    def __init__(self, user_ids: np.ndarray, item_ids: np.ndarray, timestamps: np.ndarray) -> None:
        self._sorted = np.unique(event_keys(user_ids, item_ids, timestamps))
        self._added: set[int] = set()

    def new(self, events: list[RatingEvent]) -> list[RatingEvent]:
        """The events not held yet (first of duplicates within `events`); marks them held."""
        if not events:
            return []
        keys = event_keys(
            np.fromiter((e.user_id for e in events), np.int64, len(events)),
            np.fromiter((e.item_id for e in events), np.int64, len(events)),
            np.fromiter((e.timestamp for e in events), np.int64, len(events)),
        )
        pos = np.minimum(np.searchsorted(self._sorted, keys), max(len(self._sorted) - 1, 0))
        in_history = (self._sorted[pos] == keys) if len(self._sorted) else np.zeros(len(keys), bool)
        fresh = []
        for event, key, old in zip(events, keys.tolist(), in_history.tolist(), strict=True):
            if not old and key not in self._added:
                self._added.add(key)
                fresh.append(event)
        return fresh


def segment_path(directory: Path, number: int) -> Path:
    """Path of segment `number`."""
    return directory / f"events-{number:08d}.jsonl"


def segment_numbers(directory: Path) -> list[int]:
    """The segment numbers present, ascending."""
    return sorted(int(p.stem.split("-", 1)[1]) for p in directory.glob(SEGMENT_GLOB))


@dataclass(frozen=True, order=True)
class LogPosition:
    """A point in the log: a segment and a byte offset in it."""

    segment: int
    offset: int


class EventLog:
    """The writer: appends events as whole JSON lines; bounded by rotation.

    Several processes may append to one directory (the API workers of one server): each append
    holds an exclusive `flock` on the directory's lock file, writes to the newest segment (another
    writer may have rotated) and rotates by the segment's size on disk, so segments stay
    append-only in order and every reader sees every event once.

    Args:
        directory: where the segments live (created).
        segment_bytes: start a new segment once the current one is this large.
        max_segments: segments kept; older ones are deleted (their events are gone from the log).
    """

    def __init__(self, directory: Path, segment_bytes: int, max_segments: int) -> None:
        if segment_bytes < 1 or max_segments < 1:
            raise ValueError("the event log needs segment_bytes >= 1 and max_segments >= 1")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.max_segments = max_segments
        self._lock = threading.Lock()
        self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o640)
        numbers = segment_numbers(self.directory)
        self._segment = numbers[-1] if numbers else 1
        self._fd = self._open(self._segment)
        self._size = os.fstat(self._fd).st_size

    def _open(self, number: int) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        return os.open(segment_path(self.directory, number), flags, 0o640)

    @property
    def end(self) -> LogPosition:
        """The position just after the last event written."""
        return LogPosition(self._segment, self._size)

    def append(self, events: Iterable[RatingEvent]) -> LogPosition:
        """Append `events` in one write; returns the log's end after them."""
        data = "".join(e.to_line() + "\n" for e in events).encode()
        with self._lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                while segment_path(self.directory, self._segment + 1).exists():
                    self._open_segment(self._segment + 1)  # another writer rotated
                self._size = os.fstat(self._fd).st_size  # other writers append here too
                if self._size >= self.segment_bytes:
                    self._rotate()
                written = os.write(self._fd, data)
                while written < len(data):  # short writes are rare on regular files
                    written += os.write(self._fd, data[written:])
                self._size += len(data)
                return LogPosition(self._segment, self._size)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _open_segment(self, number: int) -> None:
        os.close(self._fd)
        self._segment = number
        self._fd = self._open(number)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        self._open_segment(self._segment + 1)
        for number in segment_numbers(self.directory)[: -self.max_segments]:
            logger.warning(
                "event log: deleting segment %d (over %d segments); its events stay only in "
                "models trained with them", number, self.max_segments,
            )  # fmt: skip
            segment_path(self.directory, number).unlink(missing_ok=True)

    def close(self) -> None:
        """Close the current segment."""
        with self._lock:
            os.close(self._fd)
            os.close(self._lock_fd)


class EventLogReader:
    """Follows a log directory from a position: `read_new()` returns what was appended since.

    Cheap when nothing changed: a few `stat` calls, no open.
    """

    def __init__(self, directory: Path, start: LogPosition | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        numbers = segment_numbers(self.directory)
        self.position = start or LogPosition(numbers[0] if numbers else 1, 0)
        self._prefix = str(segment_path(self.directory, 0)).removesuffix("00000000.jsonl")
        self._lock = threading.Lock()
        self.corrupt_lines = 0

    def read_new(self, limit: int | None = None) -> list[RatingEvent]:
        """The complete event lines appended since the last call (at most `limit`), in order."""
        with self._lock:
            out: list[RatingEvent] = []
            self._read(out, limit)
            return out

    def _read(self, out: list[RatingEvent], limit: int | None) -> None:
        # Called before every request: plain os.stat on string paths (pathlib costs more than
        # the syscalls here), one stat of this segment and one of the next when nothing changed.
        while limit is None or len(out) < limit:
            path = self._path(self.position.segment)
            size = _size(path)
            if size is not None and size > self.position.offset:
                self._read_segment(path, out, limit)
            nxt = self.position.segment + 1
            if _size(self._path(nxt)) is not None:
                # The writer created the next segment after its last write to this one: one
                # more read of this one is complete (a torn last line, if any, is dropped). Ask
                # again whether it exists: it may have been created, filled and rotated since
                # the first look.
                if _size(path) is not None:
                    self._read_segment(path, out, limit)
                if limit is not None and len(out) >= limit:
                    return
                self.position = LogPosition(nxt, 0)
                continue
            if size is None:  # deleted by rotation while we were behind: skip to the oldest left
                numbers = segment_numbers(self.directory)
                if self.position.segment in numbers:
                    continue  # not deleted: created since the first look
                later = [n for n in numbers if n > self.position.segment]
                if later:
                    self.position = LogPosition(later[0], 0)
                    continue
            return

    def _path(self, number: int) -> str:
        return f"{self._prefix}{number:08d}.jsonl"

    def _read_segment(self, path: str, out: list[RatingEvent], limit: int | None) -> None:
        try:
            with open(path, "rb") as handle:
                handle.seek(self.position.offset)
                data = handle.read()
        except FileNotFoundError:
            return
        offset = 0
        while limit is None or len(out) < limit:
            end = data.find(b"\n", offset)
            if end < 0:  # a line still being written stays for the next call
                break
            line = data[offset:end]
            offset = end + 1
            try:
                out.append(RatingEvent.from_line(line))
            except (ValueError, KeyError, TypeError):
                self.corrupt_lines += 1
                logger.warning(
                    "event log %s: skipped a corrupt line %r", os.path.basename(path), line[:200]
                )
        self.position = LogPosition(self.position.segment, self.position.offset + offset)


def _size(path: str) -> int | None:
    """The file's size, or None when it does not exist."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def read_log(directory: Path) -> list[RatingEvent]:
    """Every event still in the log at `directory`, in order."""
    if not Path(directory).is_dir():
        raise FileNotFoundError(f"no event log directory at {directory}")
    return EventLogReader(Path(directory)).read_new()
