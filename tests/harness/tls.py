"""Throw-away certificate authorities and server certificates for TLS tests (cryptography).

``CertificateAuthority.create(directory, name)`` writes ``<name>-ca.pem`` and ``<name>-ca.key``;
``server_context(hosts)`` gives an ``ssl.SSLContext`` for a server whose certificate, signed by
that CA, names ``hosts`` (IP addresses become IP SANs, other names DNS SANs). Clients trust the
CA through ``SSL_CERT_FILE`` (or ``--ca-bundle``) pointing at ``cert_path``.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import pathlib
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(
        now + datetime.timedelta(days=2)
    )


@dataclasses.dataclass
class CertificateAuthority:
    directory: pathlib.Path
    name: str
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def cert_path(self) -> pathlib.Path:
        return self.directory / f"{self.name}-ca.pem"

    @property
    def key_path(self) -> pathlib.Path:
        return self.directory / f"{self.name}-ca.key"

    @classmethod
    def create(cls, directory: pathlib.Path, name: str) -> CertificateAuthority:
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        )
        cert = _validity(builder).sign(key, hashes.SHA256())
        directory.mkdir(parents=True, exist_ok=True)
        authority = cls(directory, name, key, cert)
        authority.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        authority.key_path.write_bytes(_pem_key(key))
        return authority

    def server_context(self, hosts: tuple[str, ...]) -> ssl.SSLContext:
        """A server-side context whose certificate (signed by this CA) names ``hosts``."""
        key = _key()
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        cert = _validity(builder).sign(self.key, hashes.SHA256())
        stem = self.directory / f"{self.name}-{x509.random_serial_number()}"
        cert_path, key_path = stem.with_suffix(".pem"), stem.with_suffix(".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(key))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
        return context


def bundle(path: pathlib.Path, *authorities: CertificateAuthority) -> pathlib.Path:
    """Write one PEM bundle holding the certificates of ``authorities``."""
    path.write_bytes(b"".join(a.cert_path.read_bytes() for a in authorities))
    return path
