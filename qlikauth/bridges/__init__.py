"""Bridges from an identity provider's sign-in (SAML, OpenID Connect) to a Qlik user.

Each bridge verifies what the provider sent and hands verified claims to
:mod:`qlikauth.mapping`; none of them imports a web framework. ``qlikauth.bridges.saml``
needs the ``saml`` extra (``pip install 'qlikauth[saml]'``); ``qlikauth.bridges.registry``
(which proxy sessions belong to which IdP session, for SAML single logout and OIDC
back-channel logout) needs nothing beyond the core.
"""

from __future__ import annotations

__all__ = ["MAX_MESSAGE_BYTES", "MAX_REQUEST_BYTES"]

#: The largest SAMLResponse / SAMLRequest the SAML bridge decodes (base64 text); Entra's are a
#: few KiB.
MAX_MESSAGE_BYTES = 256 * 1024
#: The largest request body (or query string) a SAML endpoint should read at all: room for one
#: message at the cap, form-encoded (``+``, ``/``, ``=`` become three characters each, so up to
#: three times its size), plus RelayState and field names. Here, not in the SAML bridge, so the
#: integrations bound the body before reading it without importing pysaml2.
MAX_REQUEST_BYTES = 3 * MAX_MESSAGE_BYTES + 16 * 1024
