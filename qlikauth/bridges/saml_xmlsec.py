"""XML signatures and encryption for pysaml2 in the portal's own process (libxmlsec1).

pysaml2 hands every XML signature, signing and decryption to a *crypto backend*
(:class:`saml2.sigver.CryptoBackend`); its default one writes the document and the key to
temporary files and runs the ``xmlsec1`` binary for each (plus ``xmlsec1 --version`` twice).
:class:`XmlSecBackend` does the same operations with the ``xmlsec`` binding of libxmlsec1,
the library that binary is built on, on documents parsed by lxml in memory: no subprocess
and no temporary file per message. It keeps the binary's restrictions (pysaml2 runs it with
``--enabled-reference-uris empty,same-doc`` and ``--id-attr:ID <element>``) and adds some:

* a signature is looked for only as a direct child of the element pysaml2 asked about (the
  one of that name carrying ``ID=node_id``), not anywhere below it;
* every ``Reference`` must point into the document (``#id``): the binding cannot restrict
  xmlsec's URI loaders, so an external URI is refused before xmlsec sees it;
* only the algorithms qlikauth accepts are enabled in xmlsec itself (SHA-256 and up, SHA-1
  only with ``ALLOW_SHA1``; exclusive canonicalisation, the enveloped transform);
* the key is the certificate from the IdP's metadata, set on the context: ``KeyInfo`` in
  the message is never read;
* decryption refuses external cipher data or key references, RSA PKCS#1 v1.5 key transport
  (a padding oracle) and a decrypted part carrying comments or processing instructions.

:func:`security_context` builds pysaml2's :class:`~saml2.sigver.SecurityContext` (its public
extension point) around this backend; :func:`use_in_process_crypto` puts it on a pysaml2
client or server. The metadata certificates reach the backend as :class:`CertRef` handles
(``.name``), which pysaml2 passes through instead of writing each to a temporary file.

lxml and xmlsec both link libxml2; a pair built against different libxml2 versions corrupts
memory, so :func:`check_xml_libraries` refuses it at start-up (the ``saml`` extra pins a pair
proven together).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from saml2 import class_name, samlp
from saml2 import saml as saml_schema
from saml2.saml import SamlBase
from saml2.sigver import (
    ASSERT_XPATH,
    NODE_NAME,
    CryptoBackend,
    EncryptError,
    MissingKey,
    RSACrypto,
    SecurityContext,
    SignatureError,
    XmlsecError,
    import_rsa_key_from_file,
    pre_encrypt_assertion,
)
from saml2.xmldsig import ALLOWED_CANONICALIZATIONS, ALLOWED_TRANSFORMS, TRANSFORM_ENVELOPED

from ..exceptions import ConfigurationError

__all__ = [
    "XmlSecBackend",
    "CertRef",
    "check_xml_libraries",
    "security_context",
    "use_in_process_crypto",
    "library_versions",
    "InProcessSecurityContext",
    "validate_saml_schema",
]

_DS = "{http://www.w3.org/2000/09/xmldsig#}"
_XENC = "{http://www.w3.org/2001/04/xmlenc#}"

#: The pair the ``saml`` extra pins and the tests run on (both bundle libxml2 2.14.6).
PROVEN_PAIR = "xmlsec 1.3.17 with lxml 6.0.2 to 6.2.1"

_CHECKED: str | None = None
_CHECK_LOCK = threading.Lock()


def check_xml_libraries() -> str:
    """Import lxml and xmlsec and refuse a pair linked against different libxml2 versions.

    Returns a one-line description of the versions in use. Raises
    :class:`~qlikauth.exceptions.ConfigurationError` saying what to install otherwise.
    """
    global _CHECKED
    if _CHECKED is not None:
        return _CHECKED
    with _CHECK_LOCK:
        if _CHECKED is not None:
            return _CHECKED
        try:
            from lxml import etree
        except ImportError:
            raise ConfigurationError(
                "QLIKAUTH SAML needs lxml and xmlsec (libxmlsec1 in process): "
                "pip install 'qlikauth[saml]'.",
                key="SAML",
            ) from None
        try:
            import xmlsec
        except ImportError:
            raise ConfigurationError(
                "QLIKAUTH SAML needs the xmlsec package (libxmlsec1 in process): "
                "pip install 'qlikauth[saml]'.",
                key="SAML",
            ) from None
        except Exception as exc:  # noqa: BLE001 - xmlsec.InternalError: the libxml2 check at import
            raise ConfigurationError(
                f"QLIKAUTH SAML: xmlsec refuses to load next to this lxml ({exc}): they link "
                f"different libxml2 versions (lxml {etree.__version__} has libxml2 "
                f"{_dotted(etree.LIBXML_VERSION)}). Install the pair the saml extra pins "
                f"({PROVEN_PAIR}): pip install 'qlikauth[saml]'.",
                key="SAML",
            ) from None
        lx = tuple(etree.LIBXML_VERSION)
        xs = tuple(xmlsec.get_libxml_version())
        if lx[:2] != xs[:2]:
            raise ConfigurationError(
                f"QLIKAUTH SAML: lxml {etree.__version__} runs libxml2 {_dotted(lx)} but xmlsec "
                f"{xmlsec.__version__} was built with libxml2 {_dotted(xs)}; both use the one "
                "libxml2 in the process, so this pair can corrupt memory. Install the pair the "
                f"saml extra pins ({PROVEN_PAIR}): pip install 'qlikauth[saml]'.",
                key="SAML",
            )
        _CHECKED = library_versions()
        return _CHECKED


def library_versions() -> str:
    """``xmlsec X (libxmlsec1 Y, libxml2 Z), lxml W``: what signs and verifies SAML here."""
    import xmlsec
    from lxml import etree

    return (
        f"xmlsec {xmlsec.__version__} (libxmlsec1 {_dotted(xmlsec.get_libxmlsec_version())}, "
        f"libxml2 {_dotted(xmlsec.get_libxml_version())}), lxml {etree.__version__}"
    )


def _dotted(version: Iterable[int]) -> str:
    return ".".join(str(n) for n in version)


class CertRef:
    """A certificate held in memory by a :class:`XmlSecBackend`, named for pysaml2.

    pysaml2 passes a non-string certificate's ``.name`` to the backend (as it would a file's
    name); the backend resolves the name to the certificate it registered.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"CertRef({self.name!r})"


