"""supervisor/listeners.py: each listener's protocol parameters, and the
zero configuration's hint (pure functions of the Config)."""

from __future__ import annotations

from estafeta.actors import smtp
from estafeta.actors.tls import CertStore
from estafeta.supervisor.config import load_config, parse_config
from estafeta.supervisor.listeners import how_to_try, server_params


def test_each_mode_gets_its_params():
    cfg = parse_config('hostname: "mx.test"\nauth { mechanism: "plain" mechanism: "SCRAM-SHA-256" }\n')
    with_cert = CertStore([], "mx.test")
    with_cert.context = object()  # type: ignore[assignment] - "a certificate is loaded"
    mx = server_params(cfg, smtp.Mode.SMTP, with_cert)
    assert (mx.mode, mx.starttls, mx.auth_mechanisms, mx.auth_required) == (smtp.Mode.SMTP, True, (), False)
    sub = server_params(cfg, smtp.Mode.SUBMISSION, None)
    assert (sub.starttls, sub.auth_mechanisms, sub.auth_required) == (False, ("PLAIN", "SCRAM-SHA-256"), True)
    assert server_params(cfg, smtp.Mode.SUBMISSIONS, with_cert).auth_required


def test_zero_configuration_says_how_to_try_submission():
    (line,) = how_to_try(load_config(None))
    assert "127.0.0.1:2587" in line and "estafeta user add me@localhost" in line
    assert "swaks --server 127.0.0.1:2587 --tls --auth PLAIN" in line
    assert how_to_try(parse_config('smtp_address: "127.0.0.1:25"\n')) == []
