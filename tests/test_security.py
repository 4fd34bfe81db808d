"""Who may talk to the app: sign-in, bearer tokens, the lockout, CSRF, hosts, bodies, files."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

import auth
import security
from config import ConfigError, load_settings
from conftest import API_TOKEN, ROOT, app_settings, served, wait_for
from journal import Journal

ORDER = {"symbol": "AAPL", "action": "BUY", "quantity": 1}
PASSWORD = "hunter2-hunter2"


def page_token(client) -> str:
    html = client.get("/").get_data(as_text=True)
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def signed_in(client, secret: str = API_TOKEN):
    """Open the login URL the app prints; return the dashboard's CSRF token."""
    res = client.get(f"/login?token={secret}")
    assert res.status_code == 302 and res.headers["Location"] == "/"
    return page_token(client)


def stream_ends(stream, frames, within: float) -> bool:
    """Whether the open event stream ends within ``within`` seconds (closed either way)."""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            next(frames)
        return False
    except StopIteration:
        return True
    finally:
        stream.close()


def client_from(app, address: str):
    """A test client whose requests come from ``address``."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def assert_nothing_placed(app, gateway):
    """Nothing journaled (so nothing can be sent later) and nothing at the gateway."""
    assert app.extensions["trading"].journal.count() == 0
    assert not gateway.all_orders()


def audit_outcomes(app) -> list[str]:
    return [row["outcome"] for row in app.extensions["trading"].journal.audit_rows(1000)]


@pytest.fixture
def make_app(gateway):
    """Build apps on the gateway with extra settings; stop them all afterwards."""
    from app_simple import create_app, shutdown

    made = []

    def build(**overrides):
        made.append(create_app({"SETTINGS": app_settings(gateway, **overrides)}))
        return made[-1]

    yield build
    for application in made:
        shutdown(application)


# ------------------------------------------------------------------ sign-in
def test_api_needs_a_token(app, gateway):
    anonymous = app.test_client()
    for method, url in (
        ("get", "/api/v1/status"),
        ("get", "/api/v1/orders"),
        ("get", "/api/v1/openapi.json"),
        ("post", "/api/v1/orders"),
        ("post", "/api/v1/kill-switch"),
    ):
        res = getattr(anonymous, method)(url, json=ORDER)
        assert res.status_code == 401, url
        assert res.get_json()["error"]["code"] == "unauthorized"
    wrong = anonymous.get("/api/v1/status", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert anonymous.get("/api/v1/health").status_code == 200  # for monitors
    assert_nothing_placed(app, gateway)


def test_anonymous_browser_is_sent_to_login_and_gets_no_session(app):
    anonymous = app.test_client()
    res = anonymous.get("/")
    assert res.status_code == 302 and res.headers["Location"].startswith("/login")
    for url in ("/", "/login", "/api/v1/status", "/api/v1/health", "/static/style.css"):
        with anonymous.get(url) as res:
            assert "Set-Cookie" not in res.headers, url
    assert anonymous.get_cookie("ibdash_session") is None
    page = anonymous.get("/login").get_data(as_text=True)
    assert 'name="secret"' in page and "csrf" not in page.lower()


def test_login_url_exchanges_the_token_for_a_strict_session(app, gateway):
    browser = app.test_client()
    res = browser.get(f"/login?token={API_TOKEN}")
    assert res.status_code == 302
    assert API_TOKEN not in res.headers["Location"]  # redirected to a URL without the token
    cookie = res.headers["Set-Cookie"]
    assert "SameSite=Strict" in cookie and "HttpOnly" in cookie and "Secure" not in cookie
    token = page_token(browser)
    assert browser.get("/api/v1/status").status_code == 200
    res = browser.post("/api/v1/orders", json=ORDER, headers={"X-CSRFToken": token})
    assert res.status_code == 202
    browser.post("/logout", data={"csrf_token": token})
    assert browser.get("/api/v1/status").status_code == 401


def test_session_cookie_is_secure_over_https(app):
    browser = app.test_client()
    res = browser.get(f"/login?token={API_TOKEN}", base_url="https://localhost")
    assert "; Secure" in res.headers["Set-Cookie"]


def same_origin_referer(policy: str, page: str) -> str | None:
    """The Referer a browser sends with a request from ``page`` to its own origin under the
    page's Referrer-Policy (the Fetch standard; Chromium checked): none under no-referrer,
    the origin under origin / strict-origin, else the page's URL."""
    if policy == "no-referrer":
        return None
    if policy in ("origin", "strict-origin"):
        parts = urlsplit(page)
        return f"{parts.scheme}://{parts.netloc}/"
    return page.partition("#")[0]


def test_a_dashboard_behind_an_https_proxy_can_write(make_app, gateway):
    """Over https Flask-WTF's CSRF check also wants a Referer naming this host: the page's
    Referrer-Policy must let the browser send one to the app (no-referrer made every order,
    cancel, kill switch and sign-out of an https dashboard a 403)."""
    public = "dash.example.test"
    # the test client's Host is localhost: the name the proxy sends upstream (as nginx does)
    app = make_app(trusted_proxies="127.0.0.1", trusted_hosts=f"127.0.0.1,localhost,{public}")
    browser = app.test_client()
    browser.environ_base.update(HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST=public)
    token = signed_in(browser)
    policy = browser.get("/").headers["Referrer-Policy"]
    referer = same_origin_referer(policy, f"https://{public}/")
    sent = {"X-CSRFToken": token, **({"Referer": referer} if referer else {})}
    res = browser.post("/api/v1/orders", json=ORDER, headers=sent)
    assert res.status_code == 202, res.get_json()
    forged = {"X-CSRFToken": token, "Referer": "https://evil.example/"}
    res = browser.post("/api/v1/orders", json=ORDER, headers=forged)
    assert res.status_code == 403 and res.get_json()["error"]["code"] == "csrf_failed"
    assert browser.post("/logout", data={"csrf_token": token}, headers=sent).status_code == 302
    assert browser.get("/api/v1/status").status_code == 401


