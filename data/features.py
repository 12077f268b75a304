"""Feature engineering from one period of interactions (no leakage: nothing after the period).

`build_snapshot(dataset, period)` sees only `period` (the training interactions) plus the static
catalog and demographics; every statistic is computed from `period`, and "now" for recency is the
last timestamp in `period`.

User features: rating count, mean, std, days since last rating, days active, year of the last
rating, share of ratings in each genre (genre affinity), and demographics as integer codes
(0 = unknown): age bucket, gender,
occupation, zip region (first zip digit + 1).
Item features: rating count, smoothed mean rating, popularity rank (1 = most rated), ratings in
the last 30 days of the period, release year, days since first rating, genres multi-hot.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from data.schema import AGE_BUCKETS, GENRES, OCCUPATIONS, UNKNOWN, Dataset
from data.snapshot import FeatureSnapshot

DAY = 86_400
RECENT_DAYS = 30
MEAN_SMOOTHING = 5.0  # pseudo-ratings at the global mean added to each item's mean


def genre_column(genre: str) -> str:
    """A column-name-safe genre suffix: "Children's" -> "childrens", "Sci-Fi" -> "sci_fi"."""
    return genre.lower().replace("'", "").replace("-", "_")


GENRE_SLUGS = tuple(genre_column(g) for g in GENRES)
USER_COLUMNS: tuple[str, ...] = (
    "user_count",
    "user_mean_rating",
    "user_std_rating",
    "user_days_since_last",
    "user_days_active",
    "user_last_year",
    *(f"user_aff_{g}" for g in GENRE_SLUGS),
    "user_age_bucket",
    "user_gender",
    "user_occupation",
    "user_zip_region",
)
ITEM_COLUMNS: tuple[str, ...] = (
    "item_count",
    "item_mean_rating",
    "item_pop_rank",
    "item_recent_count",
    "item_year",
    "item_days_since_first",
    *(f"item_genre_{g}" for g in GENRE_SLUGS),
)
DEMOGRAPHIC_COLUMNS = ("user_age_bucket", "user_gender", "user_occupation", "user_zip_region")


def dataset_fingerprint(dataset: Dataset) -> str:
    """A short hash of a dataset's canonical interactions and catalog."""
    digest = hashlib.sha256()
    digest.update(dataset.format.value.encode())
    inter = dataset.interactions[["user_id", "item_id", "rating", "timestamp"]]
    digest.update(pd.util.hash_pandas_object(inter, index=False).to_numpy().tobytes())
    digest.update(pd.util.hash_pandas_object(dataset.items["item_id"], index=False).to_numpy())
    return digest.hexdigest()[:16]


def genre_matrix(items: pd.DataFrame) -> np.ndarray:
    """Multi-hot (I, G) float32 matrix of `items.genres` over `GENRES`, in `items` order."""
    index = {g: j for j, g in enumerate(GENRES)}
    out = np.zeros((len(items), len(GENRES)), dtype=np.float32)
    for i, genres in enumerate(items["genres"]):
        for g in genres:
            out[i, index[g]] = 1.0
    return out


def encode_demographics(users: pd.DataFrame) -> np.ndarray:
    """(U, 4) float32 integer codes for age bucket, gender, occupation, zip region (0 = unknown)."""
    age = {b: i + 1 for i, b in enumerate(AGE_BUCKETS)}
    gender = {"M": 1, "F": 2}
    occupation = {o: i + 1 for i, o in enumerate(OCCUPATIONS)}
    first_digit = users["zip_code"].astype(str).str[:1]
    zip_region = np.where(first_digit.str.isdigit(), pd.to_numeric(first_digit, "coerce") + 1, 0)
    return np.stack(
        [
            users["age_bucket"].map(age).fillna(0).to_numpy(np.float32),
            users["gender"].map(gender).fillna(0).to_numpy(np.float32),
            users["occupation"].map(occupation).fillna(0).to_numpy(np.float32),
            np.nan_to_num(zip_region.astype(np.float32)),
        ],
        axis=1,
    )


