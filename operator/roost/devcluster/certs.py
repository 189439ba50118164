"""A tiny certificate authority for the local control plane, like controller-runtime envtest's TinyCA.

One CA signs the API server's serving certificate and the client certificates; the service-account
tokens are signed with a separate RSA key pair.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class Bundle:
    """Paths of the PEM files the control plane uses."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + _VALIDITY))


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name, subject: x509.Name, *,
           server: bool, sans: list[x509.GeneralName] | None = None) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (_builder(subject, ca_name, key.public_key())
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def client_certificate(bundle: Bundle, user: str, groups: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """Issue a client certificate for ``user`` in ``groups`` (PEM cert, PEM key)."""
    ca_key = serialization.load_pem_private_key(bundle.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(bundle.ca_cert.read_bytes())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    return _issue(ca_key, ca_cert.subject, x509.Name(attrs), server=False)


def ensure(directory: Path) -> Bundle:
    """Create the CA, serving and admin certificates and the service-account keys once; reuse them after."""
    directory.mkdir(parents=True, exist_ok=True)
    bundle = Bundle(*(directory / n for n in (
        "ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "admin.crt", "admin.key", "sa.key", "sa.pub")))
    if all(p.exists() for p in (bundle.ca_cert, bundle.serving_cert, bundle.admin_cert, bundle.sa_key)):
        return bundle

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("roost-dev-ca")
    ca_cert = (_builder(ca_name, ca_name, ca_key.public_key())
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    bundle.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    bundle.ca_key.write_bytes(_pem_key(ca_key))

    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
    ]
    cert, key = _issue(ca_key, ca_name, _name("kube-apiserver"), server=True, sans=sans)
    bundle.serving_cert.write_bytes(cert)
    bundle.serving_key.write_bytes(key)
    cert, key = _issue(ca_key, ca_name, _name("admin", "system:masters"), server=False)
    bundle.admin_cert.write_bytes(cert)
    bundle.admin_key.write_bytes(key)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bundle.sa_key.write_bytes(_pem_key(sa_key))
    bundle.sa_pub.write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for p in (bundle.ca_key, bundle.serving_key, bundle.admin_key, bundle.sa_key):
        p.chmod(0o600)
    return bundle