class _MetadataCerts:
    """The metadata as the SecurityContext sees it: signing certificates as :class:`CertRef`."""

    def __init__(self, metadata: Any, backend: XmlSecBackend) -> None:
        self._metadata = metadata
        self._backend = backend

    def certs(self, entity_id: Any, descriptor: str, use: str = "signing") -> list[tuple[Any, Any]]:
        out = []
        for name, cert in self._metadata.certs(entity_id, descriptor, use):
            out.append((name, self._backend.cert_ref(cert) if isinstance(cert, str) else cert))
        return out

    def __getattr__(self, item: str) -> Any:
        return getattr(self._metadata, item)


class XmlSecBackend(CryptoBackend):  # type: ignore[misc]
    """A :class:`saml2.sigver.CryptoBackend` on libxmlsec1 in process (see the module docstring).

    ``allow_sha1`` enables RSA-SHA1 / SHA-1 digests in xmlsec (qlikauth's ``ALLOW_SHA1``).
    """

    def __init__(self, *, allow_sha1: bool = False) -> None:
        check_xml_libraries()
        import xmlsec

        super().__init__()
        self.allow_sha1 = allow_sha1
        self._certs: dict[str, Any] = {}
        self._keys: dict[tuple[str, float], Any] = {}
        self._lock = threading.Lock()
        t = xmlsec.Transform
        digests = [t.SHA256, t.SHA384, t.SHA512] + ([t.SHA1] if allow_sha1 else [])
        c14n = [t.EXCL_C14N, t.EXCL_C14N_COMMENTS]  # all SAML's signature profile allows
        sigs = [
            t.RSA_SHA256,
            t.RSA_SHA384,
            t.RSA_SHA512,
            t.ECDSA_SHA256,
            t.ECDSA_SHA384,
            t.ECDSA_SHA512,
        ] + ([t.RSA_SHA1, t.ECDSA_SHA1] if allow_sha1 else [])
        self._reference_transforms = [t.ENVELOPED, *c14n, *digests]
        self._signature_transforms = [*c14n, *sigs]

    # -- pysaml2's CryptoBackend ----------------------------------------------------
    @property
    def version(self) -> str:
        import xmlsec

        return _dotted(xmlsec.get_libxmlsec_version())

    def cert_ref(self, cert: str | bytes) -> CertRef:
        """Register a certificate (PEM, or the bare base64 of metadata) and name it."""
        text = cert.decode() if isinstance(cert, bytes) else cert
        body = re.sub(r"-----[^-]+-----|\s+", "", text)
        name = "qlikauth-cert:" + hashlib.sha256(body.encode()).hexdigest()
        with self._lock:
            if name not in self._certs:
                import xmlsec

                pem = (
                    "-----BEGIN CERTIFICATE-----\n"
                    + "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
                    + "\n-----END CERTIFICATE-----\n"
                )
                try:
                    self._certs[name] = xmlsec.Key.from_memory(
                        pem.encode(), xmlsec.KeyFormat.CERT_PEM
                    )
                except xmlsec.Error:
                    raise XmlsecError("a certificate in the metadata cannot be read") from None
        return CertRef(name)

    def validate_signature(
        self, signedtext: Any, cert_file: Any, cert_type: str, node_name: str, node_id: str | None
    ) -> bool:
        import xmlsec

        root = _parse(signedtext, XmlsecError)
        tag = _clark(node_name)
        nodes = [el for el in root.iter(tag) if el.get("ID") == node_id]
        if len(nodes) != 1:
            raise XmlsecError("the signed element is not in the document exactly once")
        sigs = [child for child in nodes[0] if child.tag == f"{_DS}Signature"]
        if len(sigs) != 1:
            raise XmlsecError("the signed element does not hold exactly one signature")
        for ref in sigs[0].iter(f"{_DS}Reference"):
            if not (ref.get("URI") or "").startswith("#"):
                raise XmlsecError("a signature reference points outside the document")
        ctx = xmlsec.SignatureContext()
        try:
            for el in root.iter(tag):
                if el.get("ID") is not None:
                    ctx.register_id(el, "ID")
            for transform in self._reference_transforms:
                ctx.enable_reference_transform(transform)
            for transform in self._signature_transforms:
                ctx.enable_signature_transform(transform)
            ctx.key = self._public_key(cert_file, cert_type)
            ctx.verify(sigs[0])
        except xmlsec.Error as exc:
            raise XmlsecError(f"signature verification failed ({type(exc).__name__})") from None
        return True

    def sign_statement(
        self, statement: Any, node_name: str, key_file: Any, node_id: str | None
    ) -> str:
        import xmlsec

        text = str(statement) if not isinstance(statement, (str, bytes)) else statement
        root = _parse(text, SignatureError)
        tag = _clark(node_name)
        if node_id:
            nodes = [el for el in root.iter(tag) if el.get("ID") == node_id]
            sig = (
                next((c for c in nodes[0] if c.tag == f"{_DS}Signature"), None)
                if len(nodes) == 1
                else None
            )
        else:
            sig = next(root.iter(f"{_DS}Signature"), None)
        if sig is None:
            raise SignatureError("no signature template in the element to sign")
        ctx = xmlsec.SignatureContext()
        try:
            for el in root.iter(tag):
                if el.get("ID") is not None:
                    ctx.register_id(el, "ID")
            ctx.key = self._private_key(key_file)
            ctx.sign(sig)
        except xmlsec.Error as exc:
            raise SignatureError(f"signing failed ({type(exc).__name__})") from None
        return _serialize(root)

    def decrypt(self, enctext: Any, key_file: Any) -> str:
        import xmlsec

        root = _parse(enctext, XmlsecError)
        enc = next(root.iter(f"{_XENC}EncryptedData"), None)
        if enc is None:
            raise XmlsecError("nothing encrypted in the document")
        for el in enc.iter():
            if el.tag == f"{_XENC}CipherReference":
                raise XmlsecError("encrypted data held outside the document is refused")
            if el.tag == f"{_DS}RetrievalMethod" and not (el.get("URI") or "").startswith("#"):
                raise XmlsecError("a key reference points outside the document")
            if el.tag == f"{_XENC}EncryptionMethod" and el.get("Algorithm") in _REFUSED_ENC:
                raise XmlsecError("RSA PKCS#1 v1.5 key transport is refused (a padding oracle)")
        manager = xmlsec.KeysManager()
        try:
            for ek in root.iter(f"{_XENC}EncryptedKey"):
                if ek.get("Id") is not None:
                    xmlsec.tree.add_ids(ek, ["Id"])
            manager.add_key(self._private_key(key_file))
            ctx = xmlsec.EncryptionContext(manager)
            ctx.decrypt(enc)
        except xmlsec.Error as exc:
            raise XmlsecError(f"decryption failed ({type(exc).__name__})") from None
        for el in root.iter():
            if not isinstance(el.tag, str):  # lxml's Comment, ProcessingInstruction, Entity
                raise XmlsecError(
                    "the decrypted part carries comments, processing instructions "
                    "or entities; refused"
                )
        return _serialize(root)

    def encrypt_assertion(
        self,
        statement: Any,
        enc_key: Any,
        template: Any,
        key_type: str = "des-192",
        node_xpath: str | None = None,
        node_id: str | None = None,
    ) -> str:
        import xmlsec

        if isinstance(statement, SamlBase):
            statement = pre_encrypt_assertion(statement)
        text = str(statement)
        root = _parse(text, EncryptError)
        found = root.getroottree().xpath(node_xpath or ASSERT_XPATH)
        if node_id:
            found = [el for el in found if el.get("ID") == node_id]
        if not found:
            raise EncryptError("nothing to encrypt at the given path")
        node = found[0]
        tmpl = _parse(str(template), EncryptError)
        node.addnext(tmpl)
        manager = xmlsec.KeysManager()
        try:
            manager.add_key(self._public_key(enc_key, "pem"))
            ctx = xmlsec.EncryptionContext(manager)
            ctx.key = _session_key(key_type)
            ctx.encrypt_xml(tmpl, node)
        except xmlsec.Error as exc:
            raise EncryptError(f"encryption failed ({type(exc).__name__})") from None
        return _serialize(root)

    def encrypt(
        self, text: Any, recv_key: Any, template: Any, key_type: str, xpath: str = ""
    ) -> str:
        raise NotImplementedError("qlikauth encrypts only assertions (encrypt_assertion)")

    # -- keys ---------------------------------------------------------------------------
    def _public_key(self, cert_file: Any, cert_type: str) -> Any:
        import xmlsec

        name = getattr(cert_file, "name", cert_file)
        key = self._certs.get(str(name))
        if key is not None:
            return key
        if cert_type != "pem":
            raise XmlsecError("only PEM certificates are supported")
        path = Path(str(name))
        try:
            return self._cached(
                path, lambda: xmlsec.Key.from_file(str(path), xmlsec.KeyFormat.CERT_PEM)
            )
        except (OSError, xmlsec.Error):
            raise XmlsecError("the certificate cannot be read") from None

    def _private_key(self, key_file: Any) -> Any:
        import xmlsec

        name = str(getattr(key_file, "name", key_file) or "")
        if name.lstrip().startswith("-----BEGIN"):
            return xmlsec.Key.from_memory(name.encode(), xmlsec.KeyFormat.PEM)
        path = Path(name)
        return self._cached(path, lambda: xmlsec.Key.from_file(str(path), xmlsec.KeyFormat.PEM))

    def _cached(self, path: Path, load: Any) -> Any:
        stamp = (str(path), path.stat().st_mtime)
        key = self._keys.get(stamp)
        if key is None:
            key = load()
            with self._lock:
                self._keys[stamp] = key
        return key


