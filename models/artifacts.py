"""The ONLY module that knows artifact names, files and formats in the BentoML model store.

Models (each a versioned BentoML model; tags come from Settings, `:latest` in dev):

- ``feature-snapshot``: the feature snapshot directory (parquet + schema.json, see
  `data.snapshot`), the data that the embedded store, materialization and training read.
- ``two-tower``: tower state_dict, config, item embeddings, FAISS index and id maps.
- ``ranker``: the XGBoost booster as JSON plus the ordered feature list.
- ``drift-reference``: baseline statistics and a parquet sample of the ranker's training features.
- ``source-item-knn``, ``source-content``, ``source-popularity``: the other candidate sources'
  tables (`.npy` arrays plus ``params.json``; see `models.candidates`).

Every model's metadata carries ``schema_version`` and the feature-snapshot ``feature_version``
it was built with. Formats are pickle-free.
"""

from __future__ import annotations

import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import bentoml

from data.errors import ArtifactError
from data.snapshot import FeatureSnapshot

if TYPE_CHECKING:  # heavy imports (xgboost) only where a ranker is saved or loaded
    from models.config import RankingSettings
    from models.ranker import Ranker
    from models.retriever import Retriever
    from models.two_tower import TwoTowerModel
    from models.two_tower_arrays import TwoTowerConfig

SNAPSHOT_MODEL = "feature-snapshot"
TWO_TOWER_MODEL = "two-tower"
RANKER_MODEL = "ranker"
DRIFT_REFERENCE_MODEL = "drift-reference"
SOURCE_MODELS = {
    "item_knn": "source-item-knn",
    "content": "source-content",
    "popularity": "source-popularity",
}
SCHEMA_VERSION = 1


def git_revision() -> str:
    """The current git commit (short), or "unknown" outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def base_metadata(feature_version: str, **extra: Any) -> dict[str, Any]:
    """Metadata every artifact records: schema version, feature version, git revision."""
    return {
        "schema_version": SCHEMA_VERSION,
        "feature_version": feature_version,
        "git_sha": git_revision(),
        **extra,
    }


def get_model(tag: str) -> bentoml.Model:
    """Fetch a model from the store, with an error that says how to create it.

    A model with an exact version never changes, so it is read (a YAML parse, ~13 ms here)
    once per process; ``name:latest`` and bare names are resolved on every call.

    Raises:
        ArtifactError: the tag is not in the store.
    """
    version = tag.partition(":")[2]
    if version and version != "latest":
        return _get_exact_model(tag)
    return _get_model(tag)


def _get_model(tag: str) -> bentoml.Model:
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound as exc:
        wanted = "a model in the BentoML store (run `recsys train`)"
        raise ArtifactError(tag, wanted, "none") from exc


@lru_cache(maxsize=256)
def _get_exact_model(tag: str) -> bentoml.Model:
    return _get_model(tag)


def check_schema(model: bentoml.Model) -> None:
    """Raise `ArtifactError` when a model was written by an incompatible version of this code."""
    got = model.info.metadata.get("schema_version")
    if got != SCHEMA_VERSION:
        raise ArtifactError(str(model.tag), f"schema_version {SCHEMA_VERSION}", got)


def model_exists(tag: str) -> bool:
    """Whether `tag` resolves in the model store."""
    try:
        bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        return False
    return True


# --- feature snapshot -------------------------------------------------------------------------


def save_snapshot(snapshot: FeatureSnapshot, labels: dict[str, str] | None = None) -> str:
    """Store a feature snapshot as a new `feature-snapshot` model; returns its tag."""
    metadata = base_metadata(snapshot.version, **snapshot.metadata)
    with bentoml.models.create(SNAPSHOT_MODEL, labels=labels, metadata=metadata) as model:
        snapshot.write(Path(model.path) / "snapshot")
    return str(model.tag)


def load_snapshot(tag: str = f"{SNAPSHOT_MODEL}:latest") -> FeatureSnapshot:
    """Load a stored feature snapshot (checks schema version and content hash)."""
    model = get_model(tag)
    check_schema(model)
    return FeatureSnapshot.read(Path(model.path) / "snapshot")


# --- candidate sources besides the two-tower model --------------------------------------------


def save_source(
    kind: str,
    arrays: dict[str, Any],
    params: dict[str, Any],
    metadata: dict[str, Any],
    labels: dict[str, str] | None = None,
) -> str:
    """Store one candidate source's tables as a new model of `SOURCE_MODELS[kind]`.

    Files: one ``.npy`` per array and ``params.json``; no pickles.
    """
    import json

    import numpy as np

    extra = {k: v for k, v in metadata.items() if k != "feature_version"}
    meta = base_metadata(str(metadata.get("feature_version", "unknown")), **extra)
    with bentoml.models.create(SOURCE_MODELS[kind], labels=labels, metadata=meta) as model:
        root = Path(model.path)
        (root / "params.json").write_text(json.dumps({"arrays": sorted(arrays), **params}))
        for name, array in arrays.items():
            np.save(root / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    return str(model.tag)


def load_source(tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The arrays and params of a stored candidate source."""
    import json

    import numpy as np

    model = get_model(tag)
    check_schema(model)
    root = Path(model.path)
    try:
        params = json.loads((root / "params.json").read_text())
        arrays = {
            name: np.load(root / f"{name}.npy", allow_pickle=False) for name in params["arrays"]
        }
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(tag, "params.json and the arrays it lists", repr(exc)) from exc
    return arrays, params