def test_login_next_stays_on_this_site(app):
    browser = app.test_client()
    for target, expected in (
        ("/api/v1/orders", "/api/v1/orders"),
        ("https://evil.example/", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
    ):
        res = browser.get("/login", query_string={"token": API_TOKEN, "next": target})
        assert res.headers["Location"] == expected, target


def test_a_next_that_is_no_url_leads_home(app):
    """A ``next`` that no URL parser reads (``//[``: an unclosed IPv6 host) used to answer
    500 from the login page and from a right sign-in (urlsplit's ValueError); it is "/"."""
    for target in ("//[", "http://[::1"):
        browser = app.test_client()
        page = browser.get("/login", query_string={"next": target})
        assert page.status_code == 200, target
        form = browser.post("/login", data={"secret": API_TOKEN, "next": target})
        assert form.status_code == 302, target
        link = browser.get("/login", query_string={"token": API_TOKEN, "next": target})
        assert link.status_code == 302, target
        assert (form.headers["Location"], link.headers["Location"]) == ("/", "/"), target


def test_new_secret_ends_old_sessions(gateway, make_app):
    first = make_app()
    browser = first.test_client()
    signed_in(browser)
    cookie = browser.get_cookie("ibdash_session").value
    from app_simple import shutdown

    shutdown(first)
    second = make_app(api_token="another-api-token-0123456789")
    other = second.test_client()
    other.set_cookie("ibdash_session", cookie)  # same SECRET_KEY, so the cookie still verifies
    assert other.get("/api/v1/status").status_code == 401


def test_a_signed_out_cookie_stays_out_also_after_a_restart(gateway, make_app, tmp_path):
    """Signing out cleared the browser's cookie, but a copy of it (a shared machine, a synced
    profile) kept working for 31 days: the session's id is now revoked, in the journal."""
    from app_simple import shutdown

    journal = str(tmp_path / "orders.db")
    first = make_app(journal_path=journal)
    browser, other = first.test_client(), first.test_client()
    signed_in(browser)
    signed_in(other)
    copy = browser.get_cookie("ibdash_session").value
    assert browser.post("/logout", data={"csrf_token": page_token(browser)}).status_code == 302
    thief = first.test_client()
    thief.set_cookie("ibdash_session", copy)
    assert thief.get("/api/v1/status").status_code == 401
    assert other.get("/api/v1/status").status_code == 200  # only that session ended
    shutdown(first)
    again = make_app(journal_path=journal).test_client()
    again.set_cookie("ibdash_session", copy)
    assert again.get("/api/v1/status").status_code == 401


def test_health_tells_an_anonymous_caller_nothing_of_the_account(app, gateway):
    """/health is open to monitors; its ETag was the data version, so anyone could watch it
    change when an order was placed or filled. Now it changes with its answer only."""
    anonymous = app.test_client()
    before = anonymous.get("/api/v1/health")
    assert before.status_code == 200 and before.get_json() == {"ok": True}
    signed_in(browser := app.test_client())
    placed = browser.post(
        "/api/v1/orders", json=ORDER, headers={"X-CSRFToken": page_token(browser)}
    )
    assert placed.status_code == 202
    wait_for(lambda: [o for o in gateway.all_orders()])
    after = anonymous.get("/api/v1/health", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 304


def test_a_sign_out_the_journal_cannot_keep_still_signs_out(app):
    """The revocation is journaled; a journal that cannot be written made /logout a 500 and
    left the trader signed in. Now the session ends, and its copies are refused until a
    restart."""
    browser = app.test_client()
    signed_in(browser)
    copy = browser.get_cookie("ibdash_session").value
    app.extensions["trading"].journal.make_read_only()
    assert browser.post("/logout", data={"csrf_token": page_token(browser)}).status_code == 302
    assert browser.get("/api/v1/status").status_code == 401
    thief = app.test_client()
    thief.set_cookie("ibdash_session", copy)
    assert thief.get("/api/v1/status").status_code == 401


def test_a_browsers_open_stream_ends_when_its_session_expires(app, monkeypatch):
    """A stream opened shortly before the cookie's 24 h were up went on sending the account,
    positions and orders for good: the session was checked for a sign-out at each wake, never
    for its age. It ends once the cookie would be refused."""
    import itsdangerous.timed

    browser = app.test_client()
    nearly_a_day_ago = time.time() - auth.SESSION_HOURS * 3600 + 3
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: nearly_a_day_ago)
    signed_in(browser)
    monkeypatch.undo()
    stream = browser.get("/api/v1/stream", buffered=False)
    assert stream.status_code == 200
    frames = iter(stream.response)
    assert next(frames)  # open and sending: the session holds for 3 s more
    assert stream_ends(stream, frames, 12), "the stream went on after the session expired"
    assert browser.get("/api/v1/status").status_code == 401


def test_a_session_lasts_a_day(app, monkeypatch):
    import itsdangerous.timed

    browser = app.test_client()
    day_old = time.time() - auth.SESSION_HOURS * 3600 - 60
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: day_old)  # signed a day ago
    signed_in(browser)
    monkeypatch.undo()
    assert browser.get("/api/v1/status").status_code == 401
    signed_in(browser)
    assert browser.get("/api/v1/status").status_code == 200


def test_dashboard_password_signs_in_too(make_app):
    app = make_app(dashboard_password=PASSWORD)
    browser = app.test_client()
    assert browser.get("/").status_code == 302
    wrong = browser.post("/login", data={"secret": "nope"})
    assert wrong.status_code == 401 and b"Wrong token or password" in wrong.data
    assert browser.get_cookie("ibdash_session") is None
    right = browser.post("/login", data={"secret": PASSWORD})
    assert right.status_code == 302
    assert browser.get("/api/v1/status").status_code == 200


# --------------------------------------------------------- every rule, anonymous
PUBLIC = {"/login", "/api/v1/health", *auth.LOGIN_ASSETS}


def _concrete(rule) -> str:
    values = {
        "order_id": "o-none-000001",
        "filename": "app.js",
        "token": "not-the-secret",
        "alert_id": "0123456789ab",
    }
    return rule.build(values, append_unknown=False)[1]


def _every_call(app):
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield method, _concrete(rule)


def _crawl(client, base: str) -> tuple[set[str], list[str]]:
    """Follow the pages' own links from / as a browser would; collect any CSRF tokens."""
    seen, tokens, queue = set(), [], ["/"]
    while queue:
        url = queue.pop()
        if url in seen or not url.startswith("/"):
            continue
        seen.add(url)
        with client.get(url, base_url=base, follow_redirects=True) as res:
            text = res.get_data(as_text=True)
        tokens += re.findall(r'(?:csrf-token" content|csrf_token" value)="([^"]+)"', text)
        queue += re.findall(r'(?:href|src|action)="([^"#]+)"', text)
    return seen, tokens


