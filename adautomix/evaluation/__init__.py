"""Evaluation: tables and plots built from plain records (no Ray, Optuna or MLflow)."""