# --- two-tower retriever ----------------------------------------------------------------------

USER_TOWER_PREFIX = "user_tower_"
_TWO_TOWER_ARRAYS = (
    "item_ids", "item_embeddings", "popularity", "user_ids", "demo_user_ids", "demo_codes",
    "item_id_index", "item_genres", "item_year_bucket", "item_pop_bucket",
)  # fmt: skip


def save_two_tower(
    retriever: Retriever, metadata: dict[str, Any], labels: dict[str, str] | None = None
) -> str:
    """Store a retriever as a new `two-tower` model; returns its tag.

    Files: ``state_dict.pt`` (the torch model, tensors only), ``config.json`` (TwoTowerConfig,
    sizes, index info), ``index.faiss`` and one ``.npy`` per array (item embeddings, id maps,
    popularity, demographic codes, item tower inputs, and the user tower's weights as
    ``user_tower_<name>.npy``, which is all serving loads: no torch there). No pickles.

    Args:
        retriever: the trained retriever (its histories are not stored: they come from the
            feature snapshot at load time).
        metadata: dataset fingerprint, ``feature_version``, metrics, ... (JSON values).
        labels: optional BentoML labels.
    """
    import json

    import numpy as np
    import torch

    parts = retriever.parts
    if parts.model is None:
        raise ArtifactError("two-tower", "a retriever with its torch model", "none")
    extra = {k: v for k, v in metadata.items() if k != "feature_version"}
    info = parts.index.info
    meta = base_metadata(
        str(metadata.get("feature_version", "unknown")),
        **extra,
        index_kind=info.kind,
        index_recall_at_100=info.recall_at_100,
        n_items=info.n_items,
        dim=info.dim,
    )
    arrays = {
        "item_ids": parts.item_ids,
        "item_embeddings": parts.item_embeddings,
        "popularity": parts.popularity,
        "user_ids": parts.user_ids,
        "demo_user_ids": parts.demo_user_ids,
        "demo_codes": parts.demo_codes,
        "item_id_index": parts.inputs.id_index,
        "item_genres": parts.inputs.genres,
        "item_year_bucket": parts.inputs.year_bucket,
        "item_pop_bucket": parts.inputs.pop_bucket,
    }
    spec = {
        "config": parts.config.to_dict(),
        "n_users": parts.model.n_users,
        "n_items": parts.model.n_items,
        "index": info.to_dict(),
    }
    with bentoml.models.create(TWO_TOWER_MODEL, labels=labels, metadata=meta) as model:
        root = Path(model.path)
        torch.save(parts.model.state_dict(), root / "state_dict.pt")
        (root / "config.json").write_text(json.dumps(spec, indent=2))
        parts.index.write(str(root / "index.faiss"))
        for name in _TWO_TOWER_ARRAYS:
            np.save(root / f"{name}.npy", np.ascontiguousarray(arrays[name]), allow_pickle=False)
        for name, weights in parts.user_tower.arrays().items():
            np.save(root / f"{USER_TOWER_PREFIX}{name}.npy", weights, allow_pickle=False)
    return str(model.tag)


