"""The evaluation protocol's per-user temporal split (see DESIGN.md).

Per user, ratings are sorted by (timestamp, item id); the last `fraction` of them (rounded up, at
least one) form the held-out part and the rest the kept part. Users with a single rating keep it
(they cannot give one away and still have history). Validation is carved from the kept part the
same way, so the windows are ordered in time per user: fit < valid < test.

Training is one recipe applied at a time cut (`Windows`): given the interactions known at the
cut, the last window of each user is `valid` and the rest `fit`. Deployment applies it to all the
data (`recipe_windows(all)`); the backtest applies it one step earlier, to `Split.train`, and
scores the held-out `Split.test` (`temporal_split(all).windows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

DEFAULT_FRACTION = 0.2


@dataclass(frozen=True)
class Windows:
    """The training recipe's windows at one time cut.

    Attributes:
        known: everything known at the cut (= fit + valid): the serving state.
        fit: `known` minus each user's last window: the retriever's training data and the
            ranker's feature period.
        valid: each user's last window of `known`: the retriever's early stopping and the
            ranker's labels.
    """

    known: pd.DataFrame
    fit: pd.DataFrame
    valid: pd.DataFrame


def recipe_windows(known: pd.DataFrame, fraction: float = DEFAULT_FRACTION) -> Windows:
    """The recipe's windows over `known` (deployment: all the data the user gave)."""
    fit, valid = holdout_last(known, fraction)
    ordered = known.sort_values(["user_id", "timestamp", "item_id"], kind="mergesort")
    return Windows(known=ordered.reset_index(drop=True), fit=fit, valid=valid)


@dataclass(frozen=True)
class Split:
    """Interactions split by the protocol.

    Attributes:
        train: everything before each user's test window (= fit + valid).
        fit: train minus the validation window; models learn from this.
        valid: the last part of each user's train ratings, for tuning and early stopping.
        test: the last part of each user's ratings, for the final figures only.
    """

    train: pd.DataFrame
    fit: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    @property
    def windows(self) -> Windows:
        """The recipe's windows one step before the test window (the backtest)."""
        return Windows(known=self.train, fit=self.fit, valid=self.valid)


def holdout_last(
    interactions: pd.DataFrame, fraction: float = DEFAULT_FRACTION
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off each user's last `fraction` of ratings (rounded up, at least one).

    Returns:
        (kept, held_out), both sorted by user, timestamp and item id.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    ordered = interactions.sort_values(["user_id", "timestamp", "item_id"], kind="mergesort")
    ordered = ordered.reset_index(drop=True)
    position = ordered.groupby("user_id", sort=False).cumcount().to_numpy()
    count = ordered.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
    frac = Fraction(fraction).limit_denominator(10_000)
    # Exact integer ceil(count * frac), with at least one held out when the user has two or more.
    n_held = -(-count * frac.numerator // frac.denominator)
    n_held = np.where(count >= 2, np.maximum(n_held, 1), 0)
    held = position >= count - n_held
    return ordered[~held].reset_index(drop=True), ordered[held].reset_index(drop=True)


def temporal_split(interactions: pd.DataFrame, fraction: float = DEFAULT_FRACTION) -> Split:
    """Apply the protocol: test from all ratings, then validation from the rest."""
    train, test = holdout_last(interactions, fraction)
    fit, valid = holdout_last(train, fraction)
    return Split(train=train, fit=fit, valid=valid, test=test)
