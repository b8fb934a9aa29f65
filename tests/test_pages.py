"""The web pages in a real browser: Chromium driven by Playwright against a real `up`.

One `claritycast up` serves the whole module (a worker and the web process on
the suite's Tansu and SecantusDB), with the Clarity simulator, the Slack
stand-in and an SMTP catcher in the test's process. A person signs in and
works through the pages with a mouse, with the keyboard alone, on a phone's
width and a desktop's; axe-core checks every page; hostile text from Clarity
stays text; a viewer has no button to press and a forged post is refused.
Waits are on what the page shows (Playwright's auto-waiting), never sleeps.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from claritycast.clock import SystemClock
from claritycast.localtime import local_yesterday
from claritycast.runtime.embedded import Endpoints
from claritycast.standins.clarity import ClaritySimulator
from claritycast.standins.history import seed_history
from claritycast.standins.slack import SlackStandin
from claritycast.standins.smtp import SmtpCatcher
from claritycast.store.core import Store
from models.clarity import GROUP_NAMES
from models.documents import Call
from tests.conftest import isolated_settings, settings_as_env
from tests.helpers import run_cli
from tests.test_api import web_url
from tests.test_up import UpProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.asyncio(loop_scope="module"),
]

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"
ADMIN, VIEWER = "ana@example.com", "viktor@example.com"
HOSTILE = "<img src=x onerror=alert(1)>"
WIDTHS = (375, 1440)


@pytest.fixture(scope="module")
def module_settings(servers: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return isolated_settings(servers, uuid.uuid4().hex[:10], tmp_path_factory.mktemp("pages"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def standins() -> AsyncIterator[tuple[ClaritySimulator, SlackStandin, SmtpCatcher]]:
    slack = SlackStandin()
    slack.add_channel("reports")
    async with ClaritySimulator(SystemClock()) as simulator, slack, SmtpCatcher() as smtp:
        yield simulator, slack, smtp


@pytest.fixture(scope="module")
def env(module_settings: dict[str, Any], standins: tuple[Any, ...]) -> dict[str, str]:
    simulator, slack, smtp = standins
    return settings_as_env(module_settings) | {
        "CLARITYCAST_CLARITY_API_URL": simulator.export_url,
        "CLARITYCAST_SLACK_TOKEN": slack.token,
        "CLARITYCAST_SLACK_API_URL": slack.base_url,
        "CLARITYCAST_SMTP_HOST": "127.0.0.1",
        "CLARITYCAST_SMTP_PORT": str(smtp.port),
        "CLARITYCAST_SMTP_SECURITY": "none",
        "CLARITYCAST_TICK_INTERVAL_S": "0.5",
        "CLARITYCAST_DELIVERY_GRACE_S": "0",
        "CLARITYCAST_WEB_PORT": "0",
        "CLARITYCAST_WEB_SECRET": "test-web-secret-not-for-production",
    }


@pytest.fixture(scope="module")
def up(env: dict[str, str], module_settings: dict[str, Any]) -> Iterator[UpProcess]:
    process = UpProcess(Path(module_settings["data_dir"]), env=env)
    try:
        process.wait_ready(60)
        yield process
    finally:
        process.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def base(up: UpProcess, env: dict[str, str]) -> str:
    """The web process's URL, once an admin and a viewer can sign in."""
    for email, role in ((ADMIN, "admin"), (VIEWER, "viewer")):
        code, _, err = await run_cli(
            env, "users", "add", email, "--role", role, "--password-stdin", stdin=PASSWORD + "\n"
        )
        assert code == 0, err
    return web_url(up)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def db(module_settings: dict[str, Any]) -> AsyncIterator[Store]:
    store = Store.connect(module_settings["mongodb_url"], module_settings["mongodb_database"])
    try:
        yield store
    finally:
        await store.client.drop_database(module_settings["mongodb_database"])
        await store.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--disable-gpu", "--disable-quic"]
        )
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(
    base: str, env: dict[str, str], db: Store, standins: tuple[Any, ...]
) -> dict[str, str]:
    """A source connected over the API (its label hostile), 20 days of history, a delivery sent."""
    simulator = standins[0]
    project = simulator.add_project("shop")
    code, out, err = await run_cli(env, "api-keys", "create", "fixture", "--role", "admin")
    assert code == 0, err
    headers = {"Authorization": f"Bearer {out.strip().splitlines()[-1]}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        made = await client.post(
            "/api/v1/sources", json={"token": project.token, "label": f"Shop {HOSTILE}"}
        )
        assert made.status_code == 202, made.text
        answer = made.json()
        events = await client.get(made.headers["location"] + "/events")
        assert events.status_code == 200
        mail = {"source": answer["source"]["id"], "metric": "sessions", "name": "fixture-mail",
                "emails": "fixture@example.com"}  # fmt: skip
        assert (await client.post("/api/v1/connections", json=mail)).status_code == 201
        sent = await client.post("/api/v1/connections/fixture-mail/send", json={"wait_s": 60})
        assert sent.json()["delivery"]["state"] == "sent", sent.text
    source = answer["source"]["id"]
    yesterday = local_yesterday("UTC", datetime.now(UTC))
    skip = [(yesterday - timedelta(days=5), group) for group in GROUP_NAMES]
    await seed_history(db, source, "UTC", yesterday - timedelta(days=20),
                       yesterday - timedelta(days=1), GROUP_NAMES, skip)  # fmt: skip
    return {"id": source, "pull": answer["pull"]["id"], "label": f"Shop {HOSTILE}"}


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser, base: str) -> AsyncIterator[BrowserContext]:
    made = await browser.new_context(base_url=base, viewport={"width": 1440, "height": 900})
    made.set_default_timeout(30_000)
    try:
        yield made
    finally:
        await made.close()