def load_two_tower(tag: str, history: Any, with_model: bool = False) -> Retriever:
    """Load a stored retriever serving `history` (a ``user_id, item_id, timestamp`` DataFrame).

    Args:
        tag: the `two-tower` model's tag.
        history: what each user has seen.
        with_model: also load the torch model (`parts.model`); serving needs only the numpy
            user tower, so by default torch is not even imported.

    Raises:
        ArtifactError: the tag is missing, or schema version or dimensions do not match.
    """
    import json

    import numpy as np

    from models.retrieval import IndexInfo, ItemIndex
    from models.retriever import Retriever, RetrieverParts
    from models.two_tower_arrays import ItemInputs, TwoTowerConfig, UserTowerArrays

    model = get_model(tag)
    check_schema(model)
    root = Path(model.path)
    spec = json.loads((root / "config.json").read_text())
    arrays = {n: np.load(root / f"{n}.npy", allow_pickle=False) for n in _TWO_TOWER_ARRAYS}
    config = TwoTowerConfig.from_dict(spec["config"])
    info = IndexInfo.from_dict(spec["index"])
    emb = arrays["item_embeddings"]
    expected = (spec["n_items"], config.dim)
    if emb.shape != expected or (info.n_items, info.dim) != expected:
        raise ArtifactError(str(model.tag), f"item embeddings {expected}", emb.shape)
    stored_tower = sorted(root.glob(f"{USER_TOWER_PREFIX}*.npy"))
    torch_model = None
    if with_model or not stored_tower:  # models stored before the numpy tower was: from torch
        torch_model = _load_torch_two_tower(str(model.tag), root, spec, config)
    if stored_tower:
        prefix = len(USER_TOWER_PREFIX)
        tower = UserTowerArrays({p.stem[prefix:]: np.load(p) for p in stored_tower})
    else:
        from models.two_tower import user_tower_arrays

        assert torch_model is not None
        tower = user_tower_arrays(torch_model.user_tower)
    if tower.history_emb.shape != (spec["n_items"] + 1, config.dim):
        raise ArtifactError(str(model.tag), "user tower of the catalog", tower.history_emb.shape)
    index = ItemIndex.read(str(root / "index.faiss"), info)
    if index.index.ntotal != info.n_items or index.index.d != info.dim:
        got = (index.index.ntotal, index.index.d)
        raise ArtifactError(str(model.tag), f"index of {expected}", got)
    parts = RetrieverParts(
        user_tower=tower,
        model=torch_model,
        config=config,
        item_ids=arrays["item_ids"],
        inputs=ItemInputs(
            arrays["item_id_index"],
            arrays["item_genres"],
            arrays["item_year_bucket"],
            arrays["item_pop_bucket"],
        ),
        item_embeddings=emb,
        index=index,
        popularity=arrays["popularity"],
        user_ids=arrays["user_ids"],
        demo_user_ids=arrays["demo_user_ids"],
        demo_codes=arrays["demo_codes"],
    )
    return Retriever(parts, history)


