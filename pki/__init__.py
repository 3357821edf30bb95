"""A small CA for this deployment: CA certificate, server and client certificates, CRL.

from pki import CA
ca = CA.init(Path("pki"))
ca.issue_server("gateway", dns=["localhost"], ips=["127.0.0.1"])
ca.issue_client("office-1")
ca.revoke("office-1")
"""

from pki.ca import CA, CertRecord, Issued
from pki.errors import PKIError

__all__ = ["CA", "CertRecord", "Issued", "PKIError"]
