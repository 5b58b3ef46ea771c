"""Typed settings for each process, read from the environment (pydantic-settings).

Each process reads only its own class, so a child never sees the database URL and the parent
never sees a WNS secret. `redacted()` is the operator's config dump: safe to print or log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Settings(BaseSettings):
    def redacted(self) -> dict[str, Any]:
        """Settings as JSON-able data with every secret masked."""
        return _mask(self.model_dump(mode="json"), self)


def _mask(data: dict[str, Any], model: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in data.items():
        attr = getattr(model, name, None)
        if isinstance(attr, SecretStr) or (name in ("database_url",) and value):
            out[name] = "**********"
        elif isinstance(attr, BaseModel) and isinstance(value, dict):
            out[name] = _mask(value, attr)
        elif isinstance(attr, dict) and name in ("signing_keys",):
            out[name] = {k: "**********" for k in value}
        else:
            out[name] = value
    return out


class ParentSettings(_Settings):
    """The parent: API, dispatch workers and the database."""

    model_config = SettingsConfigDict(env_prefix="TOCSIN_", extra="ignore")

    database_url: str
    host: str = "127.0.0.1"
    port: int = 8080
    #: creates hubs; compared in constant time, never stored in the database
    operator_key: SecretStr
    #: Fernet key that encrypts the child signing keys stored in the database
    master_key: SecretStr
    #: 0 runs an API-only parent (dispatch done by other parents)
    dispatch_workers: int = Field(default=4, ge=0, le=256)
    batch_size: int = Field(default=500, ge=1, le=5000)
    lease_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)
    #: a target still not delivered this long after the send is counted as failed
    retry_deadline_seconds: float = Field(default=86400.0, gt=0)
    #: how long the dispatcher sleeps when no work is due and no NOTIFY arrives
    idle_poll_seconds: float = Field(default=1.0, gt=0)
    child_timeout_seconds: float = Field(default=120.0, gt=0)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    log_level: str = "INFO"


class PackageSidIdentity(BaseModel):
    """A Store (UWP) app: Package SID + client secret against login.live.com."""

    kind: Literal["package_sid"] = "package_sid"
    package_sid: str = Field(pattern=r"^ms-app://")
    #: Fernet ciphertext under the child's master key (see `tocsin encrypt-secret`)
    client_secret: SecretStr
    token_url: str = "https://login.live.com/accesstoken.srf"  # noqa: S105 - a URL
    scope: str = "notify.windows.com"


class EntraIdentity(BaseModel):
    """A Windows App SDK app: an Entra ID app registration."""

    kind: Literal["entra"] = "entra"
    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scope: str = "https://wns.windows.com/.default"

    @property
    def token_url(self) -> str:
        return f"https://login.microsoftonline.com/{self.tenant_id}/oauth2/v2.0/token"


WnsIdentity = Annotated[PackageSidIdentity | EntraIdentity, Field(discriminator="kind")]


class ChildSettings(_Settings):
    """One child = one app's WNS identity. No database, no channels."""

    model_config = SettingsConfigDict(env_prefix="TOCSIN_CHILD_", extra="ignore")

    app: str
    identity: WnsIdentity
    master_key: SecretStr
    #: key id -> key that the parent signs batches with; several while a key rotates
    signing_keys: dict[str, SecretStr]
    host: str = "127.0.0.1"
    port: int = 8081
    #: host suffix -> "address:port" to connect to instead of DNS (like curl --connect-to);
    #: TLS still verifies the real host name. Used for egress proxies and the WNS emulator.
    connect_to: dict[str, str] = Field(default_factory=dict)
    #: extra CA bundle to trust for WNS and token hosts (default: the system store)
    ca_file: Path | None = None
    concurrency: int = Field(default=64, ge=1, le=4096)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=15.0, gt=0)
    #: refresh the WNS token this long before it expires
    token_refresh_margin_seconds: float = Field(default=300.0, ge=0)
    log_level: str = "INFO"


class EmulatedApp(BaseModel):
    """An app identity the emulator knows: a Package SID, or an Entra client id + tenant."""

    identity: str
    secret: str
    tenant_id: str | None = None


class EmulatorSettings(_Settings):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_EMULATOR_", extra="ignore")

    host: str = "127.0.0.1"
    https_port: int = 8443
    control_port: int = 8090
    #: where the CA and the key that signs channel tokens are kept across restarts
    state_dir: Path = Path(".tocsin/emulator")
    apps: list[EmulatedApp] = Field(default_factory=list)
    token_lifetime_seconds: int = 86400
    channel_lifetime_days: float = 30.0
    #: benchmark mode: validate every request and token, keep only counts
    fast: bool = False
    log_level: str = "INFO"


class LocalApp(BaseModel):
    """An example app of the local stack: its child's port and its emulated WNS identity,
    either a Package SID (Store app) or an Entra tenant + client id (Windows App SDK app)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    port: int
    package_sid: str | None = Field(default=None, pattern=r"^ms-app://")
    tenant_id: str | None = None
    client_id: str | None = None

    @model_validator(mode="after")
    def _one_identity(self) -> LocalApp:
        if (self.package_sid is None) == (self.client_id is None or self.tenant_id is None):
            raise ValueError("give package_sid, or tenant_id and client_id")
        return self

    @property
    def identity(self) -> str:
        """The name WNS knows the app by: what channels are bound to."""
        return self.package_sid or f"{self.client_id}"


class LocalStackConfig(BaseModel):
    """`config/local.toml`: what `tocsin up` runs."""

    hub: str = Field(default="demo", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    host: str = "127.0.0.1"
    parent_port: int = 8080
    emulator_https_port: int = 8443
    emulator_control_port: int = 8090
    dispatch_workers: int = 4
    apps: list[LocalApp] = Field(min_length=1)
    #: extra TOCSIN_* settings for the parent and children (for example faster retries in tests)
    parent_env: dict[str, str] = Field(default_factory=dict)
    child_env: dict[str, str] = Field(default_factory=dict)
