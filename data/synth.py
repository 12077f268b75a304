"""Seeded synthetic MovieLens data with planted structure, written in the real file formats.

What is planted (so tests can check that a model learns it):

- taste clusters: every item belongs to one cluster, and each cluster has three core genres that
  most of its items carry;
- each user prefers one cluster (a third of users also a second one); 80% of a user's draws fall
  in their clusters (fewer ratings do when a user has rated most of their clusters' items, as
  pairs are distinct), and ratings there are about 1.5 stars higher;
- Zipf-like popularity (weight ``1 / rank**0.9``) within clusters and overall;
- per-user timestamps that strictly increase, in sessions of a few minutes spread over months;
- demographics (gender, age bucket, occupation, zip region) drawn from per-cluster distributions.

`generate` returns canonical frames (see `data.schema`) plus the truth (`user_cluster`,
`user_second_cluster`, `item_cluster`); `write_movielens` writes them as ML-100K, ML-1M or
ml-latest files that `data.movielens.load_movielens` reads back. Everything is vectorised with
numpy: a million ratings take a few seconds.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from data.schema import AGE_BUCKETS, GENRES, OCCUPATIONS, DataFormat

logger = logging.getLogger(__name__)

# ML-100K and ML-1M have no IMAX genre, so generated items never carry it.
SYNTH_GENRES: tuple[str, ...] = tuple(g for g in GENRES if g != "IMAX")
FIRST_TIMESTAMP = 956_703_932  # ML-1M's first rating (2000-04-25)
IN_CLUSTER_SHARE = 0.8
ZIPF_EXPONENT = 0.9
# Titles that always appear (on the first items): latin-1 letters and commas in titles.
SPECIAL_TITLES = (
    "Amélie",
    "Café au Lait",
    "Good, the Bad and the Ugly, The",
    "Señor Müller, Jr.",
)
_WORDS = (
    "Night", "Summer", "Return", "Secret", "River", "City", "Love", "Dark", "Last", "Dream",
    "Blue", "Garden", "Island", "Storm", "Silent", "Golden", "Road", "Winter", "Heart", "Shadow",
    "Café", "Crème", "Déjà", "Señorita", "Fräulein", "Château", "Noël", "Garçon", "Über",
    "Star", "Ghost", "Kingdom", "Journey", "Stranger", "Mirror", "Paradise", "Fire", "Ocean",
)  # fmt: skip
_AGE_RANGES = {"1": (7, 17), "18": (18, 24), "25": (25, 34), "35": (35, 44),
               "45": (45, 49), "50": (50, 55), "56": (56, 73)}  # fmt: skip
ML100K_GENRES = ("unknown", *SYNTH_GENRES)
ML100K_OCCUPATIONS = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
    "retired", "salesman", "scientist", "student", "technician", "writer",
)  # fmt: skip
# ML-100K has its own, smaller occupation vocabulary: the closest name for each ML-1M code.
OCCUPATION_TO_100K = dict(
    zip(
        OCCUPATIONS,
        ("other", "educator", "artist", "administrator", "student", "other", "doctor",
         "executive", "other", "homemaker", "student", "lawyer", "programmer", "retired",
         "marketing", "scientist", "other", "technician", "other", "none", "writer"),
        strict=True,
    )
)  # fmt: skip


@dataclass(frozen=True)
class SyntheticData:
    """Generated canonical tables plus the planted truth.

    Attributes:
        interactions: canonical interactions sorted by user and timestamp; ratings in 0.5 steps.
        users: canonical users plus an exact ``age`` column (for ML-100K).
        items: canonical items (title with year, year, genres).
        user_cluster: (U,) each user's main cluster, aligned with `users` rows.
        user_second_cluster: (U,) a second preferred cluster, -1 for none.
        item_cluster: (I,) each item's cluster, aligned with `items` rows.
        cluster_genres: each cluster's three core genres.
    """

    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    user_cluster: np.ndarray
    user_second_cluster: np.ndarray
    item_cluster: np.ndarray
    cluster_genres: tuple[tuple[str, ...], ...]

    def preferred_items(self, user_id: int) -> np.ndarray:
        """Item ids in the clusters `user_id` prefers, most popular (planted) first."""
        row = int(np.searchsorted(self.users["user_id"].to_numpy(), user_id))
        clusters = [self.user_cluster[row], self.user_second_cluster[row]]
        mask = np.isin(self.item_cluster, [c for c in clusters if c >= 0])
        counts = self.interactions["item_id"].value_counts()
        ids = self.items["item_id"].to_numpy()[mask]
        order = np.argsort(-counts.reindex(ids).fillna(0).to_numpy(), kind="stable")
        return ids[order]


def generate(
    n_users: int, n_items: int, n_ratings: int, seed: int = 0, n_clusters: int = 8
) -> SyntheticData:
    """Generate a MovieLens-like dataset with planted taste clusters.

    Args:
        n_users: users, ids 1..n_users; every user rates at least one movie.
        n_items: movies, with MovieLens-like gaps in their ids.
        n_ratings: exact number of distinct (user, movie) ratings.
        seed: the same seed gives the same data.
        n_clusters: taste clusters (at most `n_items`).

    Returns:
        The canonical tables and the planted truth.

    Raises:
        ValueError: sizes that cannot hold `n_ratings` distinct ratings.
    """
    if n_users < 1 or n_items < 1 or n_ratings < n_users:
        raise ValueError(
            f"need n_users >= 1, n_items >= 1 and n_ratings >= n_users (every user rates), got "
            f"{n_users=}, {n_items=}, {n_ratings=}"
        )
    if n_ratings > n_users * (n_items // 2):
        raise ValueError(
            f"{n_ratings} ratings do not fit {n_users} users rating at most half of {n_items} items"
        )
    rng = np.random.default_rng(seed)
    k = max(1, min(n_clusters, n_items))
    # Core genres dealt from one shuffled deck: distinct across clusters while they last.
    deck = rng.permutation(len(SYNTH_GENRES))
    core = deck[np.arange(3 * k).reshape(k, 3) % len(SYNTH_GENRES)]

    items, item_cluster, popularity, quality = _items(rng, n_items, k, core)
    user_cluster = rng.integers(0, k, n_users)
    second = (user_cluster + 1 + rng.integers(0, max(k - 1, 1), n_users)) % k
    user_second = np.where((rng.random(n_users) < 1 / 3) & (k > 1), second, -1)
    users = _users(rng, n_users, k, user_cluster)

    per_user = _ratings_per_user(rng, n_users, n_items, n_ratings)
    u_idx, i_idx = _pairs(rng, per_user, user_cluster, user_second, item_cluster, popularity)
    affinity = np.where(
        item_cluster[i_idx] == user_cluster[u_idx],
        0.9,
        np.where(item_cluster[i_idx] == user_second[u_idx], 0.6, -0.6),
    )
    user_bias = rng.normal(0.0, 0.3, n_users)
    latent = 3.2 + quality[i_idx] + user_bias[u_idx] + affinity + rng.normal(0.0, 0.7, len(u_idx))
    rating = np.clip(np.round(latent * 2) / 2, 0.5, 5.0)
    interactions = pd.DataFrame(
        {
            "user_id": (u_idx + 1).astype(np.int64),
            "item_id": items["item_id"].to_numpy()[i_idx],
            "rating": rating.astype(np.float32),
            "timestamp": _timestamps(rng, u_idx, n_users),
        }
    )
    interactions = interactions.sort_values(["user_id", "timestamp"], kind="mergesort")
    return SyntheticData(
        interactions=interactions.reset_index(drop=True),
        users=users,
        items=items,
        user_cluster=user_cluster,
        user_second_cluster=user_second,
        item_cluster=item_cluster,
        cluster_genres=tuple(tuple(SYNTH_GENRES[g] for g in row) for row in core),
    )


def _items(
    rng: np.random.Generator, n: int, k: int, core: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Catalog, item cluster, popularity weight and quality offset per item."""
    ids = np.sort(rng.choice(np.arange(1, n + n // 10 + 2), n, replace=False)).astype(np.int64)
    cluster = rng.permutation(np.arange(n) % k)  # every cluster gets items
    popularity = 1.0 / rng.permutation(np.arange(1, n + 1)) ** ZIPF_EXPONENT
    quality = rng.normal(0.0, 0.35, n)
    # 1-3 genres per item; each pick is one of the cluster's core genres with probability 0.85.
    n_genres = rng.choice([1, 2, 3], n, p=[0.5, 0.35, 0.15])
    picks = np.where(
        rng.random((n, 3)) < 0.85,
        core[cluster[:, None], rng.integers(0, 3, (n, 3))],
        rng.integers(0, len(SYNTH_GENRES), (n, 3)),
    )
    flags = np.zeros((n, len(SYNTH_GENRES)), dtype=bool)
    for j in range(3):
        rows = np.flatnonzero(n_genres > j)
        flags[rows, picks[rows, j]] = True
    year = np.clip(2000 - np.floor(rng.exponential(12.0, n)), 1919, 2000).astype(int)
    words = np.array(_WORDS)
    first, second = words[rng.integers(0, len(words), n)], words[rng.integers(0, len(words), n)]
    style = rng.random(n)
    bases = [
        f"{a}, The" if s < 0.1 else f"{a}, {b}" if s < 0.15 else f"{a} {b}" if s < 0.7 else a
        for a, b, s in zip(first, second, style, strict=True)
    ]
    bases[: len(SPECIAL_TITLES)] = SPECIAL_TITLES[:n]
    genre_names = np.array(SYNTH_GENRES)
    frame = pd.DataFrame(
        {
            "item_id": ids,
            "title": [f"{b} ({y})" for b, y in zip(bases, year, strict=True)],
            "year": year.astype("float64"),
            "genres": [tuple(genre_names[row]) for row in flags],
        }
    )
    return frame, cluster, popularity, quality


def _categorical(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One draw per entry of `rows` from the categorical distribution ``probs[row]``."""
    cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    draws = (cdf[rows] < rng.random(len(rows))[:, None]).sum(axis=1)
    return np.minimum(draws, probs.shape[1] - 1)


def _users(rng: np.random.Generator, n: int, k: int, cluster: np.ndarray) -> pd.DataFrame:
    """Demographics drawn from per-cluster distributions (so they predict taste)."""

    def peaked(width: int, n_peaks: int) -> np.ndarray:
        probs = np.full((k, width), 0.3)
        for c in range(k):
            probs[c, rng.choice(width, n_peaks, replace=False)] += 3.0
        return probs

    p_female = rng.uniform(0.15, 0.85, k)
    gender = np.where(rng.random(n) < p_female[cluster], "F", "M")
    age_bucket = np.array(AGE_BUCKETS)[_categorical(rng, peaked(len(AGE_BUCKETS), 1), cluster)]
    lo = np.array([_AGE_RANGES[b][0] for b in age_bucket])
    hi = np.array([_AGE_RANGES[b][1] for b in age_bucket])
    age = rng.integers(lo, hi + 1)
    occupation = np.array(OCCUPATIONS)[_categorical(rng, peaked(len(OCCUPATIONS), 3), cluster)]
    digit = _categorical(rng, peaked(10, 1), cluster)
    zips = [f"{d}{r:04d}" for d, r in zip(digit, rng.integers(0, 10_000, n), strict=True)]
    return pd.DataFrame(
        {
            "user_id": np.arange(1, n + 1, dtype=np.int64),
            "gender": gender,
            "age_bucket": age_bucket,
            "occupation": occupation,
            "zip_code": zips,
            "age": age.astype(np.int64),
        }
    )


def _ratings_per_user(
    rng: np.random.Generator, n_users: int, n_items: int, total: int
) -> np.ndarray:
    """Heavy-tailed ratings per user, at least min(20, total // n_users), summing to `total`."""
    cap = n_items // 2
    floor = max(1, min(20, total // n_users))
    counts = np.full(n_users, floor, dtype=np.int64)
    weights = rng.lognormal(0.0, 1.0, n_users)
    while (left := total - int(counts.sum())) > 0:
        open_ = counts < cap
        share = np.where(open_, weights, 0.0)
        counts += np.minimum(rng.multinomial(left, share / share.sum()), cap - counts)
    return counts


def _pairs(
    rng: np.random.Generator,
    per_user: np.ndarray,
    user_cluster: np.ndarray,
    user_second: np.ndarray,
    item_cluster: np.ndarray,
    popularity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) index pairs, `per_user[u]` of them for user u."""
    n_items = len(item_cluster)
    # Items grouped by cluster; cdf runs from c to c+1 inside cluster c's block.
    by_cluster = np.argsort(item_cluster, kind="stable")
    block = item_cluster[by_cluster]
    weight = popularity[by_cluster]
    cum = np.cumsum(weight)
    starts = np.searchsorted(block, np.arange(block.max() + 1))
    block_before = np.concatenate([[0.0], cum])[starts][block]
    block_total = np.bincount(block, weights=weight)[block]
    cluster_cdf = block + (cum - block_before) / block_total
    global_cdf = np.cumsum(popularity) / popularity.sum()

    have = np.zeros(0, dtype=np.int64)  # keys user * n_items + item
    for round_ in range(1_000):
        deficit = per_user - np.bincount(have // n_items, minlength=len(per_user))
        if not deficit.any():
            break
        draw = np.repeat(np.arange(len(per_user)), deficit + (deficit + 3) // 4 * (deficit > 0))
        u = rng.random(len(draw))
        if round_ < 8:
            second = user_second[draw]
            use_second = (second >= 0) & (rng.random(len(draw)) < 0.4)
            cluster = np.where(use_second, second, user_cluster[draw])
            pos = np.searchsorted(cluster_cdf, cluster + u, side="right")
            in_cluster = by_cluster[np.minimum(pos, n_items - 1)]
            popular = np.minimum(np.searchsorted(global_cdf, u, side="right"), n_items - 1)
            item = np.where(rng.random(len(draw)) < IN_CLUSTER_SHARE, in_cluster, popular)
        else:  # rare top-up for users whose clusters are nearly exhausted
            item = rng.integers(0, n_items, len(draw))
        keys = draw * n_items + item  # grouped by user, since `draw` is
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        repeat = np.concatenate([[False], ordered[1:] == ordered[:-1]])
        pos = np.minimum(np.searchsorted(have, ordered), max(len(have) - 1, 0))
        known = have[pos] == ordered if len(have) else np.zeros(len(ordered), dtype=bool)
        fresh = keys[np.sort(order[~repeat & ~known])]  # new pairs, in draw order
        # Keep, per user, only as many new pairs as the user still lacks.
        users = fresh // n_items
        rank = np.arange(len(fresh)) - np.searchsorted(users, users)
        have = np.sort(np.concatenate([have, fresh[rank < deficit[users]]]))
    else:
        raise RuntimeError("could not draw enough distinct ratings")  # unreachable by the caps
    have = rng.permutation(have)  # rating order within a user is random, not by popularity
    return have // n_items, have % n_items


def _timestamps(rng: np.random.Generator, user_idx: np.ndarray, n_users: int) -> np.ndarray:
    """Strictly increasing times per user: sessions of minutes, days to weeks apart."""
    order = np.argsort(user_idx, kind="stable")
    users = user_idx[order]
    first = np.searchsorted(users, users)
    k = np.arange(len(users)) - first  # position of the rating in its user's sequence
    session_len = rng.integers(5, 30, n_users)[users]
    span_days = np.clip(rng.lognormal(np.log(90), 1.0, n_users), 1, 900)[users]
    new_session = (k % session_len == 0) & (k > 0)
    # Session gaps: exponential shares of the user's span, normalised so they add up to it.
    share = np.where(new_session, rng.exponential(1.0, len(users)), 0.0)
    share /= np.maximum(np.bincount(users, weights=share, minlength=n_users), 1e-12)[users]
    step = np.where(
        new_session,
        3_600 + share * span_days * 86_400,
        20 + rng.exponential(90.0, len(users)),
    ).astype(np.int64)
    step[k == 0] = 0
    total = np.cumsum(step)
    elapsed = total - total[first]
    start = FIRST_TIMESTAMP + rng.integers(0, 2 * 365 * 86_400, n_users)
    out = np.empty(len(users), dtype=np.int64)
    out[order] = start[users] + elapsed
    return out


def write_movielens(data: SyntheticData, out_dir: str | Path, format: str | DataFormat) -> Path:
    """Write `data` as the files of a real MovieLens release.

    Args:
        data: what `generate` returned.
        out_dir: directory to write into (created if needed).
        format: ``ml-100k`` (u.data, u.item, u.user, u.genre, u.occupation), ``ml-1m``
            (ratings.dat, movies.dat, users.dat) or ``ml-latest`` (ratings.csv, movies.csv).
            The first two hold whole stars: half stars are rounded up.

    Returns:
        `out_dir`.
    """
    fmt = DataFormat(format)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inter = data.interactions
    if fmt is not DataFormat.ML_LATEST:
        inter = inter.assign(rating=np.floor(inter["rating"] + 0.5).clip(1, 5).astype(np.int64))
    if fmt is DataFormat.ML_100K:
        _write_100k(data, inter, out)
    elif fmt is DataFormat.ML_1M:
        _write_1m(data, inter, out)
    else:
        _write_latest(data, inter, out)
    logger.info("wrote %d ratings in %s format to %s", len(inter), fmt.value, out)
    return out


def _table(frame: pd.DataFrame, sep: str) -> str:
    """Rows of `frame` joined by `sep`, no header, no quoting (fields never contain `sep`)."""
    text = frame.to_csv(sep="\t", header=False, index=False, quoting=csv.QUOTE_NONE)
    return text if sep == "\t" else text.replace("\t", sep)


def _write_100k(data: SyntheticData, inter: pd.DataFrame, out: Path) -> None:
    (out / "u.data").write_text(_table(inter, "\t"), encoding="ascii")
    items = data.items
    flags = np.array([[g in genres for g in SYNTH_GENRES] for genres in items["genres"]])
    flags = np.column_stack([~flags.any(axis=1), flags]).astype(int)
    lines = [
        "|".join(
            [str(i), t, f"01-Jan-{int(y)}", "", f"http://us.imdb.com/M/title-exact?{quote(t)}"]
            + [str(f) for f in row]
        )
        for i, t, y, row in zip(items["item_id"], items["title"], items["year"], flags, strict=True)
    ]
    (out / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    users = data.users.assign(occupation=data.users["occupation"].map(OCCUPATION_TO_100K))
    cols = ["user_id", "age", "gender", "occupation", "zip_code"]
    (out / "u.user").write_text(_table(users[cols], "|"), encoding="ascii")
    genres = "".join(f"{g}|{j}\n" for j, g in enumerate(ML100K_GENRES))
    (out / "u.genre").write_text(genres + "\n", encoding="ascii")
    (out / "u.occupation").write_text("\n".join(ML100K_OCCUPATIONS) + "\n", encoding="ascii")


def _write_1m(data: SyntheticData, inter: pd.DataFrame, out: Path) -> None:
    (out / "ratings.dat").write_text(_table(inter, "::"), encoding="latin-1")
    movies = data.items.assign(genres=["|".join(g) for g in data.items["genres"]])
    (out / "movies.dat").write_text(
        _table(movies[["item_id", "title", "genres"]], "::"), encoding="latin-1"
    )
    users = data.users.assign(occupation=data.users["occupation"].map(OCCUPATIONS.index))
    cols = ["user_id", "gender", "age_bucket", "occupation", "zip_code"]
    (out / "users.dat").write_text(_table(users[cols], "::"), encoding="latin-1")


def _write_latest(data: SyntheticData, inter: pd.DataFrame, out: Path) -> None:
    ratings = inter.rename(columns={"user_id": "userId", "item_id": "movieId"})
    ratings.to_csv(out / "ratings.csv", index=False, float_format="%.1f", lineterminator="\n")
    genres = [
        "|".join("Children" if g == "Children's" else g for g in gs) or "(no genres listed)"
        for gs in data.items["genres"]
    ]
    movies = pd.DataFrame(
        {"movieId": data.items["item_id"], "title": data.items["title"], "genres": genres}
    )
    buffer = io.StringIO()
    movies.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    (out / "movies.csv").write_text(buffer.getvalue(), encoding="utf-8")
