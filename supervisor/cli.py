"""The `estafeta` command: serve, config, queue, traces.

    estafeta serve [--config FILE] [--data-dir DIR]
    estafeta config defaults | check FILE
    estafeta queue list | dump [ID ...] | show ID | flush [ID ...] | hold|release|delete ID ... [--bounce]
    estafeta traces list [KEY] [--since T] [--until T] [--outcome O] [--errors] [--limit N] | show KEY
    estafeta dkim keygen DOMAIN [--selector S] [--algorithm A] | check DOMAIN
    estafeta user add|passwd|remove|list ... ; estafeta alias resolve ADDRESS  (supervisor/usercli.py)
    estafeta sendmail [sendmail options] [RECIPIENT ...]                       (supervisor/sendmail.py)

gevent's monkey patching comes first, before anything imports threading,
ssl or pykka (DESIGN.md, "Known hazards"). Errors are one line on stderr
and a non-zero exit, never a traceback.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from estafeta.supervisor.config import ConfigError, default_config, format_config, load_config  # noqa: E402


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="estafeta.conf (text protobuf); default: embedded defaults")
    p.add_argument("--data-dir", metavar="DIR", help="overrides the config's data_dir")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"estafeta {version('estafeta')}"
    except PackageNotFoundError:
        return "estafeta (not installed)"


def build_parser() -> argparse.ArgumentParser:
    from estafeta.supervisor import usercli

    ap = argparse.ArgumentParser(prog="estafeta", description="estafeta mail transfer agent")
    ap.add_argument("--version", action="version", version=_version())
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the daemon (SMTP on 127.0.0.1:2525 by default)")
    _common(p)
    # Internal: serving process I of N, started by the daemon PID (Config on stdin).
    p.add_argument("--process", metavar="I/N/PID", help=argparse.SUPPRESS)
    p.add_argument("--gauge-fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("--limits-fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("--listen-fds", help=argparse.SUPPRESS)
    p = sub.add_parser("config", help="print or check configuration")
    csub = p.add_subparsers(dest="action", required=True)
    csub.add_parser("defaults", help="print the whole default configuration")
    c = csub.add_parser("check", help="validate a configuration file")
    c.add_argument("file")
    p = sub.add_parser("queue", help="inspect and act on the queue (with or without a running daemon)")
    qsub = p.add_subparsers(dest="action", required=True)
    for name, helptext in (
        ("list", "one block per item, like mailq"),
        ("dump", "item files as they are on disk"),
        ("show", "one item and its message header"),
        ("flush", "attempt delivery now (every item when no ID is given), like postqueue -f / -i"),
        ("hold", "hold items: no delivery until released, like postsuper -h"),
        ("release", "release held or quarantined items, like postsuper -H"),
        ("delete", "delete items (--bounce: return them to the sender with a DSN), like postsuper -d"),
    ):
        q = qsub.add_parser(name, help=helptext)
        _common(q)
        if name in ("dump", "flush"):
            q.add_argument("ids", nargs="*", metavar="ID")
        elif name == "show":
            q.add_argument("id", metavar="ID")
        elif name in ("hold", "release", "delete"):
            q.add_argument("ids", nargs="+", metavar="ID")
        if name == "delete":
            q.add_argument("--bounce", action="store_true", help="send the sender a failure DSN first")
    p = sub.add_parser("traces", help="inspect traces in the local span store")
    tsub = p.add_subparsers(dest="action", required=True)
    t = tsub.add_parser("list", help="recent traces, newest first; filtered like the web page's search")
    _common(t)
    t.add_argument(
        "key", nargs="?", default="", metavar="KEY", help="queue id, Message-ID, address, domain, client IP or trace id"
    )
    t.add_argument("--since", default="", metavar="T", help="started at or after T (2026-11-22T14:50, 2h, 3d, ...)")
    t.add_argument("--until", default="", metavar="T", help="started before T")
    t.add_argument("--outcome", default="", choices=("", "delivered", "deferred", "bounced", "refused", "quarantined"))
    t.add_argument("--limit", type=int, default=20)
    t.add_argument("--errors", action="store_true", help="only traces with an error span")
    t = tsub.add_parser("show", help="one trace as a waterfall")
    _common(t)
    t.add_argument("key", metavar="KEY", help="trace id, queue id or Message-ID")
    from estafeta.supervisor import dkimcli

    dkimcli.add_parser(sub, _common)
    usercli.add_parsers(sub, _common)
    sub.add_parser("sendmail", help="sendmail-compatible submission (estafeta sendmail -t < message)")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # sendmail's command line is its own (-oi, -t, -f addr): not argparse's.
    if os.path.basename(sys.argv[0]) == "sendmail" or argv[:1] == ["sendmail"]:
        from estafeta.supervisor import sendmail

        return sendmail.main(argv[1:] if argv[:1] == ["sendmail"] else argv)
    if argv[:1] == ["serve"]:
        import signal

        # Until the daemon's reload handler is in place, SIGHUP must not kill it.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except ConfigError as e:
        print(f"estafeta: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _run(args) -> int:
    if args.command == "config":
        if args.action == "defaults":
            sys.stdout.write(format_config(default_config()))
            return 0
        load_config(args.file)
        print(f"{args.file}: ok")
        return 0
    if args.command == "serve" and getattr(args, "process", None):
        from estafeta.supervisor.daemon import serve_child

        return serve_child(args.process, args.gauge_fd, args.listen_fds, args.limits_fd, args.config)
    cfg = load_config(args.config, args.data_dir)
    if args.command == "serve":
        from estafeta.supervisor.daemon import serve

        return serve(cfg, config_path=args.config)
    if args.command in ("user", "alias"):
        from estafeta.supervisor import usercli

        return usercli.run(args, cfg)
    data_dir = os.path.abspath(cfg.data_dir)
    if args.command == "dkim":
        from estafeta.supervisor import dkimcli

        return dkimcli.run(args, cfg)
    if args.command == "queue":
        from estafeta.store.queue import QueueStore
        from estafeta.supervisor import queuecli

        store = QueueStore(queuecli.queue_dir(data_dir))
        if queuecli.check_queue_dir(store):
            return 1
        if args.action == "list":
            return queuecli.cmd_list(store)
        if args.action == "dump":
            return queuecli.cmd_dump(store, args.ids)
        if args.action == "show":
            return queuecli.cmd_show(store, args.id)
        return queuecli.cmd_action(cfg, store, args.action, args.ids, getattr(args, "bounce", False))
    from estafeta.tracing.viewer import cli as viewer

    db = os.path.join(data_dir, "traces.db")
    if args.action == "list":
        return viewer.cmd_list(
            db, args.limit, args.errors, key=args.key, since=args.since, until=args.until, outcome=args.outcome
        )
    return viewer.cmd_show(db, args.key)


if __name__ == "__main__":
    sys.exit(main())
