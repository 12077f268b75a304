"""Batch drift job: a declarative `DriftSpec` run as an Evidently report, returned typed.

Reference = the training-feature sample stored in the ``drift-reference`` artifact; current = the
inference log (sampled to ``report_max_rows`` rows so the job stays fast on large logs). Evidently
(0.7.x API: ``Report``, ``Dataset``, ``DataDefinition``, ``DataDriftPreset``) scores every column
with PSI and with KL divergence; the spec's method and threshold decide which columns drifted.
The report is written as ``drift-report.html`` and ``drift-report.json`` (Evidently's own snapshot)
plus ``drift-summary.json`` (the `DriftResult`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from monitoring.baseline import Baseline
from monitoring.errors import FeatureMismatchError, NoLoggedTrafficError
from monitoring.inference_log import read_log

logger = logging.getLogger(__name__)

Method = Literal["psi", "kl"]
_EVIDENTLY_METHOD = {"psi": "psi", "kl": "kl_div"}
SUMMARY_FILE = "drift-summary.json"
HTML_FILE = "drift-report.html"
SNAPSHOT_FILE = "drift-report.json"


@dataclass(frozen=True)
class DriftSpec:
    """What to compare and how.

    Attributes:
        numeric: numeric columns.
        categorical: categorical columns (category codes).
        method: score that decides drift, ``psi`` or ``kl`` (both are always reported).
        threshold: a column drifted when its score is at or above this.
        drift_share: the dataset drifted when at least this share of columns drifted.
        max_rows: logged rows sampled at most.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    method: Method = "psi"
    threshold: float = 0.25
    drift_share: float = 0.5
    max_rows: int = 20_000

    @property
    def columns(self) -> list[str]:
        """Every compared column."""
        return [*self.numeric, *self.categorical]

    @classmethod
    def from_baseline(cls, baseline: Baseline, **options: Any) -> DriftSpec:
        """A spec over every feature of a baseline, with its numeric/categorical kinds."""
        numeric = tuple(f.name for f in baseline.features if f.kind == "numeric")
        categorical = tuple(f.name for f in baseline.features if f.kind == "categorical")
        return cls(numeric=numeric, categorical=categorical, **options)


