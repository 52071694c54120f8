"""Config.checks, Config.dkim_signing, Config.srs: defaults and checks."""

import pytest

from estafeta.supervisor.config import ConfigError, default_config, format_config, parse_config


def test_defaults():
    cfg = parse_config('hostname: "mx.example.org"\n', "e.conf")
    c = cfg.checks
    assert c.enabled and c.spf and c.dkim and c.dmarc and c.iprev and c.arc
    assert c.enforce_dmarc_reject and not c.dkim_trust_body_length
    assert c.authserv_id == "mx.example.org"
    assert not c.dnsbl.zone and c.dnsbl.threshold == 1
    assert c.dkim_min_rsa_bits == 1024 and c.spf_timeout_seconds == 20
    assert c.dmarc_report_retention_seconds == 30 * 86400
    assert cfg.dkim_signing.enabled and cfg.dkim_signing.arc_seal
    assert not cfg.srs.enabled and cfg.srs.domain == "mx.example.org"
    assert (cfg.srs.hash_length, cfg.srs.max_age_days) == (4, 21)
    text = format_config(default_config())
    assert "checks {" in text and "srs {" in text and "dkim_signing {" in text


def test_explicit_values():
    cfg = parse_config(
        'hostname: "mx.example.org"\n'
        "checks {\n"
        '  authserv_id: "auth.example.org"\n'
        "  enforce_dmarc_reject: false\n"
        '  trusted_arc_sealer: "lists.example"\n'
        '  dnsbl { zone { name: "zen.example" weight: 0.5 } zone { name: "b.example" } threshold: 1.5 }\n'
        "}\n"
        'srs { enabled: true domain: "fwd.example.org" }\n',
        "e.conf",
    )
    assert cfg.checks.authserv_id == "auth.example.org"
    assert [(z.name, z.weight) for z in cfg.checks.dnsbl.zone] == [("zen.example", 0.5), ("b.example", 1.0)]
    assert cfg.srs.domain == "fwd.example.org"


@pytest.mark.parametrize(
    "text, expect",
    [
        ('checks { authserv_id: "a b" }\n', 'e.conf:1: authserv_id: "a b" is not a token'),
        ('checks { authserv_id: "x;y" }\n', "authserv_id"),
        ('checks {\n trusted_arc_sealer: "bad..name"\n}\n', "e.conf:2: trusted_arc_sealer"),
        ("checks { dkim_min_rsa_bits: 512 }\n", "dkim_min_rsa_bits: 512 is less than 1024"),
        ("checks { spf_timeout_seconds: 0 }\n", "spf_timeout_seconds: must be greater than 0"),
        ("checks { dnsbl { zone { weight: 1 } } }\n", "every dnsbl zone needs a name"),
        ('checks { dnsbl {\n zone { name: "z.example" weight: 0 } } }\n', "e.conf:2: weight: must be greater than 0"),
        ("checks { dnsbl { threshold: -1 } }\n", "threshold: must be greater than 0"),
        ("srs { hash_length: 3 }\n", "hash_length: 3 is not between 4 and 27"),
        ("srs { max_age_days: 1024 }\n", "max_age_days: 1024 is not between 1 and 1023"),
        ('srs { enabled: true domain: "localhost" }\n', "not a fully qualified domain"),
        ('srs { domain: "bad..name" }\n', "domain"),
    ],
)
def test_errors_name_file_line_and_field(text, expect):
    with pytest.raises(ConfigError) as e:
        parse_config(text, "e.conf")
    assert expect in str(e.value)