_REFUSED_ENC = frozenset({"http://www.w3.org/2001/04/xmlenc#rsa-1_5"})


def _session_key(key_type: str) -> Any:
    import xmlsec

    kind, _, bits = (key_type or "des-192").partition("-")
    data = {"des": xmlsec.KeyData.DES, "aes": xmlsec.KeyData.AES}.get(kind)
    if data is None or not bits.isdigit():
        raise ValueError(f"unknown session key type {key_type!r}")
    return xmlsec.Key.generate(data, int(bits), xmlsec.KeyDataType.SESSION)


def _clark(node_name: str) -> str:
    """pysaml2's class name ``urn:...:assertion:Assertion`` as ``{urn:...:assertion}Assertion``."""
    ns, _, local = node_name.rpartition(":")
    return f"{{{ns}}}{local}" if ns else local


def _parse(text: Any, error: type[Exception]) -> Any:
    """Parse without DTDs, entities or network access (pysaml2's callers already refused them)."""
    from lxml import etree

    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_blank_text=False,
    )
    try:
        tree = etree.fromstring(raw, parser).getroottree()
    except etree.XMLSyntaxError:
        raise error("the document is not well-formed XML") from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise error("the document declares a DTD; refused")
    return tree.getroot()


def _serialize(root: Any) -> str:
    """The whole document with its XML declaration, as the xmlsec1 binary writes it."""
    from lxml import etree

    return etree.tostring(root.getroottree(), encoding="UTF-8", xml_declaration=True).decode(
        "utf-8"
    )


