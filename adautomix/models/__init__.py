"""Backbones and the classifier with its heads."""
