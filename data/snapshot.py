"""The versioned feature snapshot: what training and serving both read.

On disk a snapshot is one directory:

- ``users.parquet``: ``user_id`` plus one float32 column per user feature
- ``items.parquet``: ``item_id`` plus one float32 column per item feature
- ``catalog.parquet``: ``item_id``, ``title``, ``year``, ``genres`` ("|"-joined) for every movie
- ``history.parquet``: ``user_id``, ``item_id``, ``rating``, ``timestamp`` of the feature period
  (what serving knows each user has seen)
- ``schema.json``: column order, default rows for unknown users/items, the content hash
  (``version``) and free-form metadata (dataset fingerprint, period end, ...)

``version`` is a content hash of the feature matrices, ids, column names, catalog and history, so
the same inputs always give the same version and any change gives a new one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.errors import ArtifactError

SCHEMA_VERSION = 1
_FILES = ("users.parquet", "items.parquet", "catalog.parquet", "history.parquet", "schema.json")


@dataclass(frozen=True, eq=False)
class FeatureSnapshot:
    """User and item feature matrices, keyed by MovieLens ids, in a fixed column order."""

    user_ids: np.ndarray  # (U,) int64, sorted
    user_matrix: np.ndarray  # (U, Fu) float32
    user_columns: tuple[str, ...]
    item_ids: np.ndarray  # (I,) int64, sorted
    item_matrix: np.ndarray  # (I, Fi) float32
    item_columns: tuple[str, ...]
    default_user: np.ndarray  # (Fu,) float32, served for users absent from the snapshot
    default_item: np.ndarray  # (Fi,) float32, served for items absent from the snapshot
    catalog: pd.DataFrame
    history: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    def __post_init__(self) -> None:
        assert self.user_matrix.shape == (len(self.user_ids), len(self.user_columns))
        assert self.item_matrix.shape == (len(self.item_ids), len(self.item_columns))
        assert np.all(np.diff(self.user_ids) > 0)
        assert np.all(np.diff(self.item_ids) > 0)
        if not self.version:
            object.__setattr__(self, "version", self.content_hash())

    def content_hash(self) -> str:
        """A short hash of ids, column names and feature values."""
        digest = hashlib.sha256()
        for array in (self.user_ids, self.user_matrix, self.item_ids, self.item_matrix,
                      self.default_user, self.default_item):  # fmt: skip
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update("|".join((*self.user_columns, "#", *self.item_columns)).encode())
        # Catalog and history are served too (titles, seen items): a change must show.
        for frame in (self.catalog, self.history):
            digest.update("|".join(map(str, frame.columns)).encode())
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        return digest.hexdigest()[:16]

    def user_rows(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows for `user_ids` (defaults where absent) and a mask of which were found."""
        return _lookup(self.user_ids, self.user_matrix, self.default_user, user_ids)

    def item_rows(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows for `item_ids` (defaults where absent) and a mask of which were found."""
        return _lookup(self.item_ids, self.item_matrix, self.default_item, item_ids)

    def write(self, directory: str | Path) -> Path:
        """Write the snapshot's files into `directory` (created if needed)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        users = pd.DataFrame(self.user_matrix, columns=list(self.user_columns))
        users.insert(0, "user_id", self.user_ids)
        users.to_parquet(out / "users.parquet", index=False)
        items = pd.DataFrame(self.item_matrix, columns=list(self.item_columns))
        items.insert(0, "item_id", self.item_ids)
        items.to_parquet(out / "items.parquet", index=False)
        self.catalog.to_parquet(out / "catalog.parquet", index=False)
        self.history.to_parquet(out / "history.parquet", index=False)
        schema = {
            "schema_version": SCHEMA_VERSION,
            "version": self.version,
            "user_columns": list(self.user_columns),
            "item_columns": list(self.item_columns),
            "default_user": self.default_user.tolist(),
            "default_item": self.default_item.tolist(),
            "metadata": self.metadata,
        }
        (out / "schema.json").write_text(json.dumps(schema, indent=2))
        return out

    @classmethod
    def read(cls, directory: str | Path) -> FeatureSnapshot:
        """Read a snapshot written by `write`, checking its schema and hash.

        Raises:
            ArtifactError: a file is missing, the schema version differs or the hash mismatches.
        """
        path = Path(directory)
        missing = [f for f in _FILES if not (path / f).exists()]
        if missing:
            raise ArtifactError(str(path), f"snapshot files {_FILES}", f"missing {missing}")
        try:
            schema = json.loads((path / "schema.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(str(path), "a JSON schema.json", f"unreadable ({exc})") from exc
        if not isinstance(schema, dict) or schema.get("schema_version") != SCHEMA_VERSION:
            got = schema.get("schema_version") if isinstance(schema, dict) else type(schema)
            raise ArtifactError(str(path), f"schema_version {SCHEMA_VERSION}", got)
        try:
            users = pd.read_parquet(path / "users.parquet")
            items = pd.read_parquet(path / "items.parquet")
            user_columns = tuple(schema["user_columns"])
            item_columns = tuple(schema["item_columns"])
            snapshot = cls(
                user_ids=users["user_id"].to_numpy(np.int64),
                user_matrix=users[list(user_columns)].to_numpy(np.float32),
                user_columns=user_columns,
                item_ids=items["item_id"].to_numpy(np.int64),
                item_matrix=items[list(item_columns)].to_numpy(np.float32),
                item_columns=item_columns,
                default_user=np.asarray(schema["default_user"], dtype=np.float32),
                default_item=np.asarray(schema["default_item"], dtype=np.float32),
                catalog=pd.read_parquet(path / "catalog.parquet"),
                history=pd.read_parquet(path / "history.parquet"),
                metadata=schema["metadata"],
            )
        # A hand-edited or truncated file: unreadable parquet, missing columns, unsorted ids.
        except (KeyError, TypeError, ValueError, OSError, AssertionError) as exc:
            raise ArtifactError(str(path), "a readable, consistent snapshot", repr(exc)) from exc
        if snapshot.version != schema.get("version"):
            raise ArtifactError(
                str(path), f"content hash {schema.get('version')}", snapshot.version
            )
        return snapshot


def _lookup(
    ids: np.ndarray, matrix: np.ndarray, default: np.ndarray, wanted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    wanted = np.asarray(wanted, dtype=np.int64)
    pos = np.searchsorted(ids, wanted)
    pos_clipped = np.minimum(pos, len(ids) - 1)
    found = ids[pos_clipped] == wanted
    rows = np.where(found[:, None], matrix[pos_clipped], default[None, :])
    return rows.astype(np.float32, copy=False), found