_SCHEMAS = threading.local()

#: pysaml2's own XSD files (package data of ``saml2.data.schemas``), imported in dependency order.
_XSD_FILES = (
    ("http://www.w3.org/XML/1998/namespace", "xml.xsd"),
    ("http://www.w3.org/2000/09/xmldsig#", "xmldsig-core-schema.xsd"),
    ("http://www.w3.org/2001/04/xmlenc#", "xenc-schema.xsd"),
    ("http://www.w3.org/2009/xmlenc11#", "xenc-schema-11.xsd"),
    ("urn:oasis:names:tc:SAML:2.0:assertion", "saml-schema-assertion-2.0.xsd"),
    ("urn:oasis:names:tc:SAML:2.0:protocol", "saml-schema-protocol-2.0.xsd"),
    ("urn:oasis:names:tc:SAML:2.0:metadata", "saml-schema-metadata-2.0.xsd"),
    ("http://eidas.europa.eu/saml-extensions", "eidas-schema-saml-extensions.xsd"),
    ("http://eidas.europa.eu/attributes/naturalperson", "eidas-schema-attribute-naturalperson.xsd"),
    ("http://eidas.europa.eu/attributes/legalperson", "eidas-schema-attribute-legalperson.xsd"),
)


def _schema() -> Any:
    """The SAML XML schemas pysaml2 validates against, compiled by libxml2 (one per thread)."""
    schema = getattr(_SCHEMAS, "schema", None)
    if schema is None:
        from importlib.resources import files

        import saml2.data.schemas as schemas
        from lxml import etree

        base = files(schemas)
        imports = "".join(
            f'<xs:import namespace="{ns}" '
            f'schemaLocation="{Path(str(base.joinpath(name))).as_uri()}"/>'
            for ns, name in _XSD_FILES
        )
        wrapper = (
            '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
            f'targetNamespace="urn:qlikauth:saml-schemas">{imports}</xs:schema>'
        )
        # the XSD files come with pysaml2 (xmldsig-core's carries a DTD); nothing is fetched
        parser = etree.XMLParser(load_dtd=True, no_network=True)
        schema = etree.XMLSchema(etree.fromstring(wrapper.encode(), parser))
        _SCHEMAS.schema = schema
    return schema