async def sign_in(context: BrowserContext, email: str = ADMIN) -> Page:
    page = await context.new_page()
    await page.goto("/sources")
    await expect(page).to_have_url(re.compile(r"/sign-in\?next="))
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Sources", exact=True)).to_be_visible()
    return page


async def test_a_person_connects_a_project_and_watches_its_groups_arrive(
    context: BrowserContext, standins: tuple[Any, ...], db: Store
) -> None:
    """Sign in; a bad token is refused by its field; 7 groups arrive; a token replaced; audited."""
    simulator = standins[0]
    project = simulator.add_project("acme", sessions_per_day=800)
    simulator.set_fault("acme", "server-error", only="Device", times=1)
    page = await sign_in(context)
    await page.get_by_role("link", name="New source").click()
    await page.get_by_label("Data Export token").fill("not-a-token")
    await page.get_by_label("Label").fill("Acme shop")
    await page.get_by_role("button", name="Test & Connect").click()
    token = page.get_by_label("Data Export token")
    await expect(token).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#token-error")).to_contain_text("token")
    await expect(token).to_have_value("")  # never echoed back
    await expect(page.get_by_label("Label")).to_have_value("Acme shop")

    await token.fill(project.token)
    await page.get_by_role("button", name="Test & Connect").click()
    await expect(page.get_by_role("heading", name="Connected Acme shop")).to_be_visible()
    await page.evaluate("window.sameDocument = true")
    rows = page.locator("#pull tbody tr")
    await expect(rows).to_have_count(7)
    await expect(page.locator("#pull-done")).to_be_visible(timeout=60_000)
    assert await page.evaluate("window.sameDocument === true"), "the groups arrived live"
    outcomes = await page.locator("#pull .outcome").all_inner_texts()
    assert outcomes.count("stored") == 6 and "server error" in outcomes, outcomes
    await page.get_by_role("link", name="Open Acme shop").click()
    await expect(page.get_by_role("heading", name="Traffic")).to_be_visible()
    assert len(simulator.requests_for("acme")) == 7

    await page.get_by_role("link", name="Replace token…").click()
    await page.get_by_label("New Data Export token").fill("still-not-a-token")
    await page.get_by_role("button", name="Replace the token").click()
    await expect(page.locator("#token-error")).to_contain_text("token")
    await page.get_by_label("New Data Export token").fill(project.token)
    await page.get_by_role("button", name="Replace the token").click()
    await expect(page.get_by_role("status")).to_contain_text("Token replaced")
    source = page.url.rsplit("/", 1)[1]
    trail = [
        (e.action, e.outcome[:7]) for e in await db.audit_events(object_name=f"project:{source}")
    ]
    assert trail == [("project.connect", "ok"), ("project.set-token", "refused"),
                     ("project.set-token", "ok")], trail  # fmt: skip
    assert all(
        e.actor_name == ADMIN for e in await db.audit_events(object_name=f"project:{source}")
    )


