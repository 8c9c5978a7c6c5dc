"""The ``waitroom`` command: run the local stack, manage signing keys."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from shared.tokens import KeyRing, ensure_keys, write_key


def _up(args: argparse.Namespace) -> int:
    from waitroom.up import UpOptions, run_up

    return run_up(
        UpOptions(
            data_dir=Path(args.data_dir),
            port=args.port,
            demo_port=args.demo_port,
            redis_port=args.redis_port,
            nats_port=args.nats_port,
            gateways=args.gateways,
            room=args.room,
            release_rate=args.release_rate,
            max_active=args.max_active,
        )
    )


def _keys_dir(args: argparse.Namespace) -> Path:
    return Path(args.keys_dir or os.environ.get("WAITROOM_KEYS_DIR", ".waitroom/keys"))


def _keys_list(args: argparse.Namespace) -> int:
    keys_dir = _keys_dir(args)
    ensure_keys(keys_dir)
    ring = KeyRing(keys_dir)
    now = time.time()
    signer = ring.signer("rsa").kid
    for jwk in ring.jwks()["keys"]:
        kid = jwk["kid"]
        active_from = int(kid.split("-")[1])
        mark = "signing" if kid == signer else ("pending" if active_from > now else "verify-only")
        sys.stdout.write(f"{kid}\t{mark}\n")
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    keys_dir = _keys_dir(args)
    path = write_key(keys_dir, "rsa", int(time.time()) + args.activate_after)
    sys.stdout.write(
        f"added {path.stem}: published in the JWKS now, signs from "
        f"{args.activate_after}s from now\n"
    )
    return 0


def _keys_retire(args: argparse.Namespace) -> int:
    path = _keys_dir(args) / f"{args.kid}.pem"
    if not path.exists():
        sys.stderr.write(f"no key {args.kid} in {path.parent}\n")
        return 1
    path.unlink()
    sys.stdout.write(f"removed {args.kid}; tokens it signed no longer verify\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="waitroom",
        description="A fair, honest virtual waiting room. See the README for the API.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="start the whole stack locally (Valkey, NATS, gateway, workers, demo site)",
        description=(
            "Start valkey-server and nats-server -js from their wheels in a data folder, "
            "the gateway, both workers and a demo protected site; create a demo room; "
            "print the URLs and the admin key; stop everything on Ctrl-C. "
            "WAITROOM_REDIS_URL / WAITROOM_NATS_URL, when set, are used instead of "
            "starting servers. Busy ports are replaced by free ones."
        ),
    )
    up.add_argument("--data-dir", default=".waitroom", help="where data, keys and logs live")
    up.add_argument("--port", type=int, default=8000, help="gateway port (default 8000)")
    up.add_argument("--demo-port", type=int, default=8001, help="demo site port (8001)")
    up.add_argument("--redis-port", type=int, default=6390, help="valkey port (6390)")
    up.add_argument("--nats-port", type=int, default=4222, help="NATS port (4222)")
    up.add_argument("--gateways", type=int, default=1, help="gateway processes (1)")
    up.add_argument("--room", default="demo", help="id of the demo room (demo)")
    up.add_argument(
        "--release-rate", type=float, default=2.0, help="demo room's release rate, people/s (2)"
    )
    up.add_argument("--max-active", type=int, default=5, help="demo room's capacity (5)")
    up.set_defaults(func=_up)

    keys = sub.add_parser(
        "keys",
        help="list, rotate or retire the token signing keys",
        description=(
            "Signing keys live in WAITROOM_KEYS_DIR (or --keys-dir), shared by every "
            "gateway. Every key there is published in the JWKS; the newest active one signs."
        ),
    )
    keys.add_argument("--keys-dir", help="the keys folder (default WAITROOM_KEYS_DIR)")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    ksub.add_parser("list", help="every key and whether it signs").set_defaults(func=_keys_list)
    rotate = ksub.add_parser(
        "rotate",
        help="add a new RSA key that starts signing later",
        description=(
            "Add a new RSA key. It is published in the JWKS at once and starts signing after "
            "--activate-after seconds, so protected sites that cache the JWKS learn it first."
        ),
    )
    rotate.add_argument(
        "--activate-after", type=int, default=600, help="seconds until the new key signs (600)"
    )
    rotate.set_defaults(func=_keys_rotate)
    retire = ksub.add_parser("retire", help="remove a key (its tokens stop verifying)")
    retire.add_argument("kid")
    retire.set_defaults(func=_keys_retire)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