def validate_saml_schema(document: str | bytes) -> None:
    """Validate a SAML element against pysaml2's SAML schemas with libxml2's validator.

    The check pysaml2 makes before each signature (its pure-Python ``xmlschema`` validator
    took two thirds of a sign-in's time). Raises :class:`saml2.sigver.SignatureError`.
    """
    root = _parse(document, SignatureError)
    schema = _schema()
    if not schema.validate(root):
        error = schema.error_log.last_error
        raise SignatureError(
            f"the document does not follow the SAML schema (line "
            f"{getattr(error, 'line', '?')}: {str(getattr(error, 'message', ''))[:120]})"
        )


class InProcessSecurityContext(SecurityContext):  # type: ignore[misc]
    """pysaml2's :class:`~saml2.sigver.SecurityContext` with the signature check run in process.

    The public checks pysaml2's response and logout parsing call (``correctly_signed_response``,
    ``correctly_signed_message`` and so every ``correctly_signed_*``, ``check_signature``) make
    the same checks pysaml2's own make, in the same order: keys from the metadata only (unless
    configured otherwise), the message validated against the SAML schema (here by libxml2
    from pysaml2's own XSD files), the SAML signature profile (one enveloped reference to the
    element's own ID, exclusive canonicalisation, enveloped + c14n transforms only, no
    ``ds:Object``), then the signature verified by :class:`XmlSecBackend` with each trusted
    certificate in turn. One difference: pysaml2 skips the verification itself when asked for
    ``only_valid_cert``; here a signature is always verified.
    """

    def correctly_signed_response(
        self,
        decoded_xml: Any,
        must: bool = False,
        origdoc: Any = None,
        only_valid_cert: bool = False,
        require_response_signature: bool = False,
        **kwargs: Any,
    ) -> Any:
        response = samlp.any_response_from_string(decoded_xml)
        if not response:
            raise TypeError("Not a Response")
        if response.signature:
            if "do_not_verify" not in kwargs:
                self._verify_signed(decoded_xml, response, class_name(response))
        elif require_response_signature:
            raise SignatureError("Signature missing for response")
        return response

    def correctly_signed_message(
        self,
        decoded_xml: Any,
        msgtype: str,
        must: bool = False,
        origdoc: Any = None,
        only_valid_cert: bool = False,
    ) -> Any:
        attr = f"{msgtype}_from_string"
        parse = getattr(samlp, attr, None) or getattr(saml_schema, attr, None)
        msg = parse(decoded_xml) if parse is not None else None
        if not msg:
            raise TypeError(f"Not a {msgtype}")
        if not msg.signature:
            if must:
                raise SignatureError(f"Required signature missing on {msgtype}")
            return msg
        return self._verify_signed(decoded_xml, msg, class_name(msg))

    def check_signature(
        self,
        item: Any,
        node_name: str = NODE_NAME,
        origdoc: Any = None,
        must: bool = False,
        issuer: Any = None,
    ) -> Any:
        return self._verify_signed(origdoc, item, node_name, issuer)

    def _verify_signed(self, document: Any, item: Any, node_name: str, issuer: Any = None) -> Any:
        try:
            _issuer = item.issuer.text.strip()
        except AttributeError:
            try:
                _issuer = issuer.text.strip()
            except AttributeError:
                _issuer = None
        certs: list[Any] = []
        if self.metadata:
            try:
                certs = [cert for _name, cert in self.metadata.certs(_issuer, "any", "signing")]
            except KeyError:
                certs = []
        if not certs and not self.only_use_keys_in_metadata:
            from saml2.sigver import cert_from_instance

            certs = [self.crypto.cert_ref(cert) for cert in cert_from_instance(item)]
        if not certs:
            raise MissingKey(_issuer)
        validate_saml_schema(str(item))
        signed_info = item.signature.signed_info
        refs = signed_info.reference
        ref = refs[0] if len(refs) == 1 else None
        uri = getattr(ref, "uri", None) or ""
        transforms = (
            [t.algorithm for t in ref.transforms.transform]
            if ref is not None and ref.transforms is not None
            else []
        )
        profile = {
            "one reference": ref is not None,
            "the reference is the element's own ID": uri == f"#{item.id}" and len(uri) > 1,
            "exclusive canonicalisation": signed_info.canonicalization_method.algorithm
            in ALLOWED_CANONICALIZATIONS,
            "one or two allowed transforms, enveloped among them": 1 <= len(transforms) <= 2
            and set(transforms) <= ALLOWED_TRANSFORMS
            and TRANSFORM_ENVELOPED in transforms,
            "no ds:Object": not item.signature.object,
        }
        failed = [name for name, ok in profile.items() if not ok]
        if failed:
            raise SignatureError(
                f"the signature does not follow the SAML signature profile: {failed[0]}"
            )
        for cert in certs:
            try:
                if self.verify_signature(document, cert, node_name=node_name, node_id=item.id):
                    return item
            except XmlsecError:
                continue  # the next trusted certificate (two during a rollover)
        raise SignatureError("Failed to verify signature")


