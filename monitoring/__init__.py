"""Drift monitoring: in-process Welford monitor with PSI/KL, Evidently reports, inference log."""