async def test_connections_preview_send_now_and_the_log(
    context: BrowserContext, shop: dict[str, str], standins: tuple[Any, ...]
) -> None:
    """A Slack and an email connection: a bad address by its field, preview, send now, the log."""
    _, slack, smtp = standins
    slack_before, smtp_before = len(slack.messages), len(smtp.messages)
    page = await sign_in(context)
    await page.goto(f"/connections/new?source={shop['id']}")
    await page.get_by_label("Slack channel").fill("#reports")
    await page.get_by_role("button", name="Preview").click()
    preview = page.locator("#preview")
    await expect(preview.get_by_role("img")).to_be_visible()
    await expect(preview.locator(".summary")).to_contain_text("Sessions")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_contain_text("Saved")

    await page.goto(f"/connections/new?source={shop['id']}")
    await page.get_by_label("Metric").select_option("top_browsers")
    await page.get_by_label("Email", exact=True).check()
    await page.get_by_label("Email addresses").fill("ops@")
    await page.get_by_label("Name (optional)").fill("browsers-by-mail")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#emails-error")).to_contain_text("ops@")
    await page.get_by_label("Email addresses").fill("ops@example.com")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_contain_text("Saved browsers-by-mail")

    names = await page.locator("tbody th[data-label=Connection]").all_inner_texts()
    for name in sorted(set(names) - {"fixture-mail"}):
        await page.goto("/connections")
        await page.get_by_role("button", name=f"Send {name} now").click()
        await expect(page.locator('#delivery[data-final="true"]')).to_be_attached(timeout=60_000)
        await expect(page.locator("#delivery .badge")).to_have_text("sent")
        await expect(page.get_by_role("img", name=re.compile("chart"))).to_be_visible()
    await page.goto("/deliveries?state=sent")
    sent = await page.locator("tbody th[data-label=Delivery] + td").all_inner_texts()
    assert "browsers-by-mail" in sent and len(set(sent) - {"fixture-mail"}) == 2, sent
    assert len(slack.messages) == slack_before + 1 and len(smtp.messages) == smtp_before + 1
    receipts = await page.locator("td[data-label=Receipt]").all_inner_texts()
    assert any(slack.messages[0].ts in text for text in receipts)


async def test_refresh_beyond_the_headroom_is_refused_in_words(
    context: BrowserContext, shop: dict[str, str], db: Store
) -> None:
    """With 10 requests in 24 hours, the page says so first, and the refusal says when."""
    now = datetime.now(UTC)
    day = local_yesterday("UTC", now).isoformat()
    for group in GROUP_NAMES[:3]:
        await db.log_call(Call(uuid.uuid4().hex, shop["id"], day, group, "refresh", now, "ok", 200))
    page = await sign_in(context)
    await page.goto(f"/sources/{shop['id']}")
    await expect(page.locator("#headroom")).to_contain_text("No refresh left now (10 of 10")
    await page.get_by_role("button", name="Refresh now").click()
    refusal = page.get_by_role("alert")
    await expect(refusal).to_contain_text("Refresh refused")
    await expect(refusal).to_contain_text("the next refresh is possible at")