def _assert_refused_everywhere(app, gateway, host: str) -> None:
    anonymous = app.test_client()
    seen, tokens = _crawl(anonymous, f"http://{host}")
    assert "/login" in seen and tokens == []  # the login page hands out no CSRF token
    headers = {"X-CSRFToken": "forged"}
    for method, url in _every_call(app):
        with anonymous.open(
            url, method=method, json=ORDER, headers=headers, base_url=f"http://{host}"
        ) as res:
            pass
        if url in PUBLIC:
            assert res.status_code < 500, (method, url)
            continue
        redirect = res.status_code == 302 and res.headers["Location"].startswith("/login")
        assert res.status_code == 401 or redirect, (method, url, res.status_code)
    assert anonymous.get_cookie("ibdash_session") is None
    assert_nothing_placed(app, gateway)


def test_every_rule_refuses_an_anonymous_caller(gateway, make_app):
    app = make_app(webhook_secret="webhook-secret-abcdefghij")
    _assert_refused_everywhere(app, gateway, "127.0.0.1:5000")


def test_every_rule_refuses_an_anonymous_caller_on_a_lan_bind(gateway, make_app):
    app = make_app(
        webhook_secret="webhook-secret-abcdefghij",
        dashboard_host="0.0.0.0",
        trusted_hosts="192.168.1.20",
    )
    _assert_refused_everywhere(app, gateway, "192.168.1.20:5000")
    anonymous = app.test_client()
    for method, url in _every_call(app):  # a forged Host is refused before anything else
        res = anonymous.open(
            url,
            method=method,
            json=ORDER,
            headers={"Host": "0.0.0.0:5000", "Authorization": f"Bearer {API_TOKEN}"},
        )
        assert res.status_code == 400, (method, url)
    assert_nothing_placed(app, gateway)


# ----------------------------------------------------------------- lockout
def test_failed_logins_lock_the_address_out(app):
    attacker = client_from(app, "10.0.0.5")
    statuses = [
        attacker.post("/login", data={"secret": f"guess-{i}"}).status_code for i in range(8)
    ]
    assert statuses == [401] * 5 + [429] * 3  # 5 attempts allowed per minute
    locked = attacker.get(f"/login?token={API_TOKEN}")  # even the right secret now
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert attacker.get_cookie("ibdash_session") is None
    neighbour = client_from(app, "10.0.0.6")
    assert neighbour.get(f"/login?token={API_TOKEN}").status_code == 302
    outcomes = audit_outcomes(app)
    assert outcomes.count("unauthorized: wrong secret") == 5
    assert sum(o.startswith("locked_out") for o in outcomes) == 4


