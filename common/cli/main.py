"""`tocsin`: run the services, run the local stack, and do operator and admin tasks over the
parent's HTTP API (httpx). Admin commands read TOCSIN_URL and TOCSIN_KEY (or --url/--key)."""

from __future__ import annotations

import argparse
import json
import os
import runpy
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from common import secretbox
from common.cli.localstack import LocalStack, StackError
from config import load_local_config


def _client(args: argparse.Namespace) -> httpx.Client:
    if not args.key:
        sys.exit("tocsin: give an access key with --key or TOCSIN_KEY")
    return httpx.Client(base_url=args.url, timeout=30,
                        headers={"Authorization": f"Bearer {args.key}"})


def _show(resp: httpx.Response) -> None:
    if resp.status_code == 204:
        return
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    print(json.dumps(body, indent=2) if not isinstance(body, str) else body)
    if resp.status_code >= 400:
        sys.exit(1)


# -- services ---------------------------------------------------------------------------------


def _run_module(module: str) -> None:
    # By name, so this package never imports parent or child code itself.
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def cmd_up(args: argparse.Namespace) -> None:
    config = load_local_config(args.config)
    state_dir = Path(args.state_dir)
    stack = LocalStack(config, state_dir, os.environ.get("TOCSIN_DATABASE_URL"))
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        stack.start()
    except StackError as exc:
        stack.stop()
        sys.exit(f"tocsin up: {exc}")
    _print_summary(stack)
    try:
        while not stop:
            exited = [n for n, p in stack.processes.items() if p.poll() is not None]
            if exited:
                print(f"tocsin up: {', '.join(exited)} exited; see {stack.logs_dir}", file=sys.stderr)
                break
            time.sleep(0.5)
    finally:
        print("stopping…", flush=True)
        stack.stop()
        print("stopped.")


def _print_summary(stack: LocalStack) -> None:
    assert stack.secrets is not None
    cfg = stack.config
    db = "embedded, data in " + str(stack.state_dir / "pgdata") if stack._embedded else "TOCSIN_DATABASE_URL"
    lines = [
        f"Tocsin is up (state in {stack.state_dir})",
        f"  parent        {stack.parent_url}",
        *(f"  child         {a.name:<14} {stack.child_url(a.name)}   "
          + (f"(Package SID {a.package_sid[:24]}…)" if a.package_sid else
             f"(Entra app {a.client_id} in tenant {a.tenant_id})")
          for a in cfg.apps),
        f"  WNS emulator  https://{cfg.host}:{cfg.emulator_https_port}"
        f"   control {stack.control_url}   CA {stack.ca_file}",
        f"  PostgreSQL    {db}",
        "",
        f"Hub {cfg.hub!r} keys:",
        *(f"  {name:<22} {key}" for name, key in stack.secrets.keys.items()),
        f"  {'operator':<22} {stack.secrets.operator_key}",
        "",
        f"Shell variables for the README walkthrough: source {stack.state_dir / 'env'}",
        f"Logs: {stack.logs_dir}/*.log    Ctrl-C stops everything.",
    ]
    env = {
        "TOCSIN_URL": stack.parent_url,
        "TOCSIN_HUB": cfg.hub,
        "TOCSIN_KEY": stack.secrets.keys["full"],
        "TOCSIN_OPERATOR_KEY": stack.secrets.operator_key,
        "TOCSIN_EMULATOR": stack.control_url,
        **{f"LISTEN_KEY_{a.name.upper().replace('-', '_')}": stack.secrets.keys[f"listen:{a.name}"]
           for a in cfg.apps},
    }
    env_file = stack.state_dir / "env"
    env_file.write_text("".join(f"export {k}='{v}'\n" for k, v in env.items()))
    env_file.chmod(0o600)
    print("\n".join(lines), flush=True)


# -- admin ------------------------------------------------------------------------------------


def cmd_hub_create(args: argparse.Namespace) -> None:
    with _client(args) as c:
        _show(c.post("/v1/hubs", json={"name": args.name}))


