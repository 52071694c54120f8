"""The monitoring web page of a running `estafeta serve`, in a real browser
(Debian's chromium, headless, through selenium and Debian's chromedriver),
and its /metrics, probes and actions over plain HTTP.

Screenshots of every page go to the test's temporary directory
(`pages/*.png`)."""

from __future__ import annotations

import json
import re
import smtplib
import time
import urllib.error
import urllib.request
import uuid

import pytest
from e2e_harness import Daemon, make_message
from peers import chromium

from estafeta.proto import config_pb2
from estafeta.supervisor.metrics import FLUSH_SECONDS

pytestmark = pytest.mark.slow

#: Seconds the web page gets to show something.
WAIT = 30.0
CHAOS_ITEMS = '{ crash { actor: "QueueItem" probability: 0.5 } }'


def web_daemon(factory, **fields) -> tuple[Daemon, str]:
    """A daemon with the web page on a free port (two serving processes);
    returns it and the page's base URL, once /healthz and /readyz (every
    serving process accepting) answer 200."""
    d = factory(processes=2, **fields)
    base = f"http://{d.http_address}"
    deadline = time.monotonic() + WAIT
    while True:
        try:
            if get(base + "/healthz")[0] == 200 and get(base + "/readyz")[0] == 200:
                return d, base
        except OSError:
            pass
        assert time.monotonic() < deadline, f"/healthz, /readyz not 200 within {WAIT}s\n{d.log_tail()}"
        time.sleep(0.1)


def get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=15) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=b"", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_json(url: str) -> dict:
    status, body = get(url, {"Accept": "application/json"})
    assert status == 200, (url, status, body[:500])
    return json.loads(body)


def wait_json(url: str, test, what: str, d: Daemon) -> dict:
    deadline = time.monotonic() + WAIT
    while True:
        got = get_json(url)
        if test(got):
            return got
        assert time.monotonic() < deadline, f"{what}: not within {WAIT}s; last {got}\n{d.log_tail()}"
        time.sleep(0.2)


def crash_lines(d: Daemon) -> list[str]:
    return [line for line in d.log_text().splitlines() if " crash actor=QueueItem " in line]


