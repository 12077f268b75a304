"""Sampled request features appended to a bounded, rotating parquet log.

On the request path `InferenceLog.log` draws one random number and, for a sampled request, copies
an evenly strided subset of its rows (the rows the in-process monitor looks at, see
`monitoring.evidence`) into an in-memory buffer under a lock. Every row carries its request's id
(unique across processes that share the log), so the drift job can count a request once. Every
``log_flush_rows`` rows the buffer is handed to ONE background writer thread, which writes it as a
new ``features-<time_ns>-<host>-<pid>-<seq>.parquet`` file and then deletes the oldest files
while the log holds more than ``log_max_rows`` rows. Nothing grows without bound: the buffer is
flushed at a fixed size, at most a few batches wait for the writer (more are dropped and
counted), and the files on disk are capped.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from monitoring.config import DriftSettings
from monitoring.errors import FeatureMismatchError, NoLoggedTrafficError
from monitoring.evidence import strided_rows

logger = logging.getLogger(__name__)

FILE_GLOB = "features-*.parquet"
REQUEST_COLUMN = "request_id"
TIME_COLUMN = "logged_at"


class InferenceLog:
    """Thread-safe sampled logger of served feature rows (see module docstring)."""

    def __init__(
        self,
        settings: DriftSettings,
        feature_names: Sequence[str],
        seed: int | None = None,
        max_pending_writes: int = 4,
    ) -> None:
        """Open (or continue) the log in ``settings.log_dir``.

        Args:
            settings: sample rate, directory, flush size, row cap, rows per request.
            feature_names: column names of the logged matrices, in order.
            seed: seed of the sampling draw (None: random).
            max_pending_writes: batches allowed to wait for the writer; more are dropped.
        """
        self.settings = settings
        self.names = list(feature_names)
        self.directory = Path(settings.log_dir)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._buffer: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []
        self._buffered = 0
        self._requests = 0
        # Request ids: a random 31-bit prefix per log keeps processes sharing a volume apart.
        self._id_base = random.Random().getrandbits(31) << 32
        self._seq = 0
        self._origin = f"{socket.gethostname()}-{os.getpid()}"
        self.dropped_rows = 0
        self._pending: list[Future[None]] = []
        self._max_pending = max_pending_writes
        self._files = {p: pq.ParquetFile(p).metadata.num_rows for p in _log_files(self.directory)}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference-log")

    def log(self, x: np.ndarray) -> bool:
        """Maybe log one request's (N, F) features; returns whether it was sampled.

        Raises:
            FeatureMismatchError: `x` does not have one column per feature name.
        """
        if x.ndim != 2 or x.shape[1] != len(self.names):
            raise FeatureMismatchError(len(self.names), x.shape[-1] if x.ndim else 0)
        with self._lock:
            counter = self._requests  # 0, 1, ...: the monitor's offsets, so both see one row set
            self._requests += 1
            if self._rng.random() >= self.settings.log_sample_rate or not len(x):
                return False
        x = strided_rows(x, self.settings.log_rows_per_request, counter)
        request_id = self._id_base + counter
        rows = np.array(x, dtype=np.float32)  # copy: the caller may reuse its buffer
        with self._lock:
            self._buffer.append(rows)
            self._ids.append(np.full(len(rows), request_id, dtype=np.int64))
            self._buffered += len(rows)
            if self._buffered >= self.settings.log_flush_rows:
                self._submit_locked()
        return True

    def flush(self) -> None:
        """Write whatever is buffered and wait until every write has finished."""
        with self._lock:
            self._submit_locked()
            pending = list(self._pending)
        for future in pending:
            future.result()

    def close(self) -> None:
        """Flush and stop the writer thread."""
        self.flush()
        self._executor.shutdown(wait=True)

    @property
    def rows_on_disk(self) -> int:
        """Rows currently held by the log's files."""
        with self._lock:
            return sum(self._files.values())

    def _submit_locked(self) -> None:
        if not self._buffer:
            return
        rows, ids = np.concatenate(self._buffer), np.concatenate(self._ids)
        self._buffer, self._ids, self._buffered = [], [], 0
        self._pending = [f for f in self._pending if not f.done()]
        if len(self._pending) >= self._max_pending:  # writer cannot keep up: shed load
            self.dropped_rows += len(rows)
            logger.warning("inference log writer behind; dropped %d rows", len(rows))
            return
        self._seq += 1
        # Several pods may share one log volume: host and pid keep their file names apart.
        name = f"features-{time.time_ns():020d}-{self._origin}-{self._seq:06d}.parquet"
        self._pending.append(self._executor.submit(self._write, self.directory / name, rows, ids))

    def _write(self, path: Path, rows: np.ndarray, ids: np.ndarray) -> None:
        columns = {name: pa.array(rows[:, j]) for j, name in enumerate(self.names)}
        columns[REQUEST_COLUMN] = pa.array(ids)
        columns[TIME_COLUMN] = pa.array(np.full(len(rows), time.time()))
        tmp = path.with_suffix(".tmp")
        pq.write_table(pa.table(columns), tmp)
        tmp.rename(path)  # readers never see a half-written file
        with self._lock:
            self._files[path] = len(rows)
            doomed = []
            total = sum(self._files.values())
            for old in sorted(self._files):
                if total <= self.settings.log_max_rows or old == path:
                    break
                total -= self._files.pop(old)
                doomed.append(old)
        for old in doomed:
            old.unlink(missing_ok=True)


def _log_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(FILE_GLOB))


def read_log(
    source: str | Path, columns: Sequence[str] | None = None, max_rows: int | None = None,
    seed: int = 0, request_ids: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """Read a log directory (every ``features-*.parquet``) or one parquet file.

    Args:
        source: the log directory or a single parquet file.
        columns: feature columns to read (None: all but the bookkeeping columns).
        max_rows: at most about this many rows (None: all): a uniform sample of whole requests
            when the log has request ids (a request's rows stay together), else of rows.
        seed: seed of that sample.
        request_ids: keep the ``request_id`` column (where the log has it).

    Returns:
        The logged feature rows (float32 columns), with ``request_id`` if asked.

    Raises:
        NoLoggedTrafficError: no file, or the files hold no rows.
    """
    source = Path(source)
    files = [source] if source.is_file() else _log_files(source) if source.is_dir() else []
    wanted = None
    if columns:
        wanted = [*columns, REQUEST_COLUMN]
    frames = [_read_file(f, wanted) for f in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        raise NoLoggedTrafficError(str(source))
    data = pd.concat(frames, ignore_index=True)
    if max_rows is not None and len(data) > max_rows:
        if REQUEST_COLUMN in data:
            ids = data[REQUEST_COLUMN].unique()
            keep = max(1, round(max_rows * len(ids) / len(data)))
            chosen = np.random.default_rng(seed).choice(ids, keep, replace=False)
            data = data[data[REQUEST_COLUMN].isin(chosen)].reset_index(drop=True)
        else:
            data = data.sample(n=max_rows, random_state=seed).reset_index(drop=True)
    dropped = [TIME_COLUMN] if request_ids else [REQUEST_COLUMN, TIME_COLUMN]
    return data.drop(columns=[c for c in dropped if c in data])


def _read_file(path: Path, columns: list[str] | None) -> pd.DataFrame:
    """One log file's columns (a file written before request ids existed has none)."""
    if columns is None:
        return pd.read_parquet(path)
    present = set(pq.read_schema(path).names)
    return pd.read_parquet(path, columns=[c for c in columns if c in present])
