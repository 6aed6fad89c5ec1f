"""django_qlikauth\x27s management commands."""
