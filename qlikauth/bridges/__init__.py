"""Bridges from an identity provider's sign-in (SAML, OpenID Connect) to a Qlik user.

Each bridge verifies what the provider sent and hands verified claims to
:mod:`qlikauth.mapping`; none of them imports a web framework.
"""

from __future__ import annotations
