"""MovieLens pipeline: loaders, download, validation, temporal split, features, synthetic data."""