@dataclass(frozen=True)
class ColumnDrift:
    """One column's scores."""

    column: str
    kind: str
    psi: float | None  # None: no value of the column in the log or the reference (not compared)
    kl: float | None
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """Outcome of one drift job."""

    columns: tuple[ColumnDrift, ...]
    method: Method
    threshold: float
    share_drifted: float
    dataset_drift: bool
    reference_rows: int
    current_rows: int
    seconds: float
    out_dir: str

    @property
    def drifted(self) -> list[str]:
        """Names of the drifted columns."""
        return [c.column for c in self.columns if c.drifted]

    def summary(self) -> str:
        """One line for humans."""
        verdict = "DRIFT" if self.dataset_drift else "no dataset drift"
        named = ", ".join(self.drifted) or "none"
        return (
            f"{verdict}: {len(self.drifted)}/{len(self.columns)} columns drifted "
            f"({self.method} >= {self.threshold:g}): {named}; {self.current_rows} logged rows vs "
            f"{self.reference_rows} reference rows in {self.seconds:.1f}s -> {self.out_dir}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what GET /drift/report returns)."""
        data = asdict(self)
        data["drifted"] = self.drifted
        data["summary"] = self.summary()
        return data


def run_drift_report(
    current: str | Path | pd.DataFrame,
    reference: pd.DataFrame,
    out_dir: str | Path,
    spec: DriftSpec,
    seed: int = 0,
) -> DriftResult:
    """Compare logged traffic with the training reference and write the report.

    Args:
        current: the inference-log directory, one parquet file, or a frame of feature rows.
        reference: the training-feature sample (the ``drift-reference`` artifact's parquet).
        out_dir: where the HTML, the Evidently JSON and the summary JSON go (created).
        spec: columns, method, threshold, sample size.
        seed: seed of the row sample.

    Returns:
        Per-column PSI/KL with drifted flags, share drifted and the overall verdict.

    Raises:
        NoLoggedTrafficError: the log holds no rows.
        FeatureMismatchError: a spec column is missing from the reference or the log.
    """
    started = time.perf_counter()
    if isinstance(current, pd.DataFrame):
        cur = current.sample(n=min(len(current), spec.max_rows), random_state=seed)
        if cur.empty:
            raise NoLoggedTrafficError("the given frame")
    else:
        cur = read_log(current, columns=spec.columns, max_rows=spec.max_rows, seed=seed)
    ref = reference.sample(n=min(len(reference), spec.max_rows), random_state=seed)
    for frame in (ref, cur):
        missing = [c for c in spec.columns if c not in frame.columns]
        if missing:
            raise FeatureMismatchError(spec.columns, missing)
    ref, cur = _prepare(ref, spec), _prepare(cur, spec)
    # A column with no value on one side (e.g. a candidate source switched off, or never
    # proposing for the logged users) cannot be compared: Evidently fails on it.
    comparable = [c for c in spec.numeric if cur[c].notna().any() and ref[c].notna().any()]
    comparable += list(spec.categorical)
    from evidently import DataDefinition, Dataset, Report  # heavy (~10 s cold): only here
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[c for c in spec.numeric if c in comparable],
        categorical_columns=list(spec.categorical),
    )
    other = "kl" if spec.method == "psi" else "psi"
    report = Report(
        [
            DataDriftPreset(
                columns=[c for c in spec.columns if c in comparable],
                method=_EVIDENTLY_METHOD[spec.method],
                threshold=spec.threshold,
                drift_share=spec.drift_share,
            ),
            *(ValueDrift(column=c, method=_EVIDENTLY_METHOD[other]) for c in comparable),
        ]
    )
    snapshot = report.run(
        Dataset.from_pandas(cur[comparable], data_definition=definition),
        Dataset.from_pandas(ref[comparable], data_definition=definition),
    )
    scores = _scores(snapshot.dict())
    columns = tuple(
        ColumnDrift(
            column=c,
            kind="categorical" if c in spec.categorical else "numeric",
            psi=scores.get((c, "psi")),
            kl=scores.get((c, "kl_div")),
            drifted=scores.get((c, _EVIDENTLY_METHOD[spec.method]), 0.0) >= spec.threshold,
        )
        for c in spec.columns
    )
    share = sum(c.drifted for c in columns) / max(len(columns), 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out / HTML_FILE))
    snapshot.save_json(str(out / SNAPSHOT_FILE))
    result = DriftResult(
        columns=columns,
        method=spec.method,
        threshold=spec.threshold,
        share_drifted=share,
        dataset_drift=share >= spec.drift_share,
        reference_rows=len(ref),
        current_rows=len(cur),
        seconds=time.perf_counter() - started,
        out_dir=str(out),
    )
    (out / SUMMARY_FILE).write_text(json.dumps(result.to_dict(), indent=1))
    logger.info("%s", result.summary())
    return result


def load_latest_result(out_dir: str | Path) -> dict[str, Any] | None:
    """The last summary written to `out_dir` (None when no report was run yet)."""
    path = Path(out_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _prepare(frame: pd.DataFrame, spec: DriftSpec) -> pd.DataFrame:
    """Spec columns only; categorical codes as strings so Evidently treats them as labels."""
    out = frame[spec.columns].reset_index(drop=True).astype("float64")
    for c in spec.categorical:
        out[c] = out[c].map(lambda v: "nan" if pd.isna(v) else f"{v:g}")
    return out


def _scores(snapshot: dict[str, Any]) -> dict[tuple[str, str], float]:
    """(column, evidently method) -> score, from the ValueDrift metrics of a snapshot dict."""
    scores = {}
    for metric in snapshot["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            scores[config["column"], config["method"]] = float(metric["value"])
    return scores