def cmd_app_put(args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"childUrl": args.child_url}
    if args.signing_key:
        body |= {"signingKeyId": args.signing_key_id, "signingKey": args.signing_key}
    with _client(args) as c:
        _show(c.put(f"/v1/hubs/{args.hub}/apps/{args.name}", json=body))


def cmd_app_show(args: argparse.Namespace) -> None:
    path = f"/v1/hubs/{args.hub}/apps" + (f"/{args.name}" if args.name else "")
    with _client(args) as c:
        _show(c.get(path))


def cmd_key_create(args: argparse.Namespace) -> None:
    rights = [r.strip() for r in args.rights.split(",") if r.strip()]
    with _client(args) as c:
        _show(c.post(f"/v1/hubs/{args.hub}/keys",
                     json={"name": args.name, "rights": rights, "app": args.app}))


def cmd_key_list(args: argparse.Namespace) -> None:
    with _client(args) as c:
        _show(c.get(f"/v1/hubs/{args.hub}/keys"))


def cmd_key_revoke(args: argparse.Namespace) -> None:
    with _client(args) as c:
        _show(c.delete(f"/v1/hubs/{args.hub}/keys/{args.id}"))


def cmd_register(args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"installationId": args.id, "platform": "wns",
                            "pushChannel": args.channel, "tags": args.tag or []}
    if args.app:
        body["app"] = args.app
    if args.user:
        body["userId"] = args.user
    with _client(args) as c:
        _show(c.put(f"/v1/hubs/{args.hub}/installations/{args.id}", json=body))


def cmd_send(args: argparse.Namespace) -> None:
    target: dict[str, Any]
    if args.installation:
        target = {"installationId": args.installation}
    elif args.tag:
        target = {"tag": args.tag}
    elif args.user:
        target = {"userId": args.user}
    else:
        target = {"everyone": True}
    headers = dict(h.split("=", 1) for h in args.header or [])
    body = {"target": target, "payload": {"type": args.type, "body": args.body, "headers": headers}}
    if args.app:
        body["apps"] = args.app
    with _client(args) as c:
        resp = c.post(f"/v1/hubs/{args.hub}/notifications", json=body)
        if resp.status_code != 202 or not args.wait:
            _show(resp)
            return
        location = resp.json()["location"]
        deadline = time.monotonic() + args.wait
        while True:
            state = c.get(location)
            if state.json().get("state") == "completed" or time.monotonic() > deadline:
                _show(state)
                return
            time.sleep(0.2)


def cmd_notification_show(args: argparse.Namespace) -> None:
    with _client(args) as c:
        _show(c.get(f"/v1/hubs/{args.hub}/notifications/{args.id}"))


def cmd_mint_channel(args: argparse.Namespace) -> None:
    identity = args.app
    if not identity.startswith("ms-app://"):
        config = load_local_config(args.config)
        identity = next((a.identity for a in config.apps if a.name == args.app), args.app)
    resp = httpx.post(f"{args.emulator}/control/channels", json={"app": identity}, timeout=10)
    if resp.status_code != 201:
        _show(resp)
    print(resp.json()["channelUri"])


def cmd_encrypt_secret(args: argparse.Namespace) -> None:
    master = os.environ.get("TOCSIN_CHILD_MASTER_KEY")
    if not master:
        sys.exit("tocsin: set TOCSIN_CHILD_MASTER_KEY (make one with `tocsin new-master-key`)")
    print(secretbox.encrypt(master, sys.stdin.readline().rstrip("\n")))


def cmd_new_master_key(_: argparse.Namespace) -> None:
    print(secretbox.new_master_key())