def security_context(config: Any, *, allow_sha1: bool = False) -> Any:
    """pysaml2's :class:`~saml2.sigver.SecurityContext` for ``config`` on :class:`XmlSecBackend`.

    The same arguments pysaml2's own ``security_context(config)`` passes, with the backend
    swapped and the metadata's certificates handed over in memory.
    """
    backend = XmlSecBackend(allow_sha1=allow_sha1)
    sec_backend = RSACrypto(import_rsa_key_from_file(config.key_file)) if config.key_file else None
    enc_key_files = [
        pair["key_file"] for pair in (config.encryption_keypairs or []) if "key_file" in pair
    ]
    metadata = _MetadataCerts(config.metadata, backend) if config.metadata is not None else None
    return InProcessSecurityContext(
        backend,
        config.key_file,
        cert_file=config.cert_file,
        metadata=metadata,
        only_use_keys_in_metadata=config.only_use_keys_in_metadata,
        validate_certificate=config.validate_certificate,
        enc_key_files=enc_key_files,
        encryption_keypairs=config.encryption_keypairs,
        sec_backend=sec_backend,
        delete_tmpfiles=True,
    )


def use_in_process_crypto(entity: Any, *, allow_sha1: bool = False) -> Any:
    """Give a pysaml2 ``Saml2Client`` or ``Server`` the in-process security context; returns it.

    Load its config with ``crypto_backend = "XMLSecurity"`` (see :data:`PYSAML2_CONFIG`) so
    that building the entity does not look for the ``xmlsec1`` binary first.
    """
    entity.sec = security_context(entity.config, allow_sha1=allow_sha1)
    return entity


#: What to put in a pysaml2 config dict so that no ``xmlsec1`` binary is looked for (pysaml2's
#: own in-memory backend is built and at once replaced by :func:`use_in_process_crypto`).
PYSAML2_CONFIG = {"crypto_backend": "XMLSecurity"}
