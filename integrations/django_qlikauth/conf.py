"""Where the Django app gets its configuration: ``settings.QLIKAUTH``, read at request time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from qlikauth.exceptions import ConfigurationError
from qlikauth.identity import QlikUser
from qlikauth.web.config import QlikAuthConfig
from qlikauth.web.runtime import QlikAuthRuntime, SignOutParticipant, build_runtime

_lock = threading.Lock()
_cache: dict[str, Any] = {"source": None, "runtime": None}
#: What the portal's sign-out ends besides the proxy sessions; kept here because the runtime
#: is rebuilt whenever settings.QLIKAUTH changes.
_sign_outs: list[SignOutParticipant] = []


def add_sign_out(participant: SignOutParticipant) -> None:
    """Make Django's logout (and ``/qlik/logout``) end ``participant``'s state too (a
    :class:`~qlikauth.web.cloud.CloudPortal`: its Qlik Cloud token); ``cloud_urls`` calls it."""
    with _lock:
        if not any(p is participant for p in _sign_outs):
            _sign_outs.append(participant)
        runtime = _cache["runtime"]
    if runtime is not None:
        runtime.add_sign_out(participant)


def remove_sign_out(participant: SignOutParticipant) -> None:
    """Undo :func:`add_sign_out` (a portal taken down or reconfigured)."""
    with _lock:
        _sign_outs[:] = [p for p in _sign_outs if p is not participant]
        runtime = _cache["runtime"]
    if runtime is not None:
        runtime.remove_sign_out(participant)


def login_url_setting(raw: Any) -> str:
    """QLIKAUTH LOGIN_URL, else Django's ``settings.LOGIN_URL``, as a path (URL names resolved).

    Like Django's own ``LOGIN_URL``, it may be a path or a URL pattern name (``"login"``).
    """
    from django.shortcuts import resolve_url
    from django.urls import NoReverseMatch

    mapping = raw if isinstance(raw, dict) else {}
    given = next((v for k, v in mapping.items() if str(k).upper() == "LOGIN_URL"), None)
    source = "QLIKAUTH LOGIN_URL" if given else "LOGIN_URL"
    value = given or settings.LOGIN_URL
    try:
        return str(resolve_url(value))
    except NoReverseMatch:
        raise ConfigurationError(
            f"{source} {value!r} is neither a path nor the name of a URL pattern: give the "
            "portal's "
            "login page, e.g. '/accounts/login/' or 'login' (django.contrib.auth.urls).",
            key="LOGIN_URL",
        ) from None


def config_from_settings() -> QlikAuthConfig:
    """The checked configuration of ``settings.QLIKAUTH``, LOGIN_URL defaulting to Django's."""
    raw = getattr(settings, "QLIKAUTH", None)
    if not isinstance(raw, dict):
        return QlikAuthConfig.from_mapping(raw)
    mapping = {k: v for k, v in raw.items() if str(k).upper() != "LOGIN_URL"}
    mapping["LOGIN_URL"] = login_url_setting(raw)
    return QlikAuthConfig.from_mapping(mapping)


def get_runtime() -> QlikAuthRuntime:
    """The runtime for the current ``settings.QLIKAUTH`` (rebuilt when the setting changes)."""
    raw = getattr(settings, "QLIKAUTH", None)
    runtime = _cache["runtime"]
    if runtime is not None and _cache["source"] is raw:
        return runtime
    with _lock:
        if _cache["runtime"] is None or _cache["source"] is not raw:
            runtime = build_runtime(
                config_from_settings(),
                secret=settings.SECRET_KEY,
                portal_session_lifetime=float(getattr(settings, "SESSION_COOKIE_AGE", 1209600)),
            )
            for participant in _sign_outs:
                runtime.add_sign_out(participant)
            _cache["runtime"] = runtime
            _cache["source"] = raw
        return _cache["runtime"]


def get_config() -> QlikAuthConfig:
    """The checked configuration."""
    return get_runtime().config


def reset_runtime(*, setting: str | None = None, **_: Any) -> None:
    """Forget the runtime (``setting_changed`` receiver, e.g. under ``override_settings``)."""
    if setting not in (None, "QLIKAUTH", "LOGIN_URL", "ROOT_URLCONF"):
        return
    with _lock:
        old = _cache["runtime"]
        _cache["runtime"] = None
        _cache["source"] = None
    forget_all_users()
    if old is not None:
        old.close()