def test_failed_bearer_tokens_lock_the_address_out(app, gateway):
    script = client_from(app, "10.0.0.7")
    for _ in range(5):
        res = script.get("/api/v1/status", headers={"Authorization": "Bearer guess"})
        assert res.status_code == 401
    res = script.post(
        "/api/v1/orders", json=ORDER, headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert res.status_code == 429 and res.get_json()["error"]["code"] == "too_many_attempts"
    assert res.headers["Retry-After"]
    assert_nothing_placed(app, gateway)


def audited_from(app, address: str) -> list[str]:
    rows = app.extensions["trading"].journal.audit_rows(1000)
    return [row["outcome"] for row in rows if row["remote"] == address]


def test_a_strangers_refusals_write_a_bounded_audit(app, gateway):
    """Anyone who reaches the port could add a journal row per request (a wrong token, then
    the lockout's 429s): the journal grew without end. A stranger's rows stop at the rate;
    others' refusals, and a token holder's own, are still each recorded."""
    stranger = client_from(app, "10.0.0.8")
    answers = [
        stranger.get("/api/v1/status", headers={"Authorization": "Bearer guess"}).status_code
        for _ in range(60)
    ]
    assert answers == [401] * 5 + [429] * 55
    outcomes = audited_from(app, "10.0.0.8")
    assert len(outcomes) == 20  # audit_limit.PER_CLIENT
    assert outcomes.count("unauthorized: wrong secret") == 5
    neighbour = client_from(app, "10.0.0.9")
    neighbour.post("/login", data={"secret": "guess"})
    assert audited_from(app, "10.0.0.9") == ["unauthorized: wrong secret"]
    script = client_from(app, "10.0.0.10")
    token = {"Authorization": f"Bearer {API_TOKEN}"}
    for _ in range(25):
        assert script.post("/api/v1/no-such-thing", json={}, headers=token).status_code == 404
    assert audited_from(app, "10.0.0.10") == ["refused: 404 NOT FOUND"] * 25
    assert_nothing_placed(app, gateway)


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_next_audit_row_tells_how_many_were_left_out(app):
    from audit_limit import StrangerAudit

    clock = ManualClock()
    app.extensions["stranger_audit"] = StrangerAudit(3, 100, seconds=60, monotonic=clock)
    stranger = client_from(app, "10.0.0.11")
    for _ in range(5):
        stranger.post("/login", data={"secret": "guess"})
    assert audited_from(app, "10.0.0.11") == ["unauthorized: wrong secret"] * 3
    clock.now += 60.5  # the window has room again
    stranger.post("/login", data={"secret": "guess"})
    newest = audited_from(app, "10.0.0.11")[0]
    assert newest.startswith("locked_out") or newest.startswith("unauthorized")
    assert newest.endswith("(+2 refusals before it left out of the audit: over its rate)")


def test_strangers_from_many_addresses_share_one_audit_rate_in_bounded_memory():
    """A new address per request (a botnet, an IPv6 range) gets no more rows: the overall rate
    holds, and what is kept per address stays bounded however many addresses come and go."""
    import audit_limit

    clock = ManualClock()
    gate = audit_limit.StrangerAudit(20, 200, seconds=60, monotonic=clock)
    admitted = [gate.admit(f"192.0.2.{i % 250}/{i}") for i in range(3000)]
    assert sum(a is not None for a in admitted) == 200
    assert gate.left_out() == 2800
    for minute in range(50):  # 50 minutes of new addresses, 400 a minute
        clock.now += 60.5
        for i in range(400):
            gate.admit(f"2001:db8:{minute}:{i}::/64")
        assert gate.windows() <= 200
    assert len(gate._left_out) <= audit_limit.MAX_TALLIES + 1


def test_a_webhook_strangers_refusals_are_bounded_and_a_signed_alerts_are_not(make_app, gateway):
    """Two webhook refusals came before its secret was checked (a body that is no JSON, a
    source outside WEBHOOK_ALLOWED_IPS) and wrote a row each, whoever called; an alert with
    the right secret refused later is the trader's own and is always recorded."""
    app = make_app(webhook_secret="webhook-secret-abcdefghij")
    stranger = client_from(app, "10.0.0.12")
    for _ in range(40):
        res = stranger.post("/api/v1/webhook", data="x", content_type="text/plain")
        assert res.status_code == 400
    assert len(audited_from(app, "10.0.0.12")) == 20  # audit_limit.PER_CLIENT
    tradingview = client_from(app, "10.0.0.13")
    for _ in range(25):
        res = tradingview.post(
            "/api/v1/webhook",
            json={"secret": "webhook-secret-abcdefghij", "symbol": "AAPL", "action": "HOLD"},
        )
        assert res.status_code == 400
    assert len(audited_from(app, "10.0.0.13")) == 25
    assert_nothing_placed(app, gateway)


def test_one_ipv6_network_is_one_client(app):
    """An IPv6 host holds a whole /64 (SLAAC, privacy addresses): a new address per guess
    used to be a new client, so one attacker got past the per-client lockout and, at 20
    guesses, locked everyone out. Its /64 is one client now; the next /64 is another."""
    for i in range(5):
        guesser = client_from(app, f"2001:db8:1:2::{i + 1:x}")
        assert guesser.post("/login", data={"secret": "guess"}).status_code == 401
    same_network = client_from(app, "2001:db8:1:2:ffff::9")
    assert same_network.get(f"/login?token={API_TOKEN}").status_code == 429
    neighbour = client_from(app, "2001:db8:1:3::1")
    assert neighbour.get(f"/login?token={API_TOKEN}").status_code == 302


def test_lockout_counts_every_address_and_lifts(app):
    clock = ManualClock()
    app.extensions["login_guard"] = auth.LoginGuard(((3, 2.0),), ((5, 60.0),), monotonic=clock)
    for i in range(5):  # spread over addresses: the total limit still holds
        client = client_from(app, f"10.0.1.{i}")
        assert client.post("/login", data={"secret": "guess"}).status_code == 401
    late = client_from(app, "10.0.1.99")
    res = late.get(f"/login?token={API_TOKEN}")
    assert res.status_code == 429 and res.headers["Retry-After"] == "60"
    app.extensions["login_guard"] = guard = auth.LoginGuard(
        ((3, 2.0),), ((100, 60.0),), monotonic=clock
    )
    for _ in range(3):
        guard.failed("10.0.2.1")
    clock.now += 0.5
    assert guard.wait_seconds("10.0.2.1") == 2  # 1.5 s, in whole seconds up
    clock.now += 1.5  # the window moves on
    assert guard.wait_seconds("10.0.2.1") == 0
    again = client_from(app, "10.0.2.1")
    assert again.get(f"/login?token={API_TOKEN}").status_code == 302


def test_the_lockout_forgets_quiet_addresses_so_its_memory_stays_bounded():
    """A stranger taking a new address (IPv6: a new /64) for every guess used to leave a key
    per address in the guard for good. An address is now forgotten once its longest window has
    passed, and past ``max_keys`` the longest quiet one is (it then starts afresh, as each of
    such a stranger's many addresses does anyway)."""
    from rate_window import MovingWindows

    clock = ManualClock()
    guard = auth.LoginGuard(((5, 60.0), (15, 3600.0)), ((1000, 60.0),), monotonic=clock)
    for i in range(500):
        guard.failed(f"2001:db8:{i:x}::1", overall=False)
        clock.now += 1.0
    assert guard.clients() == 500
    clock.now += 3600.0 - 250.0  # an hour since the 251st address's guess, not the 252nd's
    guard.failed("10.0.0.1")
    assert guard.clients() == 500 - 251 + 1
    clock.now += 3600.0
    guard.failed("10.0.0.2")
    assert guard.clients() == 1

    windows = MovingWindows(((2, 60.0),), max_keys=3, monotonic=clock)
    for key in ("a", "b", "a", "c", "d"):  # "a" is busier but "b" was quiet longest
        windows.hit(key)
    assert windows.keys() == 3
    assert windows.wait("a") == 60.0 and windows.wait("b") == 0.0


def test_moving_windows_hold_every_rule_at_once():
    from rate_window import MovingWindows

    clock = ManualClock()
    windows = MovingWindows(((2, 10.0), (3, 100.0)), monotonic=clock)
    windows.hit("k")
    assert windows.wait("k") == 0.0
    clock.now += 1.0
    windows.hit("k")
    assert windows.wait("k") == 9.0  # two in ten seconds: the first must leave the window
    clock.now += 9.0
    assert windows.wait("k") == 0.0
    windows.hit("k")
    assert windows.wait("k") == 90.0  # three in a hundred seconds
    assert windows.wait("someone else") == 0.0
    with pytest.raises(ValueError):
        MovingWindows(((0, 10.0),))


def test_webhook_secret_failures_count_too(make_app, gateway):
    app = make_app(webhook_secret="webhook-secret-abcdefghij")
    sender = client_from(app, "10.0.0.9")
    for _ in range(5):
        res = sender.post("/api/v1/webhook", json=ORDER, headers={"X-Webhook-Secret": "guess"})
        assert res.status_code == 401
    res = sender.post(
        "/api/v1/webhook", json=ORDER, headers={"X-Webhook-Secret": "webhook-secret-abcdefghij"}
    )
    assert res.status_code == 429
    assert_nothing_placed(app, gateway)


def test_strangers_webhook_guesses_lock_out_only_themselves(make_app, gateway):
    """The webhook is on the internet: wrong secrets from four addresses (20, the overall
    minute's allowance) used to lock every client out, so a stranger stopped TradingView's
    alerts and the trader's sign-in and scripts (429). They now lock out only their senders."""
    secret = "webhook-secret-abcdefghij"
    app = make_app(webhook_secret=secret)
    for i in range(4):
        stranger = client_from(app, f"203.0.113.{i}")
        for _ in range(5):
            res = stranger.post("/api/v1/webhook", json=ORDER, headers={"X-Webhook-Secret": "x"})
            assert res.status_code == 401
        res = stranger.post("/api/v1/webhook", json=ORDER, headers={"X-Webhook-Secret": secret})
        assert res.status_code == 429  # each sender is still locked out
    tradingview = client_from(app, "52.89.214.238")
    res = tradingview.post("/api/v1/webhook", json={**ORDER, "secret": secret})
    assert res.status_code == 202, res.get_json()
    trader = client_from(app, "127.0.0.1")
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}
    assert trader.get("/api/v1/status", headers=bearer).status_code == 200
    assert trader.get(f"/login?token={API_TOKEN}").status_code == 302


