"""``manage.py qlikauth_doctor``."""