async def test_a_viewer_sees_no_write_button_and_a_forged_post_is_refused(
    context: BrowserContext, shop: dict[str, str]
) -> None:
    """Every page a viewer reads has no button but sign out and filters; posts are 403."""
    page = await sign_in(context, VIEWER)
    for path in ("/sources", f"/sources/{shop['id']}", "/connections", "/deliveries",
                 "/settings/organisation"):  # fmt: skip
        await page.goto(path)
        buttons = set(await page.get_by_role("button").all_inner_texts())
        assert buttons <= {"Sign out", "Filter"}, (path, buttons)
        actions = await page.locator("form[method=post]").evaluate_all(
            "forms => forms.map(f => f.getAttribute('action'))"
        )
        assert actions == ["/sign-out"], (path, actions)
    for path in ("/operations", "/settings/access", "/sources/new"):
        answer = await page.goto(path)
        assert answer is not None and answer.status == 403, path
    csrf = await page.locator("input[name=csrf_token]").first.input_value()
    for data in ({"csrf_token": csrf}, {}):
        forged = await page.request.post(f"/sources/{shop['id']}/pause", form=data)
        assert forged.status == 403, await forged.text()
    await page.goto(f"/sources/{shop['id']}")
    await expect(page.locator(".badge").first).to_have_text("active")


async def test_text_from_clarity_is_shown_as_text_and_runs_nothing(
    context: BrowserContext, shop: dict[str, str]
) -> None:
    """A label and a referrer of ``<img src=x onerror=alert(1)>`` are text; no dialog opens."""
    dialogs: list[str] = []
    page = await sign_in(context)
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto("/sources")
    await expect(page.get_by_role("link", name=shop["label"])).to_be_visible()
    await page.get_by_role("link", name=shop["label"]).click()
    for summary in await page.locator("details summary").all():
        await summary.click()
    values = page.locator("#top_sources table")
    await expect(values.get_by_role("cell", name=HOSTILE, exact=True)).to_be_visible()
    search = page.locator("#top_pages_by_sessions table a", has_text="<script>")
    assert (await search.get_attribute("href") or "").startswith("https://shop.example.com/")
    assert await values.get_by_role("link").count() == 0, "no scheme, no link"
    assert await page.locator("img[src=x], script:not([src])").count() == 0
    titles = await page.locator("svg title").all_text_contents()
    assert any(HOSTILE in title for title in titles), "the chart's hover titles keep it as text"
    assert dialogs == []


async def pages_of(base: str, context: BrowserContext, shop: dict[str, str]) -> list[str]:
    """Every page an admin can open, with a delivery to show."""
    page = await context.new_page()
    await page.goto("/deliveries")
    keys = await page.locator("tbody th a").evaluate_all("links => links.map(a => a.pathname)")
    await page.close()
    return [
        "/sources", "/sources/new", f"/sources/{shop['id']}/pulls/{shop['pull']}",
        f"/sources/{shop['id']}", f"/sources/{shop['id']}/remove", "/connections",
        "/connections/new", "/deliveries", *keys[:1], "/operations", "/operations/quota",
        "/settings/organisation", "/settings/access", "/sources/no-such-source",
    ]  # fmt: skip
    assert keys, "the fixture sent one"


async def test_every_page_is_accessible_labelled_and_fits_a_phone_and_a_desktop(
    context: BrowserContext, browser: Browser, base: str, shop: dict[str, str]
) -> None:
    """axe-core: no serious or critical violation; every field labelled; no sideways scroll."""
    axe = Axe()
    page = await sign_in(context)
    anonymous = await browser.new_context(base_url=base)
    sign_in_page = await anonymous.new_page()
    await sign_in_page.goto("/sign-in")
    await check_page(axe, sign_in_page, "/sign-in")
    await anonymous.close()
    for path in await pages_of(base, context, shop):
        answer = await page.goto(path)
        assert answer is not None and answer.status == (404 if "no-such" in path else 200), path
        await check_page(axe, page, path)