def test_another_sites_page_cannot_lock_the_trader_out(make_app, gateway):
    """Any page the trader opens can make the browser send /login?token=guess (an <img>) or
    post a form to /login or the webhook, from 127.0.0.1: counted as failed secrets, five
    locked the trader's own scripts (bearer token) and sign-in link out with 429 for a
    minute, and longer as the page kept on. Such requests are refused unread (403) and not
    counted; the trader's own attempts still are."""
    secret = "webhook-secret-abcdefghij"
    app = make_app(webhook_secret=secret)
    trader = client_from(app, "127.0.0.1")
    other_site = {"Sec-Fetch-Site": "cross-site"}
    for i in range(8):
        res = trader.get(f"/login?token=guess-{i}", headers=other_site)
        assert res.status_code == 403, res.status_code
        res = trader.post(
            "/login", data={"secret": f"guess-{i}"}, headers={"Origin": "https://evil.example"}
        )
        assert res.status_code == 403, res.status_code  # an older browser: its Origin says so
        res = trader.post("/login", data={"secret": "x"}, headers={"Origin": "http://["})
        assert res.status_code == 403, res.status_code  # an Origin that is no URL: not ours
        res = trader.post(
            "/api/v1/webhook",
            data=f'{{"secret": "guess-{i}", "ticker": "AAPL", "action": "buy", "contracts": 1}}',
            content_type="text/plain",
            headers={"Sec-Fetch-Site": "same-site"},
        )
        assert res.status_code == 403 and res.get_json()["error"]["code"] == "cross_site"
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}
    assert trader.get("/api/v1/status", headers=bearer).status_code == 200
    # even the right secret is not taken from another site's page (no session is planted)
    assert trader.get(f"/login?token={API_TOKEN}", headers=other_site).status_code == 403
    assert trader.get_cookie("ibdash_session") is None
    opened = trader.get(f"/login?token={API_TOKEN}", headers={"Sec-Fetch-Site": "none"})
    assert opened.status_code == 302  # the printed link, opened from the terminal
    assert_nothing_placed(app, gateway)
    outcomes = audit_outcomes(app)
    assert "unauthorized: wrong secret" not in outcomes
    assert any(o.startswith("refused: sent by another site's page") for o in outcomes)
    # the dashboard's own form and scripts still count: five wrong secrets lock out
    form = client_from(app, "127.0.0.1")
    own = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
    statuses = [
        form.post("/login", data={"secret": "wrong"}, headers=own).status_code for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]


def test_a_rebound_name_cannot_pose_as_the_proxy(make_app, gateway):
    """With TRUSTED_PROXIES=127.0.0.1 (Caddy, cloudflared) every loopback peer is believed,
    the trader's browser too: a DNS-rebound page (Host evil.example) set X-Forwarded-Host to a
    trusted name and passed the Host check, and its X-Forwarded-For named TradingView's
    address, whose real alerts its wrong secrets then locked out. The Host the peer itself
    sent is checked too."""
    secret = "webhook-secret-abcdefghij"
    app = make_app(
        webhook_secret=secret,
        trusted_proxies="127.0.0.1",
        trusted_hosts="127.0.0.1,localhost,tv.example.com",
    )
    page = client_from(app, "127.0.0.1")
    spoofed = {
        "Host": "evil.example:5000",
        "X-Forwarded-Host": "127.0.0.1",
        "X-Forwarded-For": "52.89.214.238",
    }
    for _ in range(8):
        res = page.post("/api/v1/webhook", json={**ORDER, "secret": "wrong"}, headers=spoofed)
        assert res.status_code == 400 and res.get_json()["error"]["code"] == "untrusted_host"
    caddy = client_from(app, "127.0.0.1")
    forwarded = {
        "Host": "tv.example.com",
        "X-Forwarded-Host": "tv.example.com",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "52.89.214.238",
    }
    res = caddy.post("/api/v1/webhook", json={**ORDER, "secret": secret}, headers=forwarded)
    assert res.status_code == 202, res.get_json()
    res = caddy.post(
        "/api/v1/webhook",
        json={**ORDER, "secret": secret},
        headers={**forwarded, "X-Forwarded-Host": "evil.example"},
    )
    assert res.status_code == 400  # what the proxy names must be trusted too


def test_a_proxy_elsewhere_may_send_its_upstreams_name(make_app, gateway):
    """nginx or Traefik in another container sends the Host of its upstream (``ibdash:5000``)
    and names the public one in X-Forwarded-Host: only the forwarded one is checked there (the
    rebinding check is for loopback peers, where the trader's browser is)."""
    app = make_app(
        webhook_secret="webhook-secret-abcdefghij",
        trusted_proxies="172.18.0.2",
        trusted_hosts="127.0.0.1,tv.example.com",
    )
    proxy = client_from(app, "172.18.0.2")
    forwarded = {"Host": "ibdash:5000", "X-Forwarded-Host": "tv.example.com"}
    alert = {**ORDER, "secret": "webhook-secret-abcdefghij"}
    assert proxy.post("/api/v1/webhook", json=alert, headers=forwarded).status_code == 202
    forwarded["X-Forwarded-Host"] = "evil.example"
    assert proxy.post("/api/v1/webhook", json=alert, headers=forwarded).status_code == 400


# -------------------------------------------------------------------- CSRF
def test_browser_session_needs_csrf_for_writes(app, gateway):
    browser = app.test_client()
    token = signed_in(browser)
    assert browser.get("/api/v1/status").status_code == 200
    res = browser.post("/api/v1/orders", json=ORDER)
    assert res.status_code == 403 and res.get_json()["error"]["code"] == "csrf_failed"
    res = browser.post("/api/v1/orders", json=ORDER, headers={"X-CSRFToken": "forged"})
    assert res.status_code == 403 and res.get_json()["error"]["status"] == 403
    assert_nothing_placed(app, gateway)
    res = browser.post("/api/v1/orders", json=ORDER, headers={"X-CSRFToken": token})
    assert res.status_code == 202


