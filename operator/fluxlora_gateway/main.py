"""`fluxlora-gateway`: serve the hosted API (`serve`), or make a key for a namespace (`key`).

The server's settings (pydantic-settings) are flags or FLUXLORA_GATEWAY_* environment variables;
a flag wins."""

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fluxlora_gateway.access_log import AccessLogger
from fluxlora_gateway.app import DEFAULT_SYNC_WAIT_SECONDS, Gateway
from fluxlora_gateway.hosted import check_spec_defaults
from fluxlora_gateway.keys import KeyStore, new_key, secret_entry
from fluxlora_gateway.routes import build_app
from fluxlora_gateway.upload_store import MAX_LINK_SECONDS, UploadStore
from fluxlora_gateway.uploads import DEFAULT_MAX_UPLOAD_BYTES
from fluxlora_kube.client import Kube, load_api_client
from fluxlora_operator.command_settings import load_command_settings
from fluxlora_operator.rate_limit import RateLimiter
from fluxlora_operator.settings import NetworkList

PROGRAM = "fluxlora-gateway"
ENV_PREFIX = "FLUXLORA_GATEWAY_"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_KEY_SECRET = "fluxlora-gateway-keys"


class GatewaySettings(BaseSettings):
    """Serve the hosted API. Every flag is also an environment variable:
    FLUXLORA_GATEWAY_<FLAG_IN_UPPER_SNAKE_CASE>."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        cli_prog_name=f"{PROGRAM} serve",
        cli_kebab_case=True,
        cli_hide_none_type=True,
        extra="forbid",
        use_attribute_docstrings=True,
        frozen=True,
    )

    port: int = Field(8000, ge=0, le=65535)
    """Port to listen on."""
    host: str = "0.0.0.0"
    """Address to listen on."""
    key_secret: str = DEFAULT_KEY_SECRET
    """Secret holding the key hashes."""
    key_namespace: str | None = None
    """Namespace of that Secret (default: the gateway's own)."""
    reload_seconds: float = Field(5.0, gt=0)
    """How often the key Secret is re-read."""
    public_url: str | None = None
    """Base URL callers use, for urls.get and output links (default: the request's origin)."""
    spec_defaults: dict[str, Any] = Field(default_factory=dict)
    """JSON of spec fields callers cannot set, e.g. {"baseModel": "/models/flux-dev"}."""
    rate_limit: float = Field(10.0, ge=0)
    """Requests per second per key, on average (0: unlimited)."""
    rate_burst: int = Field(20, ge=1)
    """Requests per key allowed in a burst."""
    sync_wait_seconds: float = Field(DEFAULT_SYNC_WAIT_SECONDS, gt=0)
    """How long a submission with enable_sync_mode is held for its run to end."""
    uploads_prefix: str | None = Field(
        None, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"
    )
    """Where uploads are stored, s3://bucket/prefix (each namespace's under its own folder);
    unset: no uploads."""
    upload_max_bytes: int = Field(DEFAULT_MAX_UPLOAD_BYTES, gt=0)
    """The largest upload accepted, in bytes (413 past it)."""
    upload_link_seconds: int = Field(MAX_LINK_SECONDS, ge=60, le=MAX_LINK_SECONDS)
    """How long the S3 link a trainer gets for an uploaded dataset stays valid."""
    webhook_allowed_networks: NetworkList = Field(default_factory=list)
    """Non-public networks (CIDRs) a ?webhook= URL may point to (the operator's own setting, so
    that what the gateway accepts the operator will call); public addresses always may,
    link-local and cloud metadata addresses never."""
    log_level: str = "INFO"
    """Log level: DEBUG, INFO, WARNING or ERROR."""

    @field_validator("spec_defaults")
    @classmethod
    def _checked_spec_defaults(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_spec_defaults(value)


def load_gateway_settings(argv: list[str]) -> GatewaySettings:
    """`serve`'s settings from flags over the environment over the defaults; a bad value stops
    the gateway with a message naming its flag or variable."""
    return load_command_settings(GatewaySettings, argv, PROGRAM)


def _own_namespace() -> str:
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "default"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    # serve's flags are GatewaySettings' (`fluxlora-gateway serve --help` lists them).
    commands.add_parser("serve", help="serve the hosted API", add_help=False)
    key = commands.add_parser("key", help="make a new key for a namespace")
    key.add_argument("namespace", help="the namespace the key may use")
    return parser


def main(argv: list[str] | None = None) -> int:
    args, rest = _parser().parse_known_args(argv)
    if args.command == "key":
        if rest:
            _parser().error(f"unrecognized arguments: {' '.join(rest)}")
        key = new_key()
        print(f"key (give it to the caller; it is not stored): {key}")
        print(f"Secret entry (any entry name, e.g. {args.namespace}):")
        print(secret_entry(key, args.namespace))
        return 0
    settings = load_gateway_settings(rest)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    kube = Kube(load_api_client())
    keys = KeyStore(
        kube,
        settings.key_namespace or _own_namespace(),
        settings.key_secret,
        settings.reload_seconds,
    )
    limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
    uploads = None
    if settings.uploads_prefix:
        uploads = UploadStore(
            settings.uploads_prefix, settings.upload_max_bytes, settings.upload_link_seconds
        )
    gateway = Gateway(
        kube,
        keys,
        settings.public_url,
        settings.spec_defaults,
        limiter,
        settings.sync_wait_seconds,
        uploads,
        settings.webhook_allowed_networks,
    )
    web.run_app(
        build_app(gateway),
        host=settings.host,
        port=settings.port,
        access_log_class=AccessLogger,
        print=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
