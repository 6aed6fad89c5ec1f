"""The Django application config: registers the system checks and the logout signal."""

from __future__ import annotations

from django.apps import AppConfig


class QlikAuthConfig(AppConfig):
    """``django_qlikauth`` with app label ``qlikauth``."""

    name = "django_qlikauth"
    label = "qlikauth"
    verbose_name = "Qlik Sense authentication"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_logged_out
        from django.core.signals import setting_changed

        from qlikauth.store import register_store_scheme

        from . import checks  # noqa: F401  (registers the checks)
        from .conf import reset_runtime
        from .sessions import on_user_logged_in, on_user_logged_out
        from .store import django_cache_store_from_setting

        user_logged_in.connect(on_user_logged_in, dispatch_uid="qlikauth-user-logged-in")
        user_logged_out.connect(on_user_logged_out, dispatch_uid="qlikauth-user-logged-out")
        setting_changed.connect(reset_runtime, dispatch_uid="qlikauth-setting-changed")
        # STATE_STORE = "django-cache:ALIAS" (the core knows no Django).
        register_store_scheme("django-cache", django_cache_store_from_setting)