def test_cross_site_form_post_is_refused(app, gateway):
    browser = app.test_client()
    signed_in(browser)
    res = browser.post(
        "/api/v1/orders",
        data={"symbol": "AAPL", "action": "BUY", "quantity": "100"},
        headers={"Origin": "https://evil.example"},
    )
    assert res.status_code == 403
    res = browser.post(
        "/api/v1/kill-switch", data="engaged=true", content_type="application/x-www-form-urlencoded"
    )
    assert res.status_code == 403
    assert browser.post("/logout").status_code == 403  # no one signs a trader out either
    assert_nothing_placed(app, gateway)
    assert sum(o.startswith("refused: 403") for o in audit_outcomes(app)) == 3


# ------------------------------------------------------------------- hosts
def test_host_matching(client):
    for host in (
        "127.0.0.1:5000",
        "LOCALHOST:5000",
        "localhost",
        "[::1]:5000",
        "[::1]",
        "LocalHost.",
    ):
        assert client.get("/api/v1/status", headers={"Host": host}).status_code == 200, host
    for host in (
        "evil.example:5000",
        "rebind.attacker.test",
        "0.0.0.0:5000",
        "127.0.0.1:x",
        "localhost.evil.example",
        "",
    ):
        res = client.get("/api/v1/status", headers={"Host": host})
        assert res.status_code == 400, host
        assert res.get_json()["error"]["code"] == "untrusted_host"
    assert client.get("/", headers={"Host": "rebind.attacker.test"}).status_code == 400


def test_bind_anywhere_is_never_a_trusted_host(make_app):
    app = make_app(dashboard_host="0.0.0.0", trusted_hosts="Trader-PC.lan")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    assert (
        client.get("/api/v1/status", headers={**headers, "Host": "0.0.0.0:5000"}).status_code == 400
    )
    assert (
        client.get("/api/v1/status", headers={**headers, "Host": "trader-pc.lan:5000"}).status_code
        == 200
    )


def bind_settings(host, **values):
    return load_settings(env={}, dotenv_path=None, overrides={"dashboard_host": host, **values})