#: Seconds a remembered mapping is used at most. This process forgets a user's mapping as soon
#: as the user or its groups change here (the signals ``django_qlikauth`` connects); a change
#: made by another process (another gunicorn worker, a management command, SQL) reaches this
#: one within this time.
MAPPING_LIFETIME = 10.0
_MAPPED_MAX = 4096
# (user model label, pk) -> (the mapping's runtime, its QlikUser, when it expires)
_mapped: dict[tuple[str, Any], tuple[QlikAuthRuntime, QlikUser | None, float]] = {}


def forget_user(user: Any) -> None:
    """Map ``user`` (a Django user, or its model label and pk as a tuple) afresh on its next
    request. ``django_qlikauth`` calls it when the user or its groups change through the ORM;
    call it after changing, another way, what a USER_MAPPER reads."""
    key = user if isinstance(user, tuple) else (user._meta.label_lower, user.pk)
    _mapped.pop(key, None)


def forget_all_users() -> None:
    """Map every user afresh on its next request (a group renamed or deleted, settings changed)."""
    _mapped.clear()


def _remembered_mapping(user: Any, runtime: QlikAuthRuntime) -> QlikUser | None:
    """``user`` mapped by the default mapper, remembered per user (one groups query per user
    and :data:`MAPPING_LIFETIME`, not per page view)."""
    key = (user._meta.label_lower, user.pk)
    now = time.monotonic()
    hit = _mapped.get(key)
    if hit is not None and hit[0] is runtime and hit[2] > now:
        return hit[1]
    groups = list(user.groups.order_by("name").values_list("name", flat=True))
    qlik_user = runtime.user_for(user.get_username(), groups)
    if len(_mapped) >= _MAPPED_MAX:
        _mapped.clear()  # bounded; the users still active are mapped again on their next view
    _mapped[key] = (runtime, qlik_user, now + MAPPING_LIFETIME)
    return qlik_user


def default_user_mapper(user: Any) -> QlikUser:
    """The Django user's username in USER_DIRECTORY, with one ``group`` attribute per
    Django group."""
    groups = list(user.groups.order_by("name").values_list("name", flat=True))
    return get_runtime().user_for(user.get_username(), groups)


def get_user_mapper() -> Callable[[Any], QlikUser | None]:
    """The USER_MAPPER setting (dotted path or callable), or :func:`default_user_mapper`."""
    mapper = get_config().user_mapper
    if mapper is None:
        return default_user_mapper
    if isinstance(mapper, str):
        try:
            return import_string(mapper)
        except ImportError as exc:
            raise ConfigurationError(
                f"QLIKAUTH USER_MAPPER: cannot import {mapper!r}: {exc}", key="USER_MAPPER"
            ) from None
    return mapper


def portal_user_id(request: Any) -> str | None:
    """The signed-in Django user as a stable id (``"auth.user:42"``), or None for anonymous.

    A remembered proxy session is reused only for the same id. ``_meta.label_lower`` rather
    than ``type()``: ``request.user`` is a lazy proxy.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    from .backends import signed_in_by_sso, sso_user

    if signed_in_by_sso(request):
        # the owner the SSO flow gave the proxy session it made (the Qlik user), so it is reused
        sso = sso_user(request)
        return None if sso is None else "\\".join(sso.key)
    return f"{user._meta.label_lower}:{user.pk}"


def qlik_user_for(request: Any) -> QlikUser | None:
    """The signed-in Django user as a :class:`QlikUser`, or None when nobody is signed in.

    The identity comes only from Django's authentication (the portal's own session),
    never from a request header. A user signed in by :class:`~django_qlikauth.backends.SsoBackend`
    is the SSO sign-in's own Qlik user (its claims), not USER_MAPPER's, and nobody once that
    sign-in has ended.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    from .backends import signed_in_by_sso, sso_user

    if signed_in_by_sso(request):
        return sso_user(request)
    runtime = get_runtime()
    if runtime.config.user_mapper is None:
        # The default mapper reads only the user and its groups, whose changes forget the
        # mapping (apps.py); a USER_MAPPER may read anything, so it is asked on every request.
        return _remembered_mapping(user, runtime)
    qlik_user = get_user_mapper()(user)
    if qlik_user is not None and not isinstance(qlik_user, QlikUser):
        raise ConfigurationError(
            f"QLIKAUTH USER_MAPPER returned {type(qlik_user).__name__}, not a QlikUser.",
            key="USER_MAPPER",
        )
    return qlik_user
