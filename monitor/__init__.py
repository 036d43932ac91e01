"""Drift monitor: the pure statistical core (reference profile, pane windows, label join, calibration, evaluation)."""
