"""`fluxlora-gateway`: serve the hosted API (`serve`), or make a key for a namespace (`key`).

Settings are flags or FLUXLORA_GATEWAY_* environment variables (a flag wins)."""

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from aiohttp import web

from fluxlora_gateway.app import ACCESS_LOG_FORMAT, Gateway, build_app
from fluxlora_gateway.hosted import check_spec_defaults
from fluxlora_gateway.keys import KeyStore, new_key, secret_entry
from fluxlora_kube.client import Kube, load_api_client
from fluxlora_operator.rate_limit import RateLimiter

ENV_PREFIX = "FLUXLORA_GATEWAY_"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_KEY_SECRET = "fluxlora-gateway-keys"


def _own_namespace() -> str:
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "default"


def _parser() -> argparse.ArgumentParser:
    def env(name: str, default):
        return os.environ.get(ENV_PREFIX + name, default)

    parser = argparse.ArgumentParser(prog="fluxlora-gateway", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the hosted API")
    serve.add_argument("--port", type=int, default=int(env("PORT", 8000)))
    serve.add_argument("--host", default=env("HOST", "0.0.0.0"))
    serve.add_argument("--key-secret", default=env("KEY_SECRET", DEFAULT_KEY_SECRET),
                       help="Secret holding the key hashes")  # fmt: skip
    serve.add_argument("--key-namespace", default=env("KEY_NAMESPACE", None),
                       help="namespace of that Secret (default: the gateway's own)")  # fmt: skip
    serve.add_argument("--reload-seconds", type=float, default=float(env("RELOAD_SECONDS", 5)),
                       help="how often the key Secret is re-read")  # fmt: skip
    serve.add_argument("--public-url", default=env("PUBLIC_URL", None),
                       help="base URL callers use, for urls.get and output links")  # fmt: skip
    serve.add_argument(
        "--spec-defaults",
        default=env("SPEC_DEFAULTS", "{}"),
        help='JSON of spec fields callers cannot set, e.g. {"baseModel": "/models/flux-dev"}',
    )
    serve.add_argument("--rate-limit", type=float, default=float(env("RATE_LIMIT", 10)),
                       help="requests per second per key, on average (0: unlimited)")  # fmt: skip
    serve.add_argument("--rate-burst", type=int, default=int(env("RATE_BURST", 20)),
                       help="requests per key allowed in a burst")  # fmt: skip
    serve.add_argument("--log-level", default=env("LOG_LEVEL", "INFO"))
    key = commands.add_parser("key", help="make a new key for a namespace")
    key.add_argument("namespace", help="the namespace the key may use")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "key":
        key = new_key()
        print(f"key (give it to the caller; it is not stored): {key}")
        print(f"Secret entry (any entry name, e.g. {args.namespace}):")
        print(secret_entry(key, args.namespace))
        return 0
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        defaults = check_spec_defaults(json.loads(args.spec_defaults))
    except ValueError as error:  # JSONDecodeError included
        print(f"fluxlora-gateway: {error}", file=sys.stderr)
        return 2
    kube = Kube(load_api_client())
    keys = KeyStore(
        kube, args.key_namespace or _own_namespace(), args.key_secret, args.reload_seconds
    )
    limiter = RateLimiter(args.rate_limit, args.rate_burst)
    app = build_app(Gateway(kube, keys, args.public_url, defaults, limiter))
    web.run_app(
        app, host=args.host, port=args.port, access_log_format=ACCESS_LOG_FORMAT, print=None
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