def cmd_config(args: argparse.Namespace) -> None:
    from config import settings

    cls = {"parent": settings.ParentSettings, "child": settings.ChildSettings,
           "emulator": settings.EmulatorSettings}[args.service]
    print(json.dumps(cls().redacted(), indent=2))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tocsin", description=__doc__)
    p.add_argument("--url", default=os.environ.get("TOCSIN_URL", "http://127.0.0.1:8080"))
    p.add_argument("--key", default=os.environ.get("TOCSIN_KEY"))
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the local stack until Ctrl-C")
    up.add_argument("--config", type=Path, help="stack TOML (default: config/local.toml)")
    up.add_argument("--state-dir", default=os.environ.get("TOCSIN_STATE_DIR", ".tocsin"))
    up.set_defaults(func=cmd_up)
    for name, module in (("parent", "parent"), ("child", "child"),
                         ("emulator", "common.wns_emulator")):
        sp = sub.add_parser(name, help=f"run the {name} from its TOCSIN_* settings")
        sp.set_defaults(func=lambda _a, m=module: _run_module(m))

    hub = sub.add_parser("hub").add_subparsers(dest="action", required=True)
    hc = hub.add_parser("create", help="create a hub (operator key)")
    hc.add_argument("name")
    hc.set_defaults(func=cmd_hub_create)

    app = sub.add_parser("app").add_subparsers(dest="action", required=True)
    ap = app.add_parser("put", help="add or update an app and its child")
    ap.add_argument("hub")
    ap.add_argument("name")
    ap.add_argument("--child-url", required=True)
    ap.add_argument("--signing-key-id")
    ap.add_argument("--signing-key", help="omit to have the parent generate one (shown once)")
    ap.set_defaults(func=cmd_app_put)
    ash = app.add_parser("show", help="show one app (or list them) with its health")
    ash.add_argument("hub")
    ash.add_argument("name", nargs="?")
    ash.set_defaults(func=cmd_app_show)

    key = sub.add_parser("key").add_subparsers(dest="action", required=True)
    kc = key.add_parser("create")
    kc.add_argument("hub")
    kc.add_argument("--name", required=True)
    kc.add_argument("--rights", required=True, help="comma-separated: listen,send,manage")
    kc.add_argument("--app", help="limit the key to one app's installations")
    kc.set_defaults(func=cmd_key_create)
    kl = key.add_parser("list")
    kl.add_argument("hub")
    kl.set_defaults(func=cmd_key_list)
    kr = key.add_parser("revoke")
    kr.add_argument("hub")
    kr.add_argument("id")
    kr.set_defaults(func=cmd_key_revoke)

    reg = sub.add_parser("register", help="register (upsert) an installation")
    reg.add_argument("hub")
    reg.add_argument("id")
    reg.add_argument("--channel", required=True)
    reg.add_argument("--app")
    reg.add_argument("--tag", action="append")
    reg.add_argument("--user")
    reg.set_defaults(func=cmd_register)

    send = sub.add_parser("send", help="send a notification")
    send.add_argument("hub")
    target = send.add_mutually_exclusive_group()
    target.add_argument("--installation")
    target.add_argument("--tag")
    target.add_argument("--user")
    target.add_argument("--everyone", action="store_true")
    send.add_argument("--type", default="toast", choices=["toast", "tile", "badge", "raw"])
    send.add_argument("--body", required=True)
    send.add_argument("--header", action="append", help="X-WNS header as NAME=VALUE")
    send.add_argument("--app", action="append", help="limit to this app (repeatable)")
    send.add_argument("--wait", type=float, default=0, help="seconds to wait for completion")
    send.set_defaults(func=cmd_send)

    note = sub.add_parser("notification").add_subparsers(dest="action", required=True)
    ns = note.add_parser("show")
    ns.add_argument("hub")
    ns.add_argument("id")
    ns.set_defaults(func=cmd_notification_show)

    mint = sub.add_parser("mint-channel", help="get a channel URI from the WNS emulator")
    mint.add_argument("app", help="app name from the local config, or a Package SID")
    mint.add_argument("--config", type=Path)
    mint.add_argument("--emulator", default=os.environ.get("TOCSIN_EMULATOR",
                                                           "http://127.0.0.1:8090"))
    mint.set_defaults(func=cmd_mint_channel)

    enc = sub.add_parser("encrypt-secret",
                         help="encrypt a WNS client secret (stdin) for a child's settings")
    enc.set_defaults(func=cmd_encrypt_secret)
    mk = sub.add_parser("new-master-key", help="print a new master key")
    mk.set_defaults(func=cmd_new_master_key)
    cfg = sub.add_parser("config", help="print a service's settings with secrets masked")
    cfg.add_argument("service", choices=["parent", "child", "emulator"])
    cfg.set_defaults(func=cmd_config)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
