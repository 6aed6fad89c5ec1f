"""The example Django portal project."""
