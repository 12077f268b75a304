"""Fusion of candidate sources: no duplicates, no seen movies, the cap, ranks as each source gave
them; the expected lists are each source's own answer, asked separately."""

from __future__ import annotations

import numpy as np
import pytest

from data.schema import Dataset
from data.split import Split
from models.candidates import CandidateGenerator, SourceRecommender
from models.retriever import Retriever
from models.sources import (
    SOURCE_FEATURES,
    SOURCE_ORDER,
    RankedListSource,
    decode_sources,
    encode_sources,
    popularity_counts,
    ranked_list,
)


@pytest.fixture(scope="module")
def generator(retriever: Retriever, synth_split: Split) -> CandidateGenerator:
    """The two-tower model plus popular and trending lists of the train window."""
    train = synth_split.train
    rows = np.searchsorted(retriever.item_ids, train["item_id"].to_numpy())
    popular, trending = popularity_counts(
        rows, train["timestamp"].to_numpy(np.int64), len(retriever.item_ids)
    )
    sources = {
        "popular": RankedListSource("popular", *ranked_list(popular)),
        "trending": RankedListSource("trending", *ranked_list(trending)),
    }
    quotas = {"two_tower": 60, "popular": 40, "trending": 30}
    return CandidateGenerator(retriever, sources, quotas, fused_max=90)


def test_fused_candidates_hold_each_source_list_once(
    generator: CandidateGenerator, synth_split: Split
) -> None:
    seen = synth_split.train.groupby("user_id")["item_id"].agg(set).to_dict()
    retriever = generator.retriever
    for user in synth_split.test["user_id"].drop_duplicates().iloc[:25].tolist():
        fused = generator.generate(int(user))
        ids = fused.item_ids.tolist()
        assert len(ids) == len(set(ids)) <= 90
        assert not set(ids) & seen[user]
        state = retriever.user_state(int(user))
        lists = {
            "two_tower": retriever.search(state, 60).item_ids.tolist(),
            "popular": retriever.item_ids[
                generator.sources["popular"].candidates(state.context, 40).rows
            ].tolist(),
            "trending": retriever.item_ids[
                generator.sources["trending"].candidates(state.context, 30).rows
            ].tolist(),
        }
        for name, expected in lists.items():
            j = SOURCE_ORDER.index(name)
            for rank, item in enumerate(expected):
                if item in ids:  # beyond the cap a proposal may be cut
                    assert fused.source_ranks[ids.index(item), j] == rank
        # Interleaving by relative rank: the first half of every list (65 rows) fits in 90.
        quotas = {"two_tower": 60, "popular": 40, "trending": 30}
        for name, expected in lists.items():
            assert set(expected[: quotas[name] // 2]) <= set(ids)
        hit = ~np.isnan(fused.source_ranks)
        assert hit.any(axis=1).all()
        assert np.isnan(fused.source_ranks[:, SOURCE_ORDER.index("item_knn")]).all()  # off
        np.testing.assert_allclose(
            fused.two_tower_scores,
            retriever.parts.item_embeddings[np.searchsorted(retriever.item_ids, ids)]
            @ state.query[0],
            rtol=1e-5,
        )


def test_the_wire_form_round_trips(generator: CandidateGenerator, synth_split: Split) -> None:
    user = int(synth_split.test["user_id"].iloc[0])
    fused = generator.generate(user)
    positions, values = encode_sources(fused.source_ranks, fused.source_scores)
    ranks, scores = decode_sources(len(fused.item_ids), positions, values)
    np.testing.assert_array_equal(ranks, fused.source_ranks)
    np.testing.assert_allclose(scores, fused.source_scores, rtol=1e-6)
    features = fused.source_features()
    assert features.shape == (len(fused.item_ids), len(SOURCE_FEATURES))
    n_sources = features[:, SOURCE_FEATURES.index("n_sources")]
    assert n_sources.tolist() == [len(names) for names in fused.proposed_by()]
    with pytest.raises(ValueError, match="positions"):
        decode_sources(3, {"popular": [5]}, {"popular": [1.0]})
    with pytest.raises(ValueError, match="unknown"):
        decode_sources(3, {"bogus": [0]}, {"bogus": [1.0]})


def test_a_source_alone_and_switched_off_sources(
    generator: CandidateGenerator, synth_split: Split
) -> None:
    users = synth_split.test["user_id"].drop_duplicates().iloc[:5].to_numpy()
    items, _ = SourceRecommender(generator, "popular").recommend(users, 10)
    seen = synth_split.train.groupby("user_id")["item_id"].agg(set).to_dict()
    for user, row in zip(users, items, strict=True):
        assert not set(row.tolist()) & seen[user]
    with pytest.raises(ValueError, match="not built"):
        CandidateGenerator(generator.retriever, {}, {"two_tower": 10, "content": 5}, 20)
    with pytest.raises(ValueError, match="unknown"):
        CandidateGenerator(generator.retriever, {}, {"two_tower": 10, "nope": 5}, 20)


def test_stored_sources_propose_what_they_proposed_before(
    retriever: Retriever, synth_split: Split, synth_dataset: Dataset
) -> None:
    from models import artifacts
    from models.candidates import source_models, sources_from_models
    from models.train_sources import QUICK_CONTENT, QUICK_ITEM_KNN, SourceParams, build_sources

    params = SourceParams(dict(QUICK_ITEM_KNN), dict(QUICK_CONTENT))
    built = build_sources(synth_dataset, synth_split.train, params)
    tags = {
        kind: artifacts.save_source(kind, arrays, extra, artifacts.base_metadata("test"))
        for kind, (arrays, extra) in source_models(built).items()
    }
    assert set(tags) == {"item_knn", "content", "popularity"}
    loaded = sources_from_models({kind: artifacts.load_source(tag) for kind, tag in tags.items()})
    assert set(loaded) == set(built) == {"item_knn", "content", "popular", "trending"}
    for user in synth_split.test["user_id"].drop_duplicates().iloc[:10].tolist():
        context = retriever.user_state(int(user)).context
        for name, source in built.items():
            before = source.candidates(context, 50)
            after = loaded[name].candidates(context, 50)
            np.testing.assert_array_equal(after.rows, before.rows)
            np.testing.assert_array_equal(after.scores, before.scores)
