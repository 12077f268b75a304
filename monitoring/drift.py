"""Batch drift job: a declarative `DriftSpec` run as an Evidently report, returned typed.

Reference = the training-feature sample stored in the ``drift-reference`` artifact; current = the
inference log (a sample of whole requests, at most ``report_max_rows`` rows, so the job stays fast
on large logs).

The job computes the same statistics on the same definitions as the in-process monitor
(`monitoring.monitor`), so the two agree on the same traffic:
- every value is put in its bin of the training baseline (quantile bins with open edge bins,
  categories plus ``other``; NaN in the lowest bin), and Evidently compares the bin labels;
- PSI and KL are registered with Evidently as stat tests that call `monitoring.divergence.psi_kl`
  on the logged bin counts against the baseline's bin frequencies (the full training matrix,
  same smoothing floor), as the monitor does; the reference sample only draws Evidently's
  reference histograms, and Evidently's own empty-bin handling never enters;
- evidence is counted in requests: a request-scope feature counts on one row per request
  (`monitoring.evidence`), and below ``min_requests`` logged requests the verdict is
  ``insufficient_data`` with no column flagged.

Evidently (0.7.x API: ``Report``, ``Dataset``, ``DataDefinition``, ``DataDriftPreset``,
``ValueDrift``) scores every column with both; the spec's method and threshold decide which
columns drifted. The report is written as ``drift-report.html`` and ``drift-report.json``
(Evidently's own snapshot) plus ``drift-summary.json`` (the `DriftResult`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from monitoring.baseline import Baseline
from monitoring.divergence import psi_kl
from monitoring.errors import FeatureMismatchError, NoLoggedTrafficError
from monitoring.inference_log import REQUEST_COLUMN, read_log

logger = logging.getLogger(__name__)

Method = Literal["psi", "kl"]
Verdict = Literal["ok", "drift", "insufficient_data"]
SUMMARY_FILE = "drift-summary.json"
HTML_FILE = "drift-report.html"
SNAPSHOT_FILE = "drift-report.json"
HISTORY_DIR = "history"  # one summary per run, `<UTC time>.json`, the newest `keep` kept
_REGISTERED: set[str] = set()  # stat tests this process registered with Evidently
_RUNNING: ContextVar[DriftSpec | None] = ContextVar("drift_spec", default=None)


@dataclass(frozen=True)
class DriftSpec:
    """What to compare and how.

    Attributes:
        baseline: the training baseline: columns, their kinds and scopes, and the bins.
        method: score that decides drift, ``psi`` or ``kl`` (both are always reported).
        threshold: a column drifted when its score is at or above this.
        drift_share: the dataset drifted when at least this share of columns drifted.
        max_rows: logged rows sampled at most (whole requests).
        min_requests: logged requests needed before any column is flagged.
        smoothing: floor on bin frequencies before PSI/KL (the monitor's ``smoothing``).
    """

    baseline: Baseline
    method: Method = "psi"
    threshold: float = 0.25
    drift_share: float = 0.5
    max_rows: int = 20_000
    min_requests: int = 100
    smoothing: float = 1e-4

    @property
    def columns(self) -> list[str]:
        """Every compared column, in the baseline's order."""
        return self.baseline.names

    @property
    def categorical(self) -> list[str]:
        """The columns that hold category codes."""
        return [f.name for f in self.baseline.features if f.kind == "categorical"]

    @classmethod
    def from_baseline(cls, baseline: Baseline, **options: Any) -> DriftSpec:
        """A spec over every feature of a baseline."""
        return cls(baseline=baseline, **options)

    def bin_labels(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Each value's baseline bin label (e.g. ``[0.5, 1.2)`` or ``other``), per column."""
        x = frame[self.columns].to_numpy(np.float64)
        ids = self.baseline.binning().bins(x)  # (F, N)
        return pd.DataFrame(
            {
                f.name: np.asarray(f.labels(), dtype=object)[ids[j]]
                for j, f in enumerate(self.baseline.features)
            }
        )


@dataclass(frozen=True)
class ColumnDrift:
    """One column's scores."""

    column: str
    kind: str
    scope: str  # "request": one observation per request; "candidate": one per row
    psi: float | None  # None: Evidently returned no score for the column
    kl: float | None
    drifted: bool
    observations: int  # logged values behind the scores (requests or rows, see scope)


@dataclass(frozen=True)
class DriftResult:
    """Outcome of one drift job."""

    columns: tuple[ColumnDrift, ...]
    method: Method
    threshold: float
    share_drifted: float
    dataset_drift: bool
    status: Verdict
    reference_rows: int  # the sample behind the report's reference histograms
    baseline_rows: int  # the training rows behind the baseline frequencies the scores use
    current_rows: int
    current_requests: int
    min_requests: int
    seconds: float
    out_dir: str
    pid: int  # the process that ran the job (the service's drift job is never the service)

    @property
    def drifted(self) -> list[str]:
        """Names of the drifted columns."""
        return [c.column for c in self.columns if c.drifted]

    def summary(self) -> str:
        """One line for humans."""
        evidence = (
            f"{self.current_requests} logged requests ({self.current_rows} rows) vs "
            f"{self.reference_rows} reference rows in {self.seconds:.1f}s -> {self.out_dir}"
        )
        if self.status == "insufficient_data":
            return (
                f"insufficient data: fewer than {self.min_requests} logged requests, no column "
                f"flagged; {evidence}"
            )
        verdict = "DRIFT" if self.dataset_drift else "no dataset drift"
        named = ", ".join(self.drifted) or "none"
        return (
            f"{verdict}: {len(self.drifted)}/{len(self.columns)} columns drifted "
            f"({self.method} >= {self.threshold:g}): {named}; {evidence}"
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
    keep: int = 50,
) -> DriftResult:
    """Compare logged traffic with the training reference and write the report.

    Args:
        current: the inference-log directory, one parquet file, or a frame of feature rows (with
            a ``request_id`` column, or else one request per row).
        reference: the training-feature sample (the ``drift-reference`` artifact's parquet).
        out_dir: where the HTML, the Evidently JSON and the summary JSON go (created).
        spec: baseline, method, threshold, sample size, minimum evidence.
        seed: seed of the samples.
        keep: summaries kept in `out_dir`/history (older ones are deleted).

    Returns:
        Per-column PSI/KL with drifted flags and observations, share drifted and the verdict.

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
        cur = read_log(
            current, columns=spec.columns, max_rows=spec.max_rows, seed=seed, request_ids=True
        )
    ref = reference.sample(n=min(len(reference), spec.max_rows), random_state=seed)
    for frame in (ref, cur):
        missing = [c for c in spec.columns if c not in frame.columns]
        if missing:
            raise FeatureMismatchError(spec.columns, missing)
    requests = cur[REQUEST_COLUMN] if REQUEST_COLUMN in cur else pd.Series(np.arange(len(cur)))
    n_requests = int(requests.nunique())
    ref_bins, cur_bins = spec.bin_labels(ref), spec.bin_labels(cur)
    # One observation per request for request-scope columns: blank their repeats (Evidently
    # drops missing values before it scores a column).
    cur_bins.loc[requests.duplicated().to_numpy(), spec.baseline.per_request] = None
    psi_name, kl_name = register_binned_stattests()
    decide = psi_name if spec.method == "psi" else kl_name
    from evidently import DataDefinition, Dataset, Report  # heavy (~10 s cold): only here
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(categorical_columns=spec.columns)
    report = Report(
        [
            DataDriftPreset(
                columns=spec.columns,
                method=decide,
                threshold=spec.threshold,
                drift_share=spec.drift_share,
            ),
            *(
                ValueDrift(column=c, method=kl_name if decide == psi_name else psi_name)
                for c in spec.columns
            ),
        ]
    )
    running = _RUNNING.set(spec)  # what the registered stat tests score against
    try:
        snapshot = report.run(
            Dataset.from_pandas(cur_bins, data_definition=definition),
            Dataset.from_pandas(ref_bins, data_definition=definition),
        )
    finally:
        _RUNNING.reset(running)
    scores = _scores(snapshot.dict())
    enough = n_requests >= spec.min_requests
    columns = tuple(
        ColumnDrift(
            column=f.name,
            kind=f.kind,
            scope=f.scope,
            psi=scores.get((f.name, psi_name)),
            kl=scores.get((f.name, kl_name)),
            drifted=enough and scores.get((f.name, decide), 0.0) >= spec.threshold,
            observations=int(cur_bins[f.name].notna().sum()),
        )
        for f in spec.baseline.features
    )
    share = sum(c.drifted for c in columns) / max(len(columns), 1)
    dataset_drift = enough and share >= spec.drift_share
    verdict: Verdict = (
        "insufficient_data" if not enough else "drift" if any(c.drifted for c in columns) else "ok"
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out / HTML_FILE))
    snapshot.save_json(str(out / SNAPSHOT_FILE))
    result = DriftResult(
        columns=columns,
        method=spec.method,
        threshold=spec.threshold,
        share_drifted=share,
        dataset_drift=dataset_drift,
        status=verdict,
        reference_rows=len(ref),
        baseline_rows=spec.baseline.n_rows,
        current_rows=len(cur),
        current_requests=n_requests,
        min_requests=spec.min_requests,
        seconds=time.perf_counter() - started,
        out_dir=str(out),
        pid=os.getpid(),
    )
    summary = json.dumps(result.to_dict(), indent=1)
    _write_atomic(out / SUMMARY_FILE, summary)
    history = out / HISTORY_DIR
    history.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time() % 1:.6f}"[1:] + "Z"
    _write_atomic(history / f"{stamp}.json", summary)
    for old in sorted(history.glob("*.json"))[:-keep]:
        old.unlink(missing_ok=True)
    logger.info("%s", result.summary())
    return result


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` so a reader sees the old file or the new one, never half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def list_history(out_dir: str | Path) -> list[dict[str, Any]]:
    """The kept report summaries, newest first, each as its headline figures."""
    rows = []
    for path in sorted((Path(out_dir) / HISTORY_DIR).glob("*.json"), reverse=True):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # deleted or being replaced meanwhile
        rows.append(
            {
                "at": path.stem,
                "status": data.get("status"),
                "drifted": data.get("drifted", []),
                "share_drifted": data.get("share_drifted"),
                "current_requests": data.get("current_requests"),
                "current_rows": data.get("current_rows"),
                "seconds": data.get("seconds"),
            }
        )
    return rows


def binned_scores(
    reference: pd.Series, current: pd.Series, spec: DriftSpec | None = None
) -> tuple[float, float]:
    """PSI and KL(current || reference) of a column's bin labels, as the monitor computes them.

    Args:
        reference: the reference sample's labels (used only without `spec`).
        current: the logged labels; named after the column.
        spec: the running job's spec: the column's baseline frequencies over all its bins are
            the reference distribution, and its smoothing floor applies.

    Returns:
        (psi, kl), both >= 0.
    """
    cur = current.dropna()
    features = {f.name: f for f in spec.baseline.features} if spec is not None else {}
    feature = features.get(str(current.name))
    if spec is not None and feature is not None:
        labels = feature.labels()
        ref_counts = np.asarray(feature.freq, dtype=np.float64)
        smoothing = spec.smoothing
    else:  # outside a job: the two samples, over the labels either holds
        ref = reference.dropna()
        labels = sorted(set(ref.unique()) | set(cur.unique()))
        ref_counts = ref.value_counts().reindex(labels, fill_value=0).to_numpy(np.float64)
        smoothing = 1e-4
    if not labels:
        return 0.0, 0.0
    cur_counts = cur.value_counts().reindex(labels, fill_value=0).to_numpy(np.float64)
    psi, kl = psi_kl(cur_counts, ref_counts, np.array([0, len(labels)]), smoothing)
    return float(psi[0]), float(kl[0])


def register_binned_stattests() -> tuple[str, str]:
    """Register the PSI and KL of `binned_scores` with Evidently; returns their method names.

    Idempotent. During `run_drift_report` they score against the running spec's baseline.
    """
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    names = ("recsys_psi", "recsys_kl")
    for index, (name, shown) in enumerate(zip(names, ("PSI", "KL divergence"), strict=True)):
        if name in _REGISTERED:
            continue

        def score(ref: pd.Series, cur: pd.Series, _kind: Any, threshold: float, i=index):
            value = binned_scores(ref, cur, _RUNNING.get())[i]
            return value, value >= threshold

        test = StatTest(
            name=name,
            display_name=f"{shown} against the training baseline's bins",
            allowed_feature_types=[ColumnType.Categorical, ColumnType.Numerical],
            default_threshold=0.25,
        )
        register_stattest(test, default_impl=score)
        _REGISTERED.add(name)
    return names


def load_latest_result(out_dir: str | Path) -> dict[str, Any] | None:
    """The last summary written to `out_dir` (None when no report was run yet)."""
    path = Path(out_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _scores(snapshot: dict[str, Any]) -> dict[tuple[str, str], float]:
    """(column, evidently method) -> score, from the ValueDrift metrics of a snapshot dict."""
    scores = {}
    for metric in snapshot["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            scores[config["column"], config["method"]] = float(metric["value"])
    return scores