async def check_page(axe: Axe, page: Page, path: str) -> None:
    results = await axe.run(page)
    grave = [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert grave == [], (path, grave)
    unlabelled = await page.locator("input:not([type=hidden]), select, textarea").evaluate_all(
        "fields => fields.filter(f => !f.labels.length && !f.getAttribute('aria-label'))"
        ".map(f => f.name)"
    )
    assert unlabelled == [], (path, unlabelled)
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 900})
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, (path, width, overflow)
    await page.set_viewport_size({"width": 1440, "height": 900})


async def tab_to(page: Page, selector: str, presses: int = 60) -> None:
    """Press Tab until the element ``selector`` has the focus: reachable by keyboard."""
    for _ in range(presses):
        await page.keyboard.press("Tab")
        if await page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is not reachable with Tab")


async def test_the_main_flows_work_with_the_keyboard_alone(
    context: BrowserContext, shop: dict[str, str]
) -> None:
    """Sign in, Test & Connect's refusal, and a connection previewed and saved: keys only."""
    page = await context.new_page()
    await page.goto("/sign-in")
    await tab_to(page, "#email")
    await page.keyboard.type(ADMIN)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Sources", exact=True)).to_be_visible()
    await tab_to(page, "a[href='/sources/new']")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name=re.compile("New source"))).to_be_visible()
    await tab_to(page, "#token")
    await page.keyboard.type("nope")
    await page.keyboard.press("Tab")
    await page.keyboard.type("Keyboard shop")
    await page.keyboard.press("Enter")
    await expect(page.locator("#token-error")).to_be_visible()
    await expect(page.get_by_label("Label")).to_have_value("Keyboard shop")

    await page.goto(f"/connections/new?source={shop['id']}")
    await tab_to(page, "#slack_channel")
    await page.keyboard.type("#reports")
    await tab_to(page, "#name")
    await page.keyboard.type("keyboard-sessions")
    await tab_to(page, "button[value=preview]")
    await page.keyboard.press("Enter")
    await expect(page.locator("#preview img")).to_be_visible()
    await tab_to(page, "button[value=save]")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text("Saved keyboard-sessions")


async def test_the_forms_work_without_javascript(
    browser: Browser, base: str, shop: dict[str, str]
) -> None:
    """Sign in, pause and resume, a preview: plain forms; a pull page refreshes itself."""
    plain = await browser.new_context(base_url=base, java_script_enabled=False)
    try:
        page = await sign_in(plain)
        await page.goto(f"/sources/{shop['id']}")
        await page.get_by_role("button", name="Pause").click()
        await expect(page.get_by_role("status")).to_contain_text("Paused")
        await page.get_by_role("button", name="Resume").click()
        await expect(page.get_by_role("status")).to_contain_text("Resumed")
        await page.goto(f"/connections/new?source={shop['id']}")
        await page.get_by_label("Slack channel").fill("#reports")
        await page.get_by_role("button", name="Preview").click()
        await expect(page.locator("#preview img")).to_be_visible()
        await page.goto(f"/sources/{shop['id']}/pulls/{shop['pull']}")
        await expect(page.locator("#pull-done")).to_be_visible()
    finally:
        await plain.close()


async def test_sign_in_needs_its_form_token_and_keeps_the_api_limits(base: str) -> None:
    """No double-submit token, no sign-in; failures are limited in the API's own words."""
    async with httpx.AsyncClient(base_url=base) as client:
        forged = await client.post("/sign-in", data={"email": ADMIN, "password": PASSWORD})
        assert forged.status_code == 403 and "reload the page" in forged.text
        form = await client.get("/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token and "claritycast_csrf" in form.headers["set-cookie"]
        answers = []
        for _ in range(6):
            wrong = {"csrf_token": token.group(1), "email": "who@example.com", "password": "x"}
            answers.append(await client.post("/sign-in", data=wrong))
        assert [a.status_code for a in answers] == [401] * 5 + [429]
        assert "the email or the password is wrong" in answers[0].text
        assert "too many failed sign-ins" in answers[-1].text
        assert "claritycast_session" not in client.cookies
