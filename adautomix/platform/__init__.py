"""The edge: Ray Train, Ray Tune studies and MLflow tracking. Nothing below imports from here."""
