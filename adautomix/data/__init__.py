"""Data sets (local folders only, never downloaded) and batch loaders."""
