"""`estafeta dkim`: DKIM keys of our domains.

    estafeta dkim keygen DOMAIN [--selector S] [--algorithm rsa|ed25519|both]
    estafeta dkim check DOMAIN [--nameserver HOST[:PORT]]

keygen writes new keys to <data_dir>/dkim/<domain>/<selector>.key (0600;
never overwrites) and prints the TXT records to publish, in zone-file
syntax; without --algorithm it makes both an RSA (2048 bits) and an
Ed25519 key, each with a dated default selector ("rsa-20260101"), so mail
gets dual signatures (RFC 8463). check looks each key's record up in the
DNS and says whether it is published and matches the key; exit status 0
when every key matches, 1 otherwise, 2 when the domain has no keys.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any

from estafeta.actors.checks import dkimkeys
from estafeta.actors.checks.dnsport import DnsPort, is_temporary
from estafeta.supervisor.config import dns_domain

ALGORITHMS = {"rsa": (dkimkeys.RSA,), "ed25519": (dkimkeys.ED25519,), "both": (dkimkeys.RSA, dkimkeys.ED25519)}


def add_parser(sub: Any, common: Any) -> None:
    """Add the `dkim` command group to the top-level subparsers `sub`;
    `common` adds --config/--data-dir to a parser."""
    p = sub.add_parser("dkim", help="DKIM signing keys: make them, check their DNS records")
    dsub = p.add_subparsers(dest="action", required=True)
    k = dsub.add_parser("keygen", help="make a key and print the DNS record to publish")
    common(k)
    k.add_argument("domain", metavar="DOMAIN")
    k.add_argument("--selector", help="the selector (file name and DNS label); default: <type>-<date>")
    k.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="both", help="default: both")
    c = dsub.add_parser("check", help="look the published records up and compare them with the keys")
    common(c)
    c.add_argument("domain", metavar="DOMAIN")
    c.add_argument("--nameserver", metavar="HOST[:PORT]", help="ask this server instead of the system's resolver")


def run(args: argparse.Namespace, cfg: Any, out=sys.stdout, err=sys.stderr) -> int:
    """Run `estafeta dkim ...` with the loaded Config `cfg`."""
    data_dir = os.path.abspath(cfg.data_dir)
    try:
        domain = dns_domain(args.domain)
    except ValueError as e:
        print(f"estafeta: {e}", file=err)
        return 2
    if args.action == "keygen":
        return cmd_keygen(data_dir, domain, args.selector, ALGORITHMS[args.algorithm], out, err)
    try:
        resolver = resolver_for(cfg, args.nameserver)
    except ValueError as e:
        print(f"estafeta: {e}", file=err)
        return 2
    return cmd_check(data_dir, domain, resolver, out, err)


def resolver_for(cfg: Any, nameserver: str | None) -> DnsPort:
    """The resolver of Config.resolver / Config.dns, or one asking only
    `nameserver` ("192.0.2.53", "127.0.0.1:5353", "[::1]:53"). Raises
    ValueError for a bad address."""
    from estafeta.actors.dns import Resolver

    if nameserver is None:
        return Resolver.from_config(cfg)
    try:  # a bare address: port 53
        ipaddress.ip_address(nameserver)
        nameserver = f"[{nameserver}]:53" if ":" in nameserver else f"{nameserver}:53"
    except ValueError:
        pass
    return Resolver([nameserver], cache_size=0)


def cmd_keygen(data_dir: str, domain: str, selector: str | None, algorithms, out=sys.stdout, err=sys.stderr) -> int:
    """Write a key per algorithm; print each record to publish."""
    if selector and len(algorithms) > 1:
        print("estafeta: --selector names one key: give --algorithm rsa or ed25519 too", file=err)
        return 2
    for algorithm in algorithms:
        sel = selector or dkimkeys.default_selector(algorithm)
        try:
            path, key = dkimkeys.write_key(data_dir, domain, sel, algorithm)
        except FileExistsError:
            print(f"estafeta: {dkimkeys.key_path(data_dir, domain, sel)} exists; choose another --selector", file=err)
            return 1
        except (ValueError, OSError) as e:
            print(f"estafeta: {e}", file=err)
            return 1
        print(f"; {algorithm} key written to {path}", file=out)
        print(key.zone_line(), file=out)
    return 0


def _tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags[name.strip()] = "".join(value.split())
    return tags


def check_key(resolver: DnsPort, key: dkimkeys.DkimKey) -> tuple[bool, str]:
    """(matches, what was found) for one key's published record."""
    answer = resolver.query(key.record_name(), "TXT")
    if is_temporary(answer):
        return False, f"DNS {answer.rcode}"
    records = [r for r in answer.records if "p=" in r]
    if not records:
        return False, "not published" + (" (NXDOMAIN)" if answer.rcode == "NXDOMAIN" else "")
    if len(records) > 1:
        return False, f"{len(records)} key records (RFC 6376 §3.6.2.2: publish one)"
    tags = _tags(records[0])
    if tags.get("p") != key.public:
        return False, "published p= is another key" if tags.get("p") else "published record is revoked (empty p=)"
    if tags.get("k", "rsa") != key.k:
        return False, f"published k={tags.get('k', 'rsa')}, the key is {key.k}"
    return True, "published and matching"


def cmd_check(data_dir: str, domain: str, resolver: DnsPort, out=sys.stdout, err=sys.stderr) -> int:
    """One line per key of `domain`: ok or what is wrong."""
    try:
        keys = dkimkeys.load_keys(data_dir, domain)
    except dkimkeys.KeyFileError as e:
        print(f"estafeta: {e}", file=err)
        return 1
    if not keys:
        print(f"estafeta: no DKIM keys for {domain} in {dkimkeys.domain_dir(data_dir, domain)}", file=err)
        return 2
    status = 0
    for key in keys:
        ok, what = check_key(resolver, key)
        print(f"{'ok' if ok else 'FAIL':<5} {key.record_name()} ({key.algorithm}): {what}", file=out)
        if not ok:
            status = 1
            print(f"      publish: {key.zone_line()}", file=out)
    return status
