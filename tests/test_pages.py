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

import functools
import re
import uuid
import zoneinfo
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pangocffi
import pytest
import pytest_asyncio
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from claritycast.clock import SystemClock
from claritycast.localtime import local_yesterday
from claritycast.reports import chart_text
from claritycast.runtime.embedded import Endpoints
from claritycast.standins.clarity import ClaritySimulator
from claritycast.standins.history import history_snapshot, seed_history
from claritycast.standins.slack import SlackStandin
from claritycast.standins.smtp import SmtpCatcher
from claritycast.store.core import Store
from claritycast.web.audit_trail import PAGES_AUDITED, PAGES_READ_ONLY
from models import catalogue
from models.catalogue import Category
from models.clarity import GROUP_NAMES
from models.documents import Call, Snapshot
from tests.conftest import isolated_settings, settings_as_env
from tests.helpers import run_cli
from tests.test_api import web_url
from tests.test_chart_scripts import PAGE_TITLES, drawable, unknown_glyphs
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
        # Every pull here is a person's (connect, refresh, replay): a nightly tick racing a
        # connect would take some of its groups ("not due" on the page), so it never comes.
        "CLARITYCAST_TICK_INTERVAL_S": "3600",
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
async def api(base: str, env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The JSON API with an admin's key: what a test sets up, it sets up over it."""
    code, out, err = await run_cli(env, "api-keys", "create", "fixture", "--role", "admin")
    assert code == 0, err
    headers = {"Authorization": f"Bearer {out.strip().splitlines()[-1]}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        yield client


async def connect_over_api(
    api: httpx.AsyncClient, simulator: ClaritySimulator, name: str, label: str,
    fault: str | None = None, only: str = "Device", times: int | None = 1,
) -> dict[str, Any]:  # fmt: skip
    """A simulated project connected (``fault`` on one group's requests); its pull ended."""
    project = simulator.add_project(name)
    if fault is not None:
        simulator.set_fault(name, fault, only=only, times=times)
    made = await api.post("/api/v1/sources", json={"token": project.token, "label": label})
    assert made.status_code == 202, made.text
    events = await api.get(made.headers["location"] + "/events")
    assert events.status_code == 200
    answer: dict[str, Any] = made.json()
    return answer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(api: httpx.AsyncClient, db: Store, standins: tuple[Any, ...]) -> dict[str, str]:
    """A source connected over the API (its label hostile), 20 days of history, a delivery sent."""
    answer = await connect_over_api(api, standins[0], "shop", f"Shop {HOSTILE}")
    mail = {"source": answer["source"]["id"], "metric": "sessions", "name": "fixture-mail",
            "emails": "fixture@example.com"}  # fmt: skip
    assert (await api.post("/api/v1/connections", json=mail)).status_code == 201
    sent = await api.post("/api/v1/connections/fixture-mail/send", json={"wait_s": 60})
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
    await expect(page.locator("#top_sources")).to_be_visible()  # the source's page, loaded
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


async def pages_of(context: BrowserContext, shop: dict[str, str]) -> list[str]:
    """Every page an admin can open, with a delivery to show."""
    page = await context.new_page()
    await page.goto("/deliveries")
    keys = await page.locator("tbody th a").evaluate_all("links => links.map(a => a.pathname)")
    await page.close()
    assert keys, "the fixture sent one"
    source = f"/sources/{shop['id']}"
    return [
        "/sources", "/sources/new", f"{source}/pulls/{shop['pull']}", source,
        f"{source}?days=7", f"{source}?days=90", f"{source}/token", f"{source}/remove",
        "/connections", "/connections/new", "/connections/fixture-mail/remove", "/deliveries",
        "/deliveries?connection=fixture-mail&state=sent", keys[0], "/operations",
        "/operations?replayed=on", "/operations/quota", "/settings/organisation",
        "/settings/access", "/sources/no-such-source",
    ]  # fmt: skip


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
    for path in await pages_of(context, shop):
        answer = await page.goto(path)
        assert answer is not None and answer.status == (404 if "no-such" in path else 200), path
        await check_page(axe, page, path)

    await page.set_viewport_size({"width": 1440, "height": 900})
    await page.goto(f"/sources/{shop['id']}")  # a phone: charts keep their size and scroll
    chart = page.locator("#sessions .chart-scroll")
    await expect(chart).not_to_have_attribute("tabindex", "0")
    await page.set_viewport_size({"width": 375, "height": 900})
    await expect(chart).to_have_attribute("tabindex", "0")
    assert (await chart.locator("svg").bounding_box() or {}).get("width", 0) >= 560


async def check_page(axe: Axe, page: Page, path: str) -> None:
    """axe-core at a desktop's width and a phone's; labels, form tokens; no sideways scroll."""
    for width in WIDTHS[::-1]:
        await page.set_viewport_size({"width": width, "height": 900})
        results = await axe.run(page)
        grave = [
            f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert grave == [], (path, width, grave)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, (path, width, overflow)
    unlabelled = await page.locator("input:not([type=hidden]), select, textarea").evaluate_all(
        "fields => fields.filter(f => !f.labels.length && !f.getAttribute('aria-label'))"
        ".map(f => f.name)"
    )
    assert unlabelled == [], (path, unlabelled)
    tokens = await page.locator("form[method=post]").evaluate_all(
        "forms => forms.map(f => f.elements.namedItem('csrf_token')?.value || '')"
    )
    assert all(tokens), (path, "a form that changes something carries the form token")


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


async def test_an_organisations_timezone_is_found_reviewed_and_only_then_saved(
    context: BrowserContext, db: Store
) -> None:
    """Every IANA name to search; a wrong one by its field; tonight's pull said before saving."""
    page = await sign_in(context)
    await page.goto("/settings/organisation")
    names = await page.locator("datalist#timezones option").evaluate_all(
        "options => options.map(o => o.value)"
    )
    assert set(names) == zoneinfo.available_timezones()
    await page.locator("#new-name").fill("Tokyo office")
    await page.get_by_role("button", name="Add", exact=True).click()
    await expect(page.get_by_role("status")).to_contain_text("Added Tokyo office, in UTC")
    org = next(o for o in await db.organisations() if o.name == "Tokyo office")
    timezone = page.locator(f"#tz-{org.org_id}")
    await expect(timezone).to_have_attribute("list", "timezones")
    card = page.locator("section.card", has=timezone)

    await timezone.fill("Mars/Olympus")
    await card.get_by_role("button", name="Review the change").click()
    await expect(page.locator(f"#{org.org_id}-timezone-error")).to_contain_text("Mars/Olympus")
    await expect(page.locator(f"#tz-{org.org_id}")).to_have_attribute("aria-invalid", "true")

    await page.locator(f"#tz-{org.org_id}").fill("Asia/Tokyo")
    await page.locator(f"#tz-{org.org_id}").press("Enter")  # Enter reviews, never saves
    review = page.locator(".review")
    await expect(review).to_contain_text("Timezone: UTC → Asia/Tokyo.")
    effects = await review.locator("li").all_inner_texts()
    assert effects and any("nightly pull" in line for line in effects), effects
    assert (await db.get_organisation(org.org_id)).timezone == "UTC", "nothing saved yet"
    await review.get_by_role("button", name="Save the change").click()
    await expect(page.get_by_role("status")).to_contain_text("Saved Tokyo office, in Asia/Tokyo.")
    assert (await db.get_organisation(org.org_id)).timezone == "Asia/Tokyo"
    trail = [(e.action, e.outcome) for e in
             await db.audit_events(object_name=f"organisation:{org.org_id}")]  # fmt: skip
    assert trail == [("organisation.add", "ok"), ("organisation.change", "ok")], trail


async def test_an_admin_adds_a_person_and_makes_and_revokes_an_api_key(
    context: BrowserContext, base: str, db: Store
) -> None:
    """A short password is refused by its field; a key is shown once, works, and stops at once."""
    page = await sign_in(context)
    await page.goto("/settings/access")
    await page.locator("#user-email").fill("nina@example.com")
    await page.locator("#user-password").fill("short")
    await page.get_by_role("button", name="Add the person").click()
    await expect(page.locator("#user-password-error")).to_be_visible()
    await expect(page.locator("#user-password")).to_have_value("")  # never echoed back
    await expect(page.locator("#user-email")).to_have_value("nina@example.com")
    await page.locator("#user-password").fill(PASSWORD)
    await page.get_by_role("button", name="Add the person").click()
    await expect(page.get_by_role("status")).to_contain_text("Added nina@example.com (viewer)")
    await expect(page.get_by_role("rowheader", name="nina@example.com")).to_be_visible()

    await page.locator("#key-name").fill("page-key")
    await page.get_by_role("button", name="Make the key").click()
    key = await page.get_by_label("API key", exact=True).input_value()
    async with httpx.AsyncClient(base_url=base) as client:
        bearer = {"Authorization": f"Bearer {key}"}
        assert (await client.get("/api/v1/sources", headers=bearer)).status_code == 200
        await page.goto("/settings/access")
        assert key not in await page.content(), "shown once"
        await page.get_by_role("button", name="Revoke page-key").click()
        await expect(page.get_by_role("status")).to_contain_text("Revoked page-key")
        assert (await client.get("/api/v1/sources", headers=bearer)).status_code == 401

    await page.get_by_role("button", name="Remove nina@example.com").click()
    await expect(page.get_by_role("status")).to_contain_text("Removed nina@example.com")
    assert await db.get_user("nina@example.com") is None
    trail = [(e.action, e.outcome[:7], e.actor_name)
             for e in await db.audit_events(object_name="user:nina@example.com")]  # fmt: skip
    assert trail == [("user.add", "refused", ADMIN), ("user.add", "ok", ADMIN),
                     ("user.remove", "ok", ADMIN)], trail  # fmt: skip
    assert await page.get_by_role("button", name=f"Remove {ADMIN}").count() == 0


async def test_connections_and_a_source_are_paused_resumed_and_removed_as_said(
    context: BrowserContext, api: httpx.AsyncClient, standins: tuple[Any, ...], db: Store
) -> None:
    """Pause, resume, remove a connection; a source's removal says what goes, then does that."""
    answer = await connect_over_api(api, standins[0], "doomed", "Doomed shop")
    source = answer["source"]["id"]
    for name, to in (("doomed-mail", {"emails": "d@example.com"}),
                     ("doomed-slack", {"slack_channel": "#reports"})):  # fmt: skip
        made = await api.post(
            "/api/v1/connections", json={"source": source, "metric": "sessions", "name": name} | to
        )
        assert made.status_code == 201, made.text
    page = await sign_in(context)
    await page.goto("/connections")
    row = page.locator("tbody tr", has=page.get_by_role("rowheader", name="doomed-mail"))
    await row.get_by_role("button", name="Pause doomed-mail").click()
    await expect(page.get_by_role("status")).to_contain_text("Paused doomed-mail")
    await expect(row.locator(".badge")).to_have_text("paused")
    assert await row.get_by_role("button", name="Send doomed-mail now").count() == 0
    await row.get_by_role("button", name="Resume doomed-mail").click()
    await expect(page.get_by_role("status")).to_contain_text("Resumed doomed-mail")
    await expect(row.locator(".badge")).to_have_text("active")
    await row.get_by_role("link", name="Remove doomed-mail").click()
    await expect(page.get_by_role("heading", name="Remove doomed-mail?")).to_be_visible()
    await page.get_by_role("button", name="Remove doomed-mail").click()
    await expect(page.get_by_role("status")).to_contain_text("Removed doomed-mail")
    assert await page.get_by_role("rowheader", name="doomed-mail").count() == 0

    snapshots = await db.count_snapshots(source)
    assert snapshots == len(GROUP_NAMES)
    await page.goto(f"/sources/{source}")
    await page.get_by_role("link", name="Remove…").click()
    said = page.locator("main ul")
    await expect(said).to_contain_text("removes its 1 connection (doomed-slack)")
    await expect(said).to_contain_text(f"keeps its {snapshots} stored snapshots")
    await page.get_by_label(f"Also delete its {snapshots} stored snapshots").check()
    await page.get_by_role("button", name="Remove Doomed shop").click()
    await expect(page.get_by_role("status")).to_contain_text(
        "Removed Doomed shop, its 1 connection; its snapshots were deleted."
    )
    assert await page.get_by_role("link", name="Doomed shop").count() == 0
    assert await db.count_snapshots(source) == 0 and await db.get_project(source) is None
    assert [c.name for c in await db.connections(project_id=source)] == []


async def test_an_admin_replays_a_dead_letter_and_reads_the_quota_and_the_workers(
    context: BrowserContext, api: httpx.AsyncClient, standins: tuple[Any, ...]
) -> None:
    """A pull's broken answer is a dead letter with its reason; replayed from its row, gone."""
    answer = await connect_over_api(
        api, standins[0], "broken", "Broken shop", fault="wrong-shape-200"
    )
    source = answer["source"]["id"]
    page = await sign_in(context)
    await page.goto(f"/operations?source={source}")
    rows = page.locator("tbody tr", has=page.locator("td[data-label=Why]"))
    await expect(rows).to_have_count(1)
    await expect(rows.locator("td[data-label=Stage]")).to_have_text("fetch")
    await expect(rows.locator("td[data-label=What]")).to_contain_text(source)
    await expect(rows.locator("td[data-label=Why]")).to_contain_text("dimension1=Device")
    assert int(await rows.locator("td[data-label=Attempts]").inner_text()) >= 1
    await rows.get_by_role("button", name=re.compile("^Replay fetch")).click()
    await expect(page.get_by_role("status")).to_contain_text("Replayed 1: fetch")
    await page.goto(f"/operations?source={source}")
    await expect(page.get_by_text("No dead letter matches")).to_be_visible()
    await page.goto(f"/operations?source={source}&replayed=on")
    await expect(rows.locator("td[data-label=Replay]")).not_to_have_text("")
    assert await rows.get_by_role("button").count() == 0, "a replayed letter is not replayed twice"

    workers = page.locator("table", has=page.get_by_role("columnheader", name="Stages"))
    assert await workers.locator("tbody tr").count() >= 1
    await expect(page.locator("#ready-title .badge")).to_have_text("ready")
    for link in ("/metrics", "/readyz", "/healthz"):
        await expect(page.get_by_role("link", name=link, exact=True)).to_have_attribute(
            "href", link
        )
    for link in ("/readyz", "/healthz"):
        assert (await page.request.get(link)).status == 200, link
    await page.get_by_role("link", name="Quota", exact=True).click()
    row = page.locator("tbody tr", has=page.get_by_role("link", name="Broken shop"))
    await expect(row.get_by_role("img")).to_have_attribute(  # yesterday is whole: none kept
        "aria-label", "8 of 10 requests used in 24 hours, 0 kept for tonight, 2 refreshes left"
    )


async def test_every_page_form_needs_the_sessions_form_token(
    context: BrowserContext, shop: dict[str, str], db: Store
) -> None:
    """Each page route that posts, with an admin's cookie and no token or a wrong one: 403."""
    page = await sign_in(context)
    values = {"source_id": shop["id"], "name": "fixture-mail", "org_id": "default",
              "email": VIEWER, "key_id": "none"}  # fmt: skip
    routes = sorted(path for _, path in set(PAGES_AUDITED) | PAGES_READ_ONLY)
    assert len(routes) > 15
    for path in routes:
        if path == "/sign-in":  # before any session: its own double-submit token (below)
            continue
        for data in ({"name": "x", "timezone": "UTC"}, {"csrf_token": "forged", "id": "x"}):
            answer = await page.request.post(path.format(**values), form=data, max_redirects=0)
            assert answer.status == 403, (path, answer.status)
            assert "reload the page" in await answer.text(), path
    assert await db.get_user(VIEWER) is not None
    assert [c.status for c in await db.connections(project_id=shop["id"])
            if c.name == "fixture-mail"] == ["active"]  # fmt: skip
    await page.goto(f"/sources/{shop['id']}")
    await expect(page.locator(".badge").first).to_have_text("active")  # still signed in


async def test_page_titles_in_every_script_are_drawn_from_fonts_that_have_them(
    context: BrowserContext, api: httpx.AsyncClient, standins: tuple[Any, ...], db: Store
) -> None:
    """CJK, Arabic, Hebrew, emoji… in a label and in page URLs: every letter from a font with it.

    Chromium says which fonts it drew each element's text with (DevTools'
    ``CSS.getPlatformFontsForNode``); a character none of them has would be a box.
    """
    label = "Scripts " + PAGE_TITLES["japanese"] + " · " + PAGE_TITLES["emoji"]
    answer = await connect_over_api(  # its pages group never stored but for the titled day
        api, standins[0], "scripts", label, fault="wrong-shape-200", only="URL", times=None
    )
    source = answer["source"]["id"]
    day = local_yesterday("UTC", datetime.now(UTC))
    assert await db.save_snapshot(titled_snapshot(source, day))
    page = await sign_in(context)
    await page.goto(f"/sources/{source}?days=7")
    for summary in await page.locator("#top_pages_by_sessions details summary").all():
        await summary.click()
    marked = await page.evaluate(MARK_SCRIPT_TEXTS, "h1, #top_pages_by_sessions")  # drawn ones
    texts = [text for text, _ in marked]
    for script, title in PAGE_TITLES.items():
        assert title in "".join(texts), (script, "not on the page")
    in_chart = "".join(text for text, in_svg in marked if in_svg)
    for script in ("japanese", "arabic", "hebrew", "emoji"):  # the chart's labels, maybe cut
        assert set(drawable(PAGE_TITLES[script])) & set(in_chart), (script, in_chart)
    cdp = await context.new_cdp_session(page)
    await cdp.send("DOM.enable")
    await cdp.send("CSS.enable")
    root = (await cdp.send("DOM.getDocument", {"depth": -1}))["root"]["nodeId"]
    found = await cdp.send(
        "DOM.querySelectorAll", {"nodeId": root, "selector": "[data-script-check]"}
    )
    assert len(found["nodeIds"]) == len(texts)
    for node, text in zip(found["nodeIds"], texts, strict=True):
        fonts = await cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})
        families = [font["familyName"] for font in fonts["fonts"]]
        lacking = [c for c in drawable(text) if not any(family_has(f, c) for f in families)]
        assert lacking == [], (text, families, [f"U+{ord(c):04X}" for c in lacking])


MARK_SCRIPT_TEXTS = """selector => {
  const marked = [];
  for (const scope of document.querySelectorAll(selector)) {
    for (const element of [scope, ...scope.querySelectorAll("*")]) {
      if (element.closest("title, desc") || !element.getClientRects().length) continue;
      const own = [...element.childNodes].filter(n => n.nodeType === Node.TEXT_NODE)
        .map(n => n.textContent).join("");
      if (/[^\\x00-\\x7f]/.test(own)) {
        element.setAttribute("data-script-check", "");
        marked.push([own, element.closest("svg") !== null]);
      }
    }
  }
  return marked;
}"""


def titled_snapshot(source: str, day: date) -> Snapshot:
    """A day of the pages group whose URLs end in a page title of each script."""
    snapshot = history_snapshot(source, day, "url", "UTC")
    titles = list(PAGE_TITLES.values())
    renamed: dict[str, str] = {}
    for block in snapshot.blocks:
        for row in block["rows"]:
            url = row["dims"].get("URL")
            if url:
                title = titles[len(renamed) % len(titles)] if url not in renamed else ""
                renamed.setdefault(url, f"https://shop.example.com/{title}")
                row["dims"]["URL"] = renamed[url]
    return replace(snapshot, blocks=snapshot.blocks)


@functools.cache
def family_has(family: str, char: str) -> bool:
    """Whether the font ``family`` (fontconfig's, as Chromium's) has a glyph for ``char``."""
    laid = chart_text.layout(chart_text._measuring_context(), char, 13, families=family)
    no_fallback = pangocffi.Attribute.from_fallback(False, end_index=chart_text.WHOLE_TEXT)
    laid.attributes = chart_text.attribute_list(no_fallback)
    return unknown_glyphs(laid) == 0


async def test_the_sources_list_and_a_sources_charts_say_what_is_collected(
    context: BrowserContext, api: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    """A row's days, quota bar and sparkline; four categories of charts at 7, 30 and 90 days."""
    source = (await api.get(f"/api/v1/sources/{shop['id']}")).json()
    page = await sign_in(context)
    row = page.locator("tbody tr", has=page.get_by_role("link", name=shop["label"]))
    await expect(row.locator("td[data-label=History]")).to_have_text(
        f"{source['days_collected']} of 30 days collected"
    )
    await expect(row.locator("td[data-label='Today\\'s quota'] [role=img]")).to_have_attribute(
        "aria-label", re.compile(rf"^{source['quota']['used']} of 10 requests used in 24 hours")
    )
    spark = row.locator("td[data-label='Sessions, 30 days'] svg")
    await expect(spark).to_have_attribute(
        "aria-label", re.compile(rf"^Sessions, last 30 days: {source['days_collected']} of 30")
    )
    assert await spark.locator("polyline").count() >= 2, "a day not collected breaks the line"

    await row.get_by_role("link", name=shop["label"]).click()
    await expect(page.get_by_role("heading", name="Breakdowns")).to_be_visible()
    headings = await page.get_by_role("heading", level=2).all_text_contents()
    assert [h for h in headings if h in {c.value for c in Category}] == [c.value for c in Category]
    charts = page.locator("figure.chart svg[role=img]")
    await expect(charts).to_have_count(len(catalogue.METRICS))
    assert await charts.first.locator("title").count() > 0, "hover titles"
    for days in (7, 90, 30):
        await page.get_by_role("link", name=f"{days} days", exact=True).click()
        await expect(page.get_by_role("link", name=f"{days} days")).to_have_attribute(
            "aria-current", "page"
        )
        note = page.get_by_role("note")
        await expect(note).to_contain_text(re.compile(rf"Filling in day by day: \d+ of {days} "))
        collected = int(re.findall(r"(\d+) of", await note.inner_text())[0])
        assert 0 < collected < days


async def test_signing_out_ends_the_session_on_the_server(context: BrowserContext) -> None:
    """After Sign out, the old cookie opens nothing: it goes back to the sign-in page."""
    page = await sign_in(context)
    cookies = await context.cookies()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_contain_text("Signed out.")
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    await context.add_cookies(cookies)  # the cookie a thief kept
    await page.goto("/sources")
    await expect(page).to_have_url(re.compile(r"/sign-in\?next="))


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
