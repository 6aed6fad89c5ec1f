"""Bridges from an identity provider's sign-in (SAML, OpenID Connect) to a Qlik user.

Each bridge verifies what the provider sent and hands verified claims to
:mod:`qlikauth.mapping`; none of them imports a web framework. ``qlikauth.bridges.saml``
needs the ``saml`` extra (``pip install 'qlikauth[saml]'``); ``qlikauth.bridges.registry``
(which proxy sessions belong to which IdP session, for SAML single logout and OIDC
back-channel logout) needs nothing beyond the core.
"""

from __future__ import annotations