def test_non_loopback_bind_needs_token_secret_and_trusted_hosts(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("API_TOKEN", "SECRET_KEY")}
    env.update(DASHBOARD_HOST="0.0.0.0", JOURNAL_PATH=str(tmp_path / "orders.db"))
    result = subprocess.run(
        [sys.executable, str(ROOT / "app_simple.py")],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "API_TOKEN and SECRET_KEY" in result.stderr and "TRUSTED_HOSTS" in result.stderr
    keys = {"api_token": API_TOKEN, "secret_key": "s" * 20}
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        security.check_bind(
            bind_settings("0.0.0.0", api_token=API_TOKEN, trusted_hosts="192.168.1.20")
        )
    with pytest.raises(ConfigError, match="set TRUSTED_HOSTS"):
        security.check_bind(bind_settings("0.0.0.0", **keys))
    with pytest.raises(ConfigError, match="add 192.168.1.20 to TRUSTED_HOSTS"):
        security.check_bind(bind_settings("192.168.1.20", **keys, trusted_hosts="pc.lan"))
    with pytest.raises(ConfigError, match="bind-anywhere"):
        security.check_bind(bind_settings("127.0.0.1", trusted_hosts="0.0.0.0"))
    security.check_bind(bind_settings("0.0.0.0", **keys, trusted_hosts="192.168.1.20"))
    security.check_bind(bind_settings("192.168.1.20", **keys, trusted_hosts="192.168.1.20"))
    security.check_bind(bind_settings("127.0.0.1"))
    # a hop count believes whoever connects: only for an app nothing reaches but its proxy
    exposed = {**keys, "trusted_hosts": "192.168.1.20", "trusted_proxies": "1"}
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES=1 believes .* name the proxy"):
        security.check_bind(bind_settings("192.168.1.20", **exposed))
    security.check_bind(bind_settings("192.168.1.20", **{**exposed, "trusted_proxies": "10.0.0.2"}))
    security.check_bind(bind_settings("127.0.0.1", trusted_proxies="1"))


# ------------------------------------------------------------------ bodies
DEEP = b'{"a":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
ORDER_JSON = b'{"symbol": "AAPL", "action": "BUY", "quantity": 1}'
HOSTILE = [
    ("deep nesting", "application/json", DEEP, 400),
    ("deep objects", "application/json", b'{"a":' * 5000 + b"1" + b"}" * 5000, 400),
    ("UTF-16", "application/json", ORDER_JSON.decode().encode("utf-16"), 400),
    ("UTF-16 no BOM", "application/json", ORDER_JSON.decode().encode("utf-16-le"), 400),
    ("UTF-32", "application/json", ORDER_JSON.decode().encode("utf-32"), 400),
    ("UTF-8 BOM", "application/json", b"\xef\xbb\xbf" + ORDER_JSON, 400),
    ("latin-1", "application/json", '{"symbol": "AAPL\xe9"}'.encode("latin-1"), 400),
    ("charset utf-16", "application/json; charset=utf-16", ORDER_JSON, 415),
    ("text/plain", "text/plain", ORDER_JSON, 415),
    ("form", "application/x-www-form-urlencoded", b"symbol=AAPL&action=BUY&quantity=1", 415),
    ("no type", None, ORDER_JSON, 415),
    ("empty", "application/json", b"", 400),
    ("array", "application/json", b"[" + ORDER_JSON + b"]", 400),
    ("null", "application/json", b"null", 400),
    ("broken", "application/json", b'{"symbol": "AAPL",', 400),
    ("NaN", "application/json", b'{"symbol": "AAPL", "action": "BUY", "quantity": NaN}', 400),
    (
        "huge number",
        "application/json",
        b'{"symbol": "AAPL", "action": "BUY", "quantity": 1' + b"0" * 5000 + b"}",
        400,
    ),
]
WRITE_PATHS = (
    "/api/v1/orders",
    "/api/v1/orders/preview",
    "/api/v1/kill-switch",
    "/api/v1/webhook",
    "/api/v1/orders/o-none-000001/modify",
)


def test_hostile_bodies_never_reach_a_500_nor_the_gateway(make_app, gateway):
    app = make_app(webhook_secret="webhook-secret-abcdefghij")
    client = app.test_client()
    headers = {
        "Authorization": f"Bearer {API_TOKEN}",
        "X-Webhook-Secret": "webhook-secret-abcdefghij",
    }
    before = len(audit_outcomes(app))
    answers = []
    for name, content_type, body, expected in HOSTILE:
        for path in WRITE_PATHS:
            if name == "text/plain" and path == "/api/v1/webhook":
                continue  # TradingView's content type: accepted there (tests/test_webhook.py)
            res = client.post(path, data=body, content_type=content_type, headers=headers)
            answers.append((name, path, res.status_code))
            assert res.status_code == expected or (
                name in ("NaN", "huge number") and res.status_code in (400, 404, 422)
            ), (name, path, res.status_code)
            assert res.get_json()["error"]["status"] == res.status_code
    assert all(status < 500 for *_, status in answers)
    assert not app.extensions["trading"].handler.halted  # no kill-switch body got through
    assert_nothing_placed(app, gateway)
    assert len(audit_outcomes(app)) - before == len(answers)  # every refusal audited


# ---------------------------------------------------------- retryable = 503
@pytest.mark.slow
def test_stalled_gateway_answers_503_with_retry_after(app, client, gateway):
    assert client.post("/api/v1/orders?wait=1", json=ORDER).status_code == 200  # warm
    app.extensions["trading"].gate._quote_cache.clear()
    with gateway.stalled():  # longer than the risk gate's silence (3 s in tests: conftest)
        res = client.post("/api/v1/orders", json={**ORDER, "symbol": "MSFT"})
    assert res.status_code == 503, res.get_json()
    assert res.get_json()["error"]["code"] == "gateway_not_answering"
    assert int(res.headers["Retry-After"]) >= 1
    assert app.extensions["trading"].journal.count() == 1  # only the warm-up order


# ------------------------------------------------------------------- files
def test_data_files_are_private(gateway, make_app, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    Journal(str(folder / "orders.db")).close()  # an existing journal, readable by all
    os.chmod(folder / "orders.db", 0o644)
    (folder / "secret_key").write_text("an-old-secret-key-0123456789\n")
    os.chmod(folder / "secret_key", 0o644)
    app = make_app(journal_path=str(folder / "orders.db"), api_token=None, secret_key=None)
    client = app.test_client()
    token = app.extensions["api_token"]
    res = client.post(
        "/api/v1/orders?wait=1", json=ORDER, headers={"Authorization": f"Bearer {token}"}
    )
    assert res.status_code == 200  # the journal is written (and its WAL made)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    names = sorted(p.name for p in folder.iterdir())
    assert {"orders.db", "orders.db-wal", "api_token", "secret_key", "app.lock"} <= set(names)
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_generated_token_is_kept_private(make_app, tmp_path):
    app = make_app(journal_path=str(tmp_path / "data" / "orders.db"), api_token=None)
    path = tmp_path / "data" / "api_token"
    token = path.read_text().strip()
    assert len(token) >= 32 and oct(path.stat().st_mode & 0o777) == "0o600"
    res = app.test_client().get("/api/v1/status", headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 200


@pytest.mark.parametrize("left", ["", "\n", "abc\n"])
def test_a_token_file_left_empty_or_cut_short_is_replaced(make_app, tmp_path, gateway, left):
    """A first start that ran out of disk (or was killed) after creating data/api_token but
    before writing it left the file empty: the next start ran with an empty API token, and
    'Authorization: Bearer \\xa0' (stripped: empty) placed orders. The file is written whole or
    not at all, and one left empty or cut short is replaced by a new token."""
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    (folder / "api_token").write_text(left)
    (folder / "secret_key").write_text(left)
    app = make_app(journal_path=str(folder / "orders.db"), api_token=None, secret_key=None)
    token = (folder / "api_token").read_text().strip()
    assert len(token) >= 32 and app.extensions["api_token"] == token
    assert len((folder / "secret_key").read_text().strip()) >= 32
    stranger = app.test_client()
    for header in ("Bearer \xa0", "Bearer  ", f"Bearer {left.strip()}"):
        res = stranger.post("/api/v1/orders", json=ORDER, headers={"Authorization": header})
        assert res.status_code == 401, (header, res.get_json())
    stranger.post("/login", data={"secret": left.strip()})  # no session for it
    assert stranger.get("/api/v1/status").status_code == 401
    assert not gateway.all_orders()
    assert not list(folder.glob(".*.new"))  # no temporary file left


def test_an_empty_api_token_is_never_in_force(app):
    """Defence in depth: an app given an empty token refuses to start rather than match an
    empty bearer token."""
    from flask import Flask

    import auth as auth_module

    bare = Flask("bare")
    bare.config["SECRET_KEY"] = "test-secret-key-0123456789"
    with pytest.raises(ValueError, match="empty API token"):
        auth_module.init_auth(bare, "  ", None)


# ------------------------------------------------------------ the rest
def test_oversized_body_is_refused(client, gateway):
    body = {**ORDER, "symbol": "A" * 10, "pad": "x" * 70_000}
    res = client.post("/api/v1/orders", json=body)
    assert res.status_code == 413 and res.get_json()["error"]["status"] == 413
    assert not gateway.completed_orders()


def test_security_headers(client):
    for url in ("/", "/api/v1/status", "/login"):
        headers = client.get(url).headers
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        # a Referer only to the app (the https CSRF check wants one); none from the sign-in
        # page, whose URL may hold the token (a refused link): not even to the app's proxy
        policy = "no-referrer" if url == "/login" else "same-origin"
        assert headers["Referrer-Policy"] == policy
    refused = client.get("/login?token=wrong-token-0123456789")
    assert refused.status_code == 401 and refused.headers["Referrer-Policy"] == "no-referrer"


def test_a_shared_folder_keeps_its_mode_and_the_app_files_are_private(make_app, tmp_path):
    """JOURNAL_PATH in a folder that is not the app's alone (/tmp/orders.db, ~/orders.db): the
    app made the folder 0700, which took /tmp's sticky world-writable mode and locked every
    other user and program out of it. Its mode is now left alone; the app's files are 0600."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    (shared / "someone-elses.txt").write_text("not the app's\n")
    app = make_app(journal_path=str(shared / "orders.db"), api_token=None, secret_key=None)
    res = app.test_client().post(
        "/api/v1/orders?wait=1",
        json=ORDER,
        headers={"Authorization": f"Bearer {app.extensions['api_token']}"},
    )
    assert res.status_code == 200, res.get_json()  # the journal is written (and its WAL made)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    for name in ("orders.db", "orders.db-wal", "api_token", "secret_key", "app.lock"):
        assert stat.S_IMODE((shared / name).stat().st_mode) == 0o600, name


def test_second_instance_refuses_to_start(gateway, tmp_path):
    from app_simple import create_app, shutdown

    journal = str(tmp_path / "data" / "orders.db")
    first = create_app({"SETTINGS": app_settings(gateway, journal_path=journal)})
    try:
        with pytest.raises(security.InstanceLockedError, match="another copy of the app"):
            create_app(
                {
                    "SETTINGS": app_settings(
                        gateway, journal_path=journal, client_id=501, order_client_id=502
                    )
                }
            )
    finally:
        shutdown(first)
    again = create_app({"SETTINGS": app_settings(gateway, journal_path=journal)})
    shutdown(again)


def test_secrets_never_reach_the_logs(make_app, caplog):
    import logging

    secret = "webhook-secret-abcdefghij"
    caplog.set_level(logging.DEBUG)
    app = make_app(webhook_secret=secret, dashboard_password="pw-0123456789abcdef")
    client = app.test_client()
    client.get("/api/v1/status", headers={"Authorization": "Bearer wrong-token"})
    client.post("/api/v1/webhook", json={}, headers={"X-Webhook-Secret": "bad"})
    client.post("/login", data={"secret": "nope"})
    assert client.get(f"/login?token={API_TOKEN}").status_code == 302
    ok = client.get("/api/v1/status", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert ok.status_code == 200
    text = "\n".join(r.getMessage() for r in caplog.records)
    for value in (API_TOKEN, secret, "pw-0123456789abcdef", "test-secret-key-0123456789"):
        assert value not in text
    audit = str(app.extensions["trading"].journal.audit_rows(1000))
    assert API_TOKEN not in audit and "pw-0123456789abcdef" not in audit


# -------------------------------------------------------------- starvation
@pytest.fixture
def every_long_call_slot_held(app):
    """Hold every long-call slot, as open streams and waiting calls would."""
    slots = app.extensions["trading"].long_calls
    held = 0
    while slots.acquire(blocking=False):
        held += 1
    yield held
    for _ in range(held):
        slots.release()


def test_long_calls_never_take_the_last_threads(app, client, gateway, every_long_call_slot_held):
    from services import LONG_CALL_SLOTS, RESERVED_THREADS, SERVER_THREADS

    assert every_long_call_slot_held == LONG_CALL_SLOTS == SERVER_THREADS - RESERVED_THREADS
    res = client.get("/api/v1/stream")
    assert res.status_code == 503 and res.headers["Retry-After"]
    res = client.get("/api/v1/quote?symbol=AAPL")
    assert res.status_code == 503 and res.get_json()["error"]["code"] == "busy"
    res = client.post("/api/v1/orders?wait=1", json=ORDER)  # placed, answered without waiting
    assert res.status_code == 202 and res.get_json()["order"]["verdict"] is None
    assert client.get("/api/v1/health").status_code == 200
    assert client.get("/api/v1/status").status_code == 200
    res = client.post("/api/v1/kill-switch", json={"engaged": True})
    assert res.status_code == 200 and res.get_json()["engaged"] is True
    assert app.extensions["trading"].handler.halted


# ------------------------------------------------------ the printed sign-in URL
def test_the_printed_sign_in_url_opens_a_session(tmp_path):
    """``python app_simple.py`` prints a login URL on the terminal (not in its logs); opening
    it signs the browser in; the data folder it made is private."""
    import http.cookiejar
    import urllib.request

    env = {k: v for k, v in os.environ.items() if k not in ("API_TOKEN", "SECRET_KEY")}
    env.update(
        IB_MODE="sim",
        SIM_PORT="0",
        DASHBOARD_PORT="0",  # any free port: the printed URL names the one taken
        LOG_LEVEL="INFO",
        JOURNAL_PATH=str(tmp_path / "data" / "orders.db"),
        PYTHONUNBUFFERED="1",
    )
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app_simple.py")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        for line in proc.stdout:
            if "login?token=" in line:
                url = line.split("opening: ", 1)[1].strip()
                break
        assert url and url.startswith("http://127.0.0.1:"), url
        port = int(url.split(":")[2].split("/")[0])
        assert port > 0 and url.startswith(f"http://127.0.0.1:{port}/login?token="), url
        token = url.split("token=", 1)[1]
        assert token == (tmp_path / "data" / "api_token").read_text().strip()
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with opener.open(url, timeout=10) as page:
            assert page.url == f"http://127.0.0.1:{port}/" and b"csrf-token" in page.read()
        with opener.open(f"http://127.0.0.1:{port}/api/v1/status", timeout=10) as res:
            assert res.status == 200
        assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    finally:
        proc.terminate()
        _, logs = proc.communicate(timeout=30)
    assert "Dashboard on" not in logs and token not in logs  # logs never carry the token


def test_the_sign_in_url_of_any_configured_token_signs_in(make_app, capsys):
    """API_TOKEN may be any text of 16 characters or more (openssl rand -base64 gives '+',
    '/' and '='): the printed link carried it unescaped, so a '+' arrived as a space, '&' or
    '#' cut it short, and the link answered 'Wrong token' (counted towards the lockout)."""
    import app_simple

    token = "tok+en/with=odd&chars#0123%41 x"
    app = make_app(api_token=token)
    app_simple._print_login_url(app, app.extensions["trading"].settings, 5000)
    link = re.search(r"opening: http://127\.0\.0\.1:5000(\S+)", capsys.readouterr().out)
    assert link, "no sign-in link printed"
    browser = app.test_client()
    res = browser.get(link.group(1))
    assert res.status_code == 302 and res.headers["Location"] == "/"
    assert browser.get("/api/v1/status").status_code == 200


def test_a_body_declared_bigger_than_the_limit_is_refused_before_it_is_read(app):
    """waitress took up to 1 GB of a request's body (on disk, in a temporary file) before
    Flask's 64 KB limit saw it: a stranger's hundred connections held 100 GB. A body declared
    bigger than MAX_BODY_BYTES is refused at its headers."""
    with served(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"POST /api/v1/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: text/plain\r\nContent-Length: 50000000\r\n\r\n" + b"x" * 65536
            )
            answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_browsers_open_stream_ends_when_it_signs_out(app):
    """The session was checked when the stream opened only: after signing out (or being
    signed out from another tab) the open stream went on sending the account, positions and
    orders. It ends at its next wake, 2 s at most."""
    browser = app.test_client()
    token = signed_in(browser)
    stream = browser.get("/api/v1/stream", buffered=False)
    assert stream.status_code == 200
    frames = iter(stream.response)
    assert next(frames)  # the stream is open and sending
    assert browser.post("/logout", data={"csrf_token": token}).status_code == 302
    assert stream_ends(stream, frames, 8), "the stream went on after the sign-out"
