"""The emulator's own certificate authority, kept in its state directory across restarts so the
children that trust it keep working."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

#: Names the emulator answers for, exactly as the real services are reached.
SERVED_NAMES = (
    "notify.windows.com",
    "*.notify.windows.com",
    "login.live.com",
    "login.microsoftonline.com",
)


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert_chain: Path
    server_key: Path


def ensure_tls_files(state_dir: Path) -> TlsFiles:
    state_dir.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca_cert=state_dir / "ca.pem",
        server_cert_chain=state_dir / "server.pem",
        server_key=state_dir / "server-key.pem",
    )
    if not all(p.exists() for p in (files.ca_cert, files.server_cert_chain, files.server_key)):
        ca = trustme.CA(organization_name="Tocsin WNS emulator")
        leaf = ca.issue_cert(*SERVED_NAMES)
        ca.cert_pem.write_to_path(str(files.ca_cert))
        leaf.private_key_pem.write_to_path(str(files.server_key))
        files.server_key.chmod(0o600)
        with files.server_cert_chain.open("wb") as out:
            for blob in leaf.cert_chain_pems:
                out.write(blob.bytes())
    return files
