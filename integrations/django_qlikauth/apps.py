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
        _connect_mapping_signals()
        # STATE_STORE = "django-cache:ALIAS" (the core knows no Django).
        register_store_scheme("django-cache", django_cache_store_from_setting)


def _connect_mapping_signals() -> None:
    """Forget a remembered Qlik mapping when what the default mapper reads changes: the user
    (saved or deleted), its groups (added, removed, cleared, from either side), a group
    (renamed or deleted: every user is mapped afresh)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db.models.signals import m2m_changed, post_delete, post_save

    from .conf import forget_all_users, forget_user

    user_model = get_user_model()

    def user_changed(sender: object, instance: object, **_: object) -> None:
        forget_user(instance)

    def group_changed(sender: object, **_: object) -> None:
        forget_all_users()

    def groups_changed(
        sender: object,
        instance: object,
        action: str,
        reverse: bool,
        pk_set: set[object] | None,
        **_: object,
    ) -> None:
        if not action.startswith(("post_", "pre_clear")):
            return
        if not reverse:
            forget_user(instance)  # the user's groups changed
        elif pk_set is None:
            forget_all_users()  # a group's users cleared: who they were is gone after the clear
        else:
            for pk in pk_set:
                forget_user((user_model._meta.label_lower, pk))

    for signal, receiver, sender, uid in (
        (post_save, user_changed, user_model, "user-saved"),
        (post_delete, user_changed, user_model, "user-deleted"),
        (post_save, group_changed, Group, "group-saved"),
        (post_delete, group_changed, Group, "group-deleted"),
    ):
        signal.connect(receiver, sender=sender, weak=False, dispatch_uid=f"qlikauth-{uid}")
    groups = getattr(user_model, "groups", None)
    through = getattr(groups, "through", None)
    if through is not None:  # a custom user model without PermissionsMixin has no groups
        m2m_changed.connect(
            groups_changed, sender=through, weak=False, dispatch_uid="qlikauth-user-groups"
        )
