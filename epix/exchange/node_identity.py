"""The node's own signing identity: it signs receipts and status documents (EPIX-DSIG-1).

Generated on first use into ``<data_dir>/keys/`` (key 0600, never committed) and registered in
the registry as the ``node`` authority of the node's Party, so peers can verify what it signs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from epix.signatures.keys import ensure_identity
from epix.signatures.trust import TrustedCertificate

NODE_ROLE = "node"
NODE_KEY_NAME = "node"
_lock = threading.Lock()
_cache: dict[tuple[Path, str], NodeIdentity] = {}  # by resolved keys directory
_by_data_dir: dict[tuple[Path, str], NodeIdentity] = {}  # by data directory as given


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Key and certificate (PEM) of this node, for one Party."""

    party: str
    key_pem: bytes
    cert_pem: bytes

    def trusted(self) -> TrustedCertificate:
        """The certificate as the registry files it (role ``node``)."""
        return TrustedCertificate.from_certificate(
            self.cert_pem, party=self.party, role=NODE_ROLE, authority_name="EPIX node"
        )


def node_identity(data_dir: Path, party: str) -> NodeIdentity:
    """Load the node key from the data directory, creating it on first use (cached).

    Called per submission: the cache is looked up by the path as given first, because
    resolving it costs a filesystem walk (~25 us) each time.
    """
    cached = _by_data_dir.get((data_dir, party))
    if cached is not None:
        return cached
    directory = (data_dir / "keys").resolve()
    with _lock:
        cached = _cache.get((directory, party))
        if cached is None:
            key_pem, cert_pem = ensure_identity(
                directory,
                NODE_KEY_NAME,
                party=party,
                role=NODE_ROLE,
                common_name=f"EPIX node of {party}",
            )
            cached = NodeIdentity(party, key_pem, cert_pem)
            _cache[(directory, party)] = cached
        _by_data_dir[(data_dir, party)] = cached
        return cached
