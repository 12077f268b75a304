"""Readable names of the ranker's features, for the reasons the page shows (GET /ui/labels.json).

A reason is a feature's signed contribution to a movie's score (XGBoost SHAP values, `explain`);
its label says what the feature measures in words a viewer knows. Every feature of
`models.ranker.FEATURE_NAMES` has one (a test checks).
"""

from __future__ import annotations

from data.features import GENRE_SLUGS

_GENRES = {slug: slug.replace("_", "-").replace("childrens", "children's") for slug in GENRE_SLUGS}

FEATURE_LABELS: dict[str, str] = {
    "user_count": "how many movies you rated",
    "user_mean_rating": "how generous your ratings are",
    "user_std_rating": "how much your ratings vary",
    "user_days_since_last": "time since your last rating",
    "user_days_active": "how long you have been rating",
    "user_age_bucket": "your age group",
    "user_gender": "your gender",
    "user_occupation": "your occupation",
    "user_zip_region": "your region",
    "item_count": "how many people rated it",
    "item_mean_rating": "its average rating",
    "item_pop_rank": "its popularity rank",
    "item_recent_count": "popular this month",
    "item_year": "its release year",
    "item_days_since_first": "how long it has been rated",
    **{f"item_genre_{slug}": f"it is {name}" for slug, name in _GENRES.items()},
    "retrieval_score": "close to your recent ratings",
    "retrieval_rank": "high in the first-stage list",
    "retrieval_gap": "near the top first-stage match",
    "retrieval_z": "a strong first-stage match",
    "genre_dot": "matches the genres you like",
    "genre_max": "has a genre you like most",
    "genre_mean": "its genres suit you on average",
    "item_n_genres": "how many genres it has",
    "mean_diff": "your taste vs its average rating",
    "item_age_at_last": "its age when you last rated",
    "demo_genre_lift": "liked by people like you",
    "pop_vs_activity": "its popularity vs how much you rate",
    "pop_in_candidates": "popular among your candidates",
    "item_trend": "trending now",
    "src_two_tower_rank": "ranked high by the two-tower model",
    "src_item_knn_rank": "similar to movies you rated",
    "src_content_rank": "similar in content to your movies",
    "src_popular_rank": "among the most rated",
    "src_trending_rank": "among the trending",
    "src_item_knn_score": "strongly similar to your movies",
    "src_content_score": "strongly similar in content",
    "src_popular_score": "how popular overall",
    "src_trending_score": "how much it is trending",
    "n_sources": "proposed by several sources",
}
