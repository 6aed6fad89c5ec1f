"""The single sign-on settings checked when the portal starts, not when the first user arrives.

:func:`check_sso` builds what the SAML and OIDC settings describe (the service provider with the
IdP's metadata and certificates, the relying party with its keys, each claims mapping) exactly
as the first request would, and keeps it on the runtime, so a typo, a missing file, an http URL,
a leeway out of range or a missing extra is reported at start-up with what to do. Nothing is
fetched: the provider's discovery document and keys are read at the first sign-in.

The integrations run it: Flask's ``init_app`` refuses to start on an error and logs the
warnings, ``flask qlikauth check`` prints both, and Django's system checks report them
(``qlikauth.E008``, ``qlikauth.W004``).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field

from ..exceptions import ConfigurationError, QlikAuthError
from .runtime import QlikAuthRuntime

__all__ = ["SsoCheck", "check_sso"]

log = logging.getLogger("qlikauth.web")

_EXTRAS = {"SAML": ("saml", "pysaml2, lxml and xmlsec"), "OIDC": ("oidc", "joserfc")}


@dataclass(frozen=True)
class SsoCheck:
    """What :func:`check_sso` found: errors (the portal must not start) and warnings."""

    errors: tuple[ConfigurationError, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    checked: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No error (warnings may remain)."""
        return not self.errors

    def raise_first(self) -> None:
        """Raise the errors as one :class:`ConfigurationError` (each on its own line)."""
        if self.errors:
            text = "\n".join(str(e) for e in self.errors)
            raise ConfigurationError(text, key=getattr(self.errors[0], "key", None))


def _missing_extra(section: str, exc: ImportError) -> ConfigurationError:
    extra, what = _EXTRAS[section]
    return ConfigurationError(
        f"QLIKAUTH {section} is set but {what} (the '{extra}' extra) cannot be imported "
        f"({type(exc).__name__}: {str(exc)[:120]}): pip install 'qlikauth[{extra}]'.",
        key=section,
    )


def check_sso(runtime: QlikAuthRuntime) -> SsoCheck:
    """Check (and build, once) every configured SAML service provider and OIDC relying party.

    Only what the settings ask for is checked: no ``SAML`` setting, no SAML check.
    """
    errors: list[ConfigurationError] = []
    warnings: list[str] = []
    checked: list[str] = []
    for name, configured in (("SAML", runtime.config.saml), ("OIDC", runtime.config.oidc)):
        if not configured:
            continue
        checked.append(name)
        try:
            module = importlib.import_module(f".{name.lower()}", __package__)
            warnings += module.startup_warnings(runtime)
        except ImportError as exc:
            errors.append(_missing_extra(name, exc))
        except QlikAuthError as exc:
            errors.append(
                exc
                if isinstance(exc, ConfigurationError)
                else ConfigurationError(f"QLIKAUTH {name}: {exc}", key=name)
            )
    return SsoCheck(tuple(errors), tuple(warnings), tuple(checked))