def test_search_trace_waterfall_and_live_tree_in_chromium(daemon_factory, tmp_path):
    """Mail sent with smtplib is found on the search page by its recipient;
    its trace's waterfall shows the session, transaction, enqueue and
    delivery spans in that order; the live tree page shows a crash
    injected (chaos) after it was opened, without a reload."""
    assert chromium.available() is None, chromium.available()
    d, base = web_daemon(daemon_factory, chaos=CHAOS_ITEMS, quarantine_after_crashes=1000)
    pages = tmp_path / "pages"
    rcpt = f"web-{uuid.uuid4().hex[:8]}@localhost"
    d.send("sender@client.test", [rcpt], make_message(subject="waterfall"))
    d.wait_delivered("localhost", rcpt.split("@")[0], 1)
    wait_json(
        f"{base}/traces?q={rcpt}&format=json",
        lambda j: any(t["outcome"] == "delivered" for t in j["traces"]),
        "the delivered message's trace",
        d,
    )
    d.block_mailbox("localhost", "held")
    d.send("sender@client.test", ["held@localhost"], make_message(subject="held"))

    from selenium.webdriver.common.by import By

    with chromium.browser(tmp_path / "chromium") as b:
        # Search by recipient, as a postmaster would.
        b.get(base + "/traces")
        box = b.find_element(By.ID, "q")
        box.send_keys(rcpt)
        b.find_element(By.ID, "go").click()
        chromium.wait_for(b, lambda b: b.find_element(By.CSS_SELECTOR, "#results a.trace-link"), what="a result")
        assert rcpt in b.find_element(By.ID, "results").text
        chromium.shot(b, pages / "search.png")
        # Found again at the click: the results may have been drawn anew
        # meanwhile (a stale element then counts as "not yet").
        chromium.wait_for(
            b, lambda b: b.find_element(By.CSS_SELECTOR, "#results a.trace-link").click() or True, what="the click"
        )
        chromium.wait_for(
            b, lambda b: b.find_elements(By.CSS_SELECTOR, "#waterfall details.span"), what="the waterfall"
        )
        names = [e.get_attribute("data-name") for e in b.find_elements(By.CSS_SELECTOR, "#waterfall details.span")]
        order = [n for n in names if n in ("smtp.session", "smtp.transaction", "queue.enqueue", "delivery.attempt")]
        assert order[:4] == ["smtp.session", "smtp.transaction", "queue.enqueue", "delivery.attempt"], names
        lefts = {
            e.get_attribute("data-name"): float(
                re.search(r"left:\s*([\d.]+)%", e.find_element(By.CSS_SELECTOR, ".bar").get_attribute("style")).group(1)
            )
            for e in b.find_elements(By.CSS_SELECTOR, "#waterfall details.span")
        }
        assert lefts["smtp.session"] <= lefts["smtp.transaction"] <= lefts["queue.enqueue"] < lefts["delivery.attempt"]
        # A click shows the span's attributes.
        txn = b.find_element(By.CSS_SELECTOR, 'details.span[data-name="smtp.transaction"]')
        txn.find_element(By.TAG_NAME, "summary").click()
        chromium.wait_for(b, lambda b: "smtp.mail_from" in txn.text, what="the transaction's attributes")
        assert "sender@client.test" in txn.text
        chromium.shot(b, pages / "trace.png")

        # The queue and one item (held@localhost stays queued).
        b.get(base + "/queue")
        chromium.wait_for(b, lambda b: "held@localhost" in b.find_element(By.ID, "queue").text, what="the held item")
        chromium.shot(b, pages / "queue.png")
        b.find_element(By.CSS_SELECTOR, "#queue tbody a").click()
        chromium.wait_for(b, lambda b: b.find_elements(By.ID, "file"), what="the item page")
        assert "reverse_path" in b.find_element(By.ID, "file").text
        assert "Subject: held" in b.find_element(By.ID, "header").text
        chromium.shot(b, pages / "item.png")

        # The live tree: a crash injected after the page was opened shows up
        # without a reload, as a higher count of crashes since start on an
        # items supervisor (a count only grows; the "last crash" text may name
        # an id shown before: ids repeat across processes and retries).
        b.get(base + "/tree")
        chromium.wait_for(b, lambda b: b.find_elements(By.CSS_SELECTOR, '[data-sup="items"]'), what="the tree")
        b.execute_script("window.__stayed = 42;")
        refreshes = lambda b: int(b.find_element(By.ID, "tree").get_attribute("data-refreshes") or 0)  # noqa: E731
        chromium.wait_for(b, lambda b: refreshes(b) >= 1, what="the first refresh")
        # Read in one script call: the page replaces the tree every second,
        # and elements found before a refresh are stale after it.
        shown = lambda b: sum(  # noqa: E731
            b.execute_script(
                "return Array.from(document.querySelectorAll('[data-sup=\"items\"] > summary .crashes'),"
                " e => parseInt(e.dataset.crashes))"
            )
        )
        initial = shown(b)
        seen = len(crash_lines(d))
        for _ in range(40):  # each message crashes its item with p = 0.5 (chaos)
            d.send("sender@client.test", ["tree@localhost"], make_message(subject="tree"))
            time.sleep(0.3)
            if len(crash_lines(d)) > seen:
                break
        assert len(crash_lines(d)) > seen, f"no new QueueItem crash after 40 messages\n{d.log_tail()}"
        chromium.wait_for(
            b, lambda b: shown(b) > initial, what=f"the tree counting more than {initial} crashes of items"
        )
        assert b.execute_script("return window.__stayed;") == 42, "the page was reloaded"
        chromium.shot(b, pages / "tree.png")
    for name in ("search", "trace", "queue", "item", "tree"):
        assert (pages / f"{name}.png").stat().st_size > 5000, name