def build_snapshot(dataset: Dataset, period: pd.DataFrame) -> FeatureSnapshot:
    """Compute user and item features from `period` only.

    Args:
        dataset: the whole dataset; only its catalog and demographics are read.
        period: the interactions features may see (e.g. `Split.train`).

    Returns:
        A snapshot covering every user in `dataset.users` or `period` and every catalog item.
    """
    if period.empty:
        raise ValueError("cannot build features from an empty period")
    now = int(period["timestamp"].max())
    items = dataset.items.sort_values("item_id").reset_index(drop=True)
    genres = genre_matrix(items)
    item_ids = items["item_id"].to_numpy(np.int64)
    item_pos = np.searchsorted(item_ids, period["item_id"].to_numpy())
    global_mean = float(period["rating"].mean())

    item_matrix = _item_features(period, items, genres, item_pos, now, global_mean)
    user_ids, user_matrix, default_user = _user_features(
        dataset, period, genres, item_pos, now, global_mean
    )
    default_item = np.zeros(len(ITEM_COLUMNS), dtype=np.float32)
    default_item[ITEM_COLUMNS.index("item_mean_rating")] = global_mean
    default_item[ITEM_COLUMNS.index("item_pop_rank")] = len(item_ids) + 1
    default_item[ITEM_COLUMNS.index("item_year")] = float(np.nanmedian(items["year"]))

    catalog = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": items["title"].astype(str),
            "year": items["year"].astype("float64"),
            "genres": ["|".join(g) for g in items["genres"]],
        }
    )
    history = period[["user_id", "item_id", "rating", "timestamp"]].sort_values(
        ["user_id", "timestamp", "item_id"], kind="mergesort"
    )
    return FeatureSnapshot(
        user_ids=user_ids,
        user_matrix=user_matrix,
        user_columns=USER_COLUMNS,
        item_ids=item_ids,
        item_matrix=item_matrix,
        item_columns=ITEM_COLUMNS,
        default_user=default_user,
        default_item=default_item,
        catalog=catalog,
        history=history.reset_index(drop=True),
        metadata={
            "dataset_format": dataset.format.value,
            "dataset_fingerprint": dataset_fingerprint(dataset),
            "period_end": now,
            "period_ratings": len(period),
            "has_demographics": dataset.has_demographics,
        },
    )


def _item_features(
    period: pd.DataFrame,
    items: pd.DataFrame,
    genres: np.ndarray,
    item_pos: np.ndarray,
    now: int,
    global_mean: float,
) -> np.ndarray:
    n = len(items)
    ratings = period["rating"].to_numpy(np.float64)
    ts = period["timestamp"].to_numpy(np.int64)
    count = np.bincount(item_pos, minlength=n).astype(np.float64)
    total = np.bincount(item_pos, weights=ratings, minlength=n)
    mean = (total + MEAN_SMOOTHING * global_mean) / (count + MEAN_SMOOTHING)
    recent = np.bincount(item_pos[ts > now - RECENT_DAYS * DAY], minlength=n).astype(np.float64)
    # Popularity rank: 1 for the most rated item; ties broken by item id for determinism.
    order = np.lexsort((items["item_id"].to_numpy(), -count))
    rank = np.empty(n, dtype=np.float64)
    rank[order] = np.arange(1, n + 1)
    first = np.full(n, np.inf)
    np.minimum.at(first, item_pos, ts.astype(np.float64))
    days_since_first = np.where(np.isfinite(first), (now - first) / DAY, 0.0)
    year = items["year"].to_numpy(np.float64)
    year = np.where(np.isnan(year), np.nanmedian(year), year)
    columns = [count, mean, rank, recent, year, days_since_first]
    return np.column_stack([*columns, genres]).astype(np.float32)


def _user_features(
    dataset: Dataset,
    period: pd.DataFrame,
    genres: np.ndarray,
    item_pos: np.ndarray,
    now: int,
    global_mean: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users = dataset.users.set_index("user_id")
    user_ids = np.union1d(users.index.to_numpy(np.int64), period["user_id"].unique())
    upos = np.searchsorted(user_ids, period["user_id"].to_numpy())
    n = len(user_ids)
    ratings = period["rating"].to_numpy(np.float64)
    ts = period["timestamp"].to_numpy(np.int64).astype(np.float64)
    count = np.bincount(upos, minlength=n).astype(np.float64)
    safe = np.maximum(count, 1.0)
    mean = np.where(count > 0, np.bincount(upos, ratings, n) / safe, global_mean)
    sq = np.bincount(upos, ratings**2, n) / safe
    std = np.sqrt(np.maximum(sq - mean**2, 0.0)) * (count > 1)
    last = np.full(n, -np.inf)
    np.maximum.at(last, upos, ts)
    first = np.full(n, np.inf)
    np.minimum.at(first, upos, ts)
    seen = count > 0
    since_last = np.where(seen, (now - last) / DAY, 0.0)
    active = np.where(seen, (last - first) / DAY, 0.0)
    last_year = 1970.0 + np.where(seen, last, now) / (365.25 * DAY)
    affinity = np.zeros((n, genres.shape[1]))
    np.add.at(affinity, upos, genres[item_pos])
    affinity /= safe[:, None]
    demo_frame = users.reindex(user_ids).fillna(UNKNOWN).reset_index()
    demographics = encode_demographics(demo_frame)
    matrix = np.column_stack(
        [count, mean, std, since_last, active, last_year, affinity, demographics]
    )

    default = np.zeros(len(USER_COLUMNS), dtype=np.float64)
    default[USER_COLUMNS.index("user_mean_rating")] = global_mean
    default[USER_COLUMNS.index("user_last_year")] = 1970.0 + now / (365.25 * DAY)
    start = USER_COLUMNS.index(f"user_aff_{GENRE_SLUGS[0]}")
    default[start : start + len(GENRES)] = genres[item_pos].mean(axis=0)
    return user_ids, matrix.astype(np.float32), default.astype(np.float32)
