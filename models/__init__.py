"""Pure ML: two-tower retrieval, FAISS index, XGBoost ranker, baselines, evaluation, artifacts."""
