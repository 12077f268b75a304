"""Canonical tables and vocabularies shared by every MovieLens format.

Canonical tables (pandas DataFrames), ids are MovieLens' own ids:

- interactions: ``user_id`` int64, ``item_id`` int64, ``rating`` float32, ``timestamp`` int64
- users: ``user_id`` int64, ``gender`` ("M", "F" or "unknown"), ``age_bucket`` (one of
  `AGE_BUCKETS` or "unknown"), ``occupation`` (one of `OCCUPATIONS` or "unknown"),
  ``zip_code`` (str, "unknown" when absent)
- items: ``item_id`` int64, ``title`` str, ``year`` float (NaN when unknown), ``genres``
  (tuple of names from `GENRES`)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pandas as pd

UNKNOWN = "unknown"

GENRES: tuple[str, ...] = (
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
# ml-latest spells one genre differently; "(no genres listed)" and "unknown" map to no genre.
GENRE_ALIASES = {"Children": "Children's"}

# ML-1M's age groups, named by their lower bound; ML-100K's exact ages are bucketed the same way.
AGE_BUCKETS: tuple[str, ...] = ("1", "18", "25", "35", "45", "50", "56")

# ML-1M's occupation codes 0..20, in order; ML-100K's names are mapped onto these.
OCCUPATIONS: tuple[str, ...] = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)


class DataFormat(StrEnum):
    """The MovieLens layouts this project reads."""

    ML_100K = "ml-100k"
    ML_1M = "ml-1m"
    ML_LATEST = "ml-latest"


@dataclass(frozen=True)
class Dataset:
    """One MovieLens dataset in canonical form."""

    format: DataFormat
    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    has_demographics: bool
    dropped_unknown_item_ratings: int = 0

    @property
    def n_users(self) -> int:
        """Distinct users with at least one rating."""
        return int(self.interactions["user_id"].nunique())