def _load_torch_two_tower(
    tag: str, root: Path, spec: dict[str, Any], config: TwoTowerConfig
) -> TwoTowerModel:
    import torch

    from models.two_tower import TwoTowerModel

    model = TwoTowerModel(spec["n_users"], spec["n_items"], config)
    state = torch.load(root / "state_dict.pt", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ArtifactError(tag, "state_dict matching the config", str(exc)) from exc
    return model.eval()


# --- ranker -----------------------------------------------------------------------------------

RANKER_BOOSTER_FILE = "booster.json"
RANKER_SPEC_FILE = "ranker.json"


def save_ranker(
    ranker: Ranker, metadata: dict[str, Any], labels: dict[str, str] | None = None
) -> str:
    """Store a ranker as a new `ranker` model; returns its tag.

    Files: the booster as XGBoost JSON and a JSON spec (ordered feature list, store column order,
    demographics × genre table). `metadata` should come from `base_metadata`; the feature list
    and tree count are added to it.
    """
    import json

    meta = {**metadata, "feature_names": list(ranker.feature_names), "trees": ranker.n_trees}
    meta.setdefault("schema_version", SCHEMA_VERSION)
    with bentoml.models.create(RANKER_MODEL, labels=labels, metadata=meta) as model:
        ranker.booster.save_model(str(Path(model.path) / RANKER_BOOSTER_FILE))
        (Path(model.path) / RANKER_SPEC_FILE).write_text(json.dumps(ranker.spec()))
    return str(model.tag)


def load_ranker(
    tag: str = f"{RANKER_MODEL}:latest", settings: RankingSettings | None = None
) -> Ranker:
    """Load a stored ranker (checks schema version and the ordered feature list).

    Raises:
        ArtifactError: unknown tag, other schema version, or a feature list this code lacks.
    """
    import json

    xgb = import_xgboost()
    from models.ranker import Ranker

    model = get_model(tag)
    check_schema(model)
    booster = xgb.Booster()
    booster.load_model(str(Path(model.path) / RANKER_BOOSTER_FILE))
    spec = json.loads((Path(model.path) / RANKER_SPEC_FILE).read_text())
    try:
        return Ranker.from_spec(booster, spec, settings)
    except ArtifactError as exc:
        raise ArtifactError(str(model.tag), exc.expected, exc.got) from exc


def import_xgboost() -> ModuleType:
    """`import xgboost`, without letting it import scikit-learn when nothing has yet.

    xgboost imports scikit-learn (and with it scipy.stats) for its sklearn-style estimators:
    1.8 s here, most of a served process's start. The ranker uses only the Booster, so a process
    that has not imported scikit-learn (a served one) gets xgboost without it; one that has (a
    test run, training) gets it as usual.
    """
    if "xgboost" in sys.modules or "sklearn" in sys.modules:
        import xgboost

        return xgboost
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # `import sklearn` raises ImportError
    try:
        import xgboost
    finally:
        del sys.modules["sklearn"]
    return xgboost


# --- drift reference ----------------------------------------------------------------------------

DRIFT_BASELINE_FILE = "baseline.json"
DRIFT_SAMPLE_FILE = "reference.parquet"


def save_drift_reference(
    baseline: Any,
    sample: Any,
    feature_version: str,
    labels: dict[str, str] | None = None,
    **metadata: Any,
) -> str:
    """Store the ranker's training-feature baseline as a new `drift-reference` model.

    Args:
        baseline: `monitoring.baseline.Baseline` of the ranker's training matrix.
        sample: `pandas.DataFrame` of training feature rows (`monitoring.baseline.
            reference_sample`), the Evidently job's reference.
        feature_version: the feature snapshot's version the features came from.
        labels: BentoML labels.
        **metadata: extra metadata (e.g. the ranker tag).

    Returns:
        The new model's tag.
    """
    meta = base_metadata(
        feature_version, features=baseline.names, n_rows=baseline.n_rows, **metadata
    )
    with bentoml.models.create(DRIFT_REFERENCE_MODEL, labels=labels, metadata=meta) as model:
        baseline.to_json(Path(model.path) / DRIFT_BASELINE_FILE)
        sample.to_parquet(Path(model.path) / DRIFT_SAMPLE_FILE, index=False)
    return str(model.tag)


def load_drift_reference(tag: str = f"{DRIFT_REFERENCE_MODEL}:latest") -> tuple[Any, Any]:
    """Load a stored drift reference: (`Baseline`, reference sample `DataFrame`).

    Raises:
        ArtifactError: unknown tag, other schema version, or sample columns that differ from
            the baseline's features.
    """
    return load_drift_baseline(tag), load_drift_sample(tag)


def load_drift_baseline(tag: str = f"{DRIFT_REFERENCE_MODEL}:latest") -> Any:
    """The `Baseline` of a stored drift reference (what the in-process monitor needs).

    Raises:
        ArtifactError: unknown tag or other schema version.
    """
    from monitoring.baseline import Baseline

    model = get_model(tag)
    check_schema(model)
    return Baseline.from_json(Path(model.path) / DRIFT_BASELINE_FILE)


def load_drift_sample(tag: str = f"{DRIFT_REFERENCE_MODEL}:latest") -> Any:
    """The reference sample `DataFrame` of a stored drift reference (the Evidently job's).

    Raises:
        ArtifactError: unknown tag, other schema version, or sample columns that differ from
            the baseline's features.
    """
    import pandas as pd

    baseline = load_drift_baseline(tag)
    model = get_model(tag)
    sample = pd.read_parquet(Path(model.path) / DRIFT_SAMPLE_FILE)
    if list(sample.columns) != baseline.names:
        raise ArtifactError(str(model.tag), baseline.names, list(sample.columns))
    return sample
