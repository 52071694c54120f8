"""Config loading: defaults, errors that name file/line/field, checks."""

import pytest
from google.protobuf import text_format

from estafeta.proto import config_pb2
from estafeta.supervisor.config import (
    ConfigError,
    default_config,
    format_config,
    load_config,
    normalize_domain,
    parse_config,
    parse_listen_address,
)


def test_embedded_defaults_match_the_issue():
    cfg = load_config(None)
    assert list(cfg.smtp_address) == ["127.0.0.1:2525"]
    assert cfg.data_dir == "./estafeta-data"
    assert [d.name for d in cfg.local_domain] == ["localhost"]
    assert cfg.max_data_size_bytes == 50 * 1024 * 1024
    assert cfg.max_recipients == 100
    assert cfg.hostname  # from the OS
    assert not cfg.chaos.crash


def test_defaults_print_every_field_and_parse_back():
    text = format_config(default_config())
    for field in (
        "hostname",
        "data_dir",
        "smtp_address",
        "max_data_size_bytes",
        "max_recipients",
        "local_domain",
        "max_queue_items",
        "max_queue_bytes",
        "retry",
        "tracing",
    ):
        assert field in text
    again = parse_config(text, "defaults")
    assert again.max_queue_bytes == default_config().max_queue_bytes


def test_data_dir_override(tmp_path):
    f = tmp_path / "e.conf"
    f.write_text('data_dir: "/somewhere"\n')
    assert load_config(str(f), "/else").data_dir == "/else"
    assert load_config(str(f)).data_dir == "/somewhere"


@pytest.mark.parametrize(
    "text, expect",
    [
        ('hostname: "a"\nhostnam: "x"\n', 'e.conf:2:1: Message type "estafeta.Config" has no field named "hostnam"'),
        ("max_recipients: -1\n", "e.conf:1:17"),
        ('smtp_address: "nowhere"\n', 'e.conf:1: smtp_address: "nowhere" is not "host:port"'),
        ('smtp_address: "127.0.0.1:70000"\n', "port 70000 is out of range"),
        (
            '\n\nchaos { crash { actor: "QueueIten" probability: 0.3 } }\n',
            'e.conf:3: actor: unknown actor class "QueueIten"',
        ),
        ('chaos { crash { actor: "QueueItem" probability: 1.5 } }\n', "probability: 1.5 is not between 0 and 1"),
        ('local_domain { user: "bob" }\n', "every local_domain needs a name"),
        ('local_domain { name: "a.test" }\nlocal_domain { name: "A.test" }\n', "listed twice"),
        ("max_recipients: 0\n", "max_recipients: must be greater than 0"),
        ('log_level: "loud"\n', 'e.conf:1: log_level: "loud" is not one of'),
        ('\nhttp_address: "8025"\n', 'e.conf:2: http_address: "8025" is not "host:port"'),
        ('smtp_address: "127.0.0.1:25"\nhttp_address: "127.0.0.1:25"\n', "http_address: is also an smtp_address"),
        ('http_token_file: ""\n', "http_token_file: must name a file"),
        ("log_format: YAML\n", 'Enum type "estafeta.LogFormat" has no value named YAML'),
        (
            'relay_network: "10.0.0.0/8"\nrelay_network: "300.1.1.1/8"\n',
            'e.conf:2: relay_network: "300.1.1.1/8" is not',
        ),
    ],
)
def test_bad_config_names_file_line_and_field(tmp_path, text, expect):
    f = tmp_path / "e.conf"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(str(f))
    assert expect in str(e.value).replace(str(tmp_path) + "/", "")


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.conf"))


def test_listen_address_forms():
    assert str(parse_listen_address("[::1]:2525")) == "[::1]:2525"
    assert parse_listen_address("localhost:25").port == 25
    with pytest.raises(ValueError):
        parse_listen_address("::1:25")


def test_domains_normalised_with_idna2008():
    assert normalize_domain("Example.COM.") == "example.com"
    # IDNA2008/UTS 46 keeps ß (IDNA2003, the stdlib codec, maps it to ss).
    assert normalize_domain("faß.de") == "xn--fa-hia.de"


def test_chaos_config_parses():
    cfg = parse_config(
        'chaos { crash { actor: "QueueItem" probability: 0.3 } crash { actor: "LocalCourier" probability: 0.1 } }'
    )
    assert [(c.actor, round(c.probability, 2)) for c in cfg.chaos.crash] == [("QueueItem", 0.3), ("LocalCourier", 0.1)]
    text_format.MessageToString(cfg)  # printable
    assert isinstance(cfg, config_pb2.Config)


def test_monitoring_fields_default_and_parse():
    cfg = parse_config('http_address: ""\nlog_format: JSON\nhttp_token_file: "/etc/estafeta/token"\n')
    assert (cfg.http_address, cfg.http_token_file) == ("", "/etc/estafeta/token")
    assert cfg.log_format == config_pb2.JSON
    d = default_config()
    assert (d.http_address, d.http_token_file, d.log_format) == ("127.0.0.1:8025", "http.token", config_pb2.TEXT)
