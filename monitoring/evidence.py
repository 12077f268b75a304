"""How much evidence a drift figure rests on: the rows looked at and what one observation is.

A request scores ~100 candidates. Its candidate-scope features (the item's, the cross features)
differ per row; its request-scope features (the user's) repeat one value on every row, so they
are ONE observation per request however many rows carry them. The in-process monitor and the
Evidently job both look at the same evenly strided rows of a request (`strided_rows`, offset
rotating with the request counter so every candidate rank is covered over time) and count a
request-scope feature on the request's first looked-at row only (`first_row_per_request`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def strided_rows(x: np.ndarray, limit: int, offset: int) -> np.ndarray:
    """An evenly strided subset of at most `limit` rows of `x` (all rows when `limit` is 0).

    Args:
        x: (N, F) one request's rows.
        limit: rows kept at most; 0 keeps every row.
        offset: the request's counter; the subset starts at ``offset % stride``.

    Returns:
        A view of `x` with at most `limit` rows.
    """
    rows = len(x)
    if 0 < limit < rows:
        stride = -(-rows // limit)
        return x[offset % stride :: stride]
    return x


def first_row_per_request(
    frame: pd.DataFrame, per_request: Sequence[str], request_column: str
) -> pd.DataFrame:
    """`frame` with the request-scope columns blanked (NaN) on all but each request's first row.

    Without `request_column` every row counts as its own request (the frame is returned as is).
    Evidently drops NaN before it scores a column, so each request then counts once there.
    """
    columns = [c for c in per_request if c in frame.columns]
    if request_column not in frame.columns or not columns:
        return frame
    repeated = frame[request_column].duplicated().to_numpy()
    out = frame.copy()
    out.loc[repeated, columns] = np.nan
    return out