def _samples(text: str) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_traffic_across_serving_processes(daemon_factory):
    """/metrics, parsed with prometheus_client's parser, counts what was
    sent: connections, QueueItem crashes and restarts (chaos), the queue
    gauge; every serving process contributes (its own files)."""
    from prometheus_client.multiprocess import MultiProcessCollector

    d, base = web_daemon(
        daemon_factory, chaos='{ crash { actor: "QueueItem" probability: 0.3 } }', quarantine_after_crashes=1000
    )
    status, body = get(base + "/metrics")
    assert status == 200
    before = _samples(body.decode())
    n = 30
    for i in range(n):
        with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
            s.sendmail("m@client.test", [f"metrics{i % 3}@localhost"], make_message(subject=f"m{i}"))
    for k in range(3):
        d.wait_delivered("localhost", f"metrics{k}", n // 3, timeout=60)
    d.wait_queue_empty(timeout=60)
    # Each process writes its tallies every FLUSH_SECONDS (supervisor/metrics.py):
    # a scrape may be that much behind the last event (more on a busy hub).
    time.sleep(1.5 * FLUSH_SECONDS)
    disk_maildir = ("estafeta_disk_request_duration_seconds_count", (("op", "maildir"),))
    deadline = time.monotonic() + 5 * FLUSH_SECONDS
    while True:
        after = _samples(get(base + "/metrics")[1].decode())
        if after.get(disk_maildir, 0) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    conn = ("estafeta_connections_total", (("listener", "smtp"),))
    assert after[conn] - before.get(conn, 0) == n
    crashes = len(crash_lines(d))
    restarts = len([ln for ln in d.log_text().splitlines() if " restart sup=items " in ln and "actor=QueueItem" in ln])
    assert crashes > 0, "chaos made no crash"
    assert after[("estafeta_actor_crashes_total", (("actor", "QueueItem"),))] == crashes
    assert after[("estafeta_actor_restarts_total", (("actor", "QueueItem"),))] == restarts
    assert after[("estafeta_queue_items", ())] == 0
    assert after[disk_maildir] >= n
    # Both serving processes counted connections, each in its own file.
    per_process = []
    for f in sorted((d.data_dir / "metrics").glob("counter_*.db")):
        merged = _samples_of(MultiProcessCollector.merge([str(f)], accumulate=False))
        per_process.append(merged.get(conn, 0))
    assert len([c for c in per_process if c > 0]) >= 2, per_process
    assert get(base + "/readyz")[0] == 200

    # "Was it refused at the door?": a relay attempt is found, refused.
    with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("spammer@client.test", ["victim@elsewhere.test"], make_message(subject="relay"))
    found = wait_json(
        f"{base}/traces?q=victim@elsewhere.test&outcome=refused&format=json",
        lambda j: j["traces"],
        "the refused relay attempt",
        d,
    )
    assert found["traces"][0]["senders"] == ["spammer@client.test"]


def _samples_of(families) -> dict[tuple, float]:
    out = {}
    for family in families:
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


EVIL_SENDER = '"<script>alert(1)</script>"@example.org'


def test_actions_need_the_token_and_every_value_is_escaped(daemon_factory, tmp_path):
    """POST actions without the token (or with a wrong one) get 403 and
    change nothing; a message with <script> in its Subject, sender and
    Message-ID is shown as text on every page, and no script of it runs."""
    # Deferred once, then left alone for an hour: its file does not change by itself.
    d, base = web_daemon(daemon_factory, retry="{ initial_seconds: 3600 max_seconds: 3600 }")
    d.block_mailbox("localhost", "evil")
    msg = (
        b"From: <script>alert(4)</script> <a@example.org>\r\n"
        b"To: evil@localhost\r\n"
        b"Subject: <script>alert(2)</script>\r\n"
        b"Message-ID: <<script>alert(3)</script>@example.org>\r\n"
        b"\r\nbody\r\n"
    )
    with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
        s.ehlo("client.e2e.test")
        code, _ = s.docmd(f"MAIL FROM:<{EVIL_SENDER}>")
        assert code == 250
        assert s.docmd("RCPT TO:<evil@localhost>")[0] == 250
        assert s.data(msg)[0] == 250
    deadline = time.monotonic() + WAIT
    while not d.queued_ids():
        assert time.monotonic() < deadline, d.log_tail()
        time.sleep(0.05)
    (qid,) = d.queued_ids()
    d.wait_log(rf"deferred id={qid} ")
    item = d.queue_dir / f"{qid}.item"
    wait_json(f"{base}/traces?q={qid}&format=json", lambda j: j["traces"], "the trace", d)
    token = (d.data_dir / "http.token").read_text().strip()
    assert (d.data_dir / "http.token").stat().st_mode & 0o777 == 0o600
    assert str(d.data_dir / "http.token") in d.log_text()

    for action in ("flush", "hold", "release", "delete"):
        content = item.read_bytes()
        for tok in (None, "wrong-" + token):
            status, body = post(f"{base}/queue/{qid}/{action}", tok)
            assert status == 403, (action, status, body)
        assert item.read_bytes() == content, f"{action} without the token changed the item"
    assert re.search(rf"http action=flush id={qid} from=127\.0\.0\.1 result=forbidden", d.log_text())
    # With the token the serving process that owns it acts: held, then released.
    status, body = post(f"{base}/queue/{qid}/hold", token)
    assert status == 200 and json.loads(body)["ok"], body
    d.wait_log(rf"http action=hold id={qid} from=127\.0\.0\.1 result=ok")
    assert get_json(f"{base}/queue/{qid}")["item"]["state"] == "HELD"
    status, body = post(f"{base}/queue/{qid}/release", token)
    assert status == 200 and json.loads(body)["ok"], body

    # Escaped in the HTML as sent...
    for path in (f"/queue/{qid}", "/traces?q=example.org", "/queue"):
        status, html = get(base + path)
        assert status == 200
        assert b"<script>alert" not in html, path
    status, html = get(f"{base}/queue/{qid}")
    assert b"&lt;script&gt;alert(2)&lt;/script&gt;" in html

    # ... and in the browser: the text is there, nothing ran.
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    trace_id = get_json(f"{base}/traces?q={qid}")["traces"][0]["trace_id"]
    pages = tmp_path / "pages"
    with chromium.browser(tmp_path / "chromium") as b:
        for name, path, text in (
            ("escaped-item", f"/queue/{qid}", "Subject: <script>alert(2)</script>"),
            ("escaped-search", "/traces?q=example.org", EVIL_SENDER),
            ("escaped-trace", f"/traces/{trace_id}", "smtp.transaction"),
        ):
            b.get(base + path)
            chromium.wait_for(b, lambda b: text in b.find_element(By.TAG_NAME, "body").text, what=f"{text!r} on {path}")
            with pytest.raises(NoAlertPresentException):
                b.switch_to.alert.text  # noqa: B018 - raises when no alert is open
            scripts = [e.get_attribute("src") or "(inline)" for e in b.find_elements(By.TAG_NAME, "script")]
            assert all("/static/" in s for s in scripts), scripts
            chromium.shot(b, pages / f"{name}.png")
        b.get(f"{base}/queue/{qid}")
        assert "Message-ID: <<script>alert(3)</script>@example.org>" in b.find_element(By.ID, "header").text
        assert "From: <script>alert(4)</script>" in b.find_element(By.ID, "header").text


def test_json_log_lines_from_every_serving_process(daemon_factory):
    """log_format: JSON makes every line of every serving process one JSON
    object with the text line's fields."""
    d, _ = web_daemon(daemon_factory, log_format=config_pb2.JSON)  # an enum: written as its number
    d.send("json@client.test", ["json@localhost"], make_message(subject="json"))
    d.wait_delivered("localhost", "json", 1)
    assert d.stop() == 0
    lines = [ln for ln in d.log_text().splitlines() if ln.strip()]
    objs = [json.loads(ln) for ln in lines]  # every line parses
    assert all({"time", "level", "message"} <= o.keys() for o in objs)
    started = [o for o in objs if o.get("event") == "started"]
    assert sorted(o["process"] for o in started) == ["0/2", "1/2"]
    queued = [o for o in objs if o.get("event") == "queued"]
    assert len(queued) == 1 and queued[0]["from"] == "<json@client.test>" and queued[0]["to"] == "<json@localhost>"
    delivered = [o for o in objs if o.get("event") == "delivered"]
    assert delivered[0]["id"] == queued[0]["id"]
