"""Screenshots of every page, from the real app: `claritycast up`, the stand-ins, Chromium.

`claritycast up` runs on a scratch data folder with the Clarity simulator,
the Slack stand-in and an SMTP catcher (no nightly tick: every pull shown is
a person's, so none races a connect for its groups); a person's steps are taken in the
pages themselves (sign in, add an organisation, Test & Connect, a connection
previewed and saved, send now, a replay). Older days are stored directly, as
if pulled night by night, a few left out so the charts show their gaps.
Each page is saved at 1440 and 375 CSS px wide into ``docs/screenshots/``.

    .venv/bin/python -m bench.screenshots [folder]
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from bench.embedded import Up
from claritycast.clock import SystemClock
from claritycast.localtime import local_yesterday
from claritycast.standins.clarity import ClaritySimulator
from claritycast.standins.history import seed_history
from claritycast.standins.slack import SlackStandin
from claritycast.standins.smtp import SmtpCatcher
from claritycast.store.core import Store
from models.clarity import GROUP_NAMES

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic"]
WIDTHS = {"desktop": 1440, "phone": 375}
PASSWORD = "screenshots-password-1"  # noqa: S105 - a scratch installation's
ADMIN = "ana@example.com"


def cli(env: dict[str, str], *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "claritycast", *args], env=env, input=stdin, text=True,
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout


async def shoot(
    browser: Browser, base: str, cookies: list, path: str, name: str, out: Path
) -> None:
    """One page at each width, the whole page long."""
    for kind, width in WIDTHS.items():
        context = await browser.new_context(
            viewport={"width": width, "height": 900}, base_url=base, device_scale_factor=1
        )
        await context.add_cookies(cookies)
        page = await context.new_page()
        await page.goto(path)
        await page.screenshot(path=str(out / f"{name}-{kind}.png"), full_page=True)
        await context.close()


async def run(out: Path) -> None:
    clock = SystemClock()
    slack = SlackStandin()
    slack.add_channel("web-metrics")
    async with ClaritySimulator(clock) as simulator, slack, SmtpCatcher() as smtp:
        shop = simulator.add_project("shop")
        blog = simulator.add_project("blog", sessions_per_day=300)
        simulator.set_fault("blog", "wrong-shape-200", only="Device", times=1)
        up = Up(
            partitions="2", web_port="0", web_secret="screenshots-secret",  # noqa: S106
            clarity_api_url=simulator.export_url, slack_token=slack.token,
            slack_api_url=slack.base_url, smtp_host="127.0.0.1", smtp_port=str(smtp.port),
            smtp_security="none", tick_interval_s="3600", delivery_grace_s="0",
        )  # fmt: skip
        try:
            up.wait_ready(120)
            state = up.state()
            env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
            env["CLARITYCAST_DATA_DIR"] = str(up.data_dir)
            cli(env, "users", "add", ADMIN, "--role", "admin", "--password-stdin",
                stdin=PASSWORD + "\n")  # fmt: skip
            cli(env, "users", "add", "viktor@example.com", "--role", "viewer", "--password-stdin",
                stdin=PASSWORD + "\n")  # fmt: skip
            cli(env, "api-keys", "create", "prometheus", "--role", "viewer")
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS
                )
                await take(browser, str(state["web_url"]), str(state["mongodb_url"]), shop.token,
                           blog.token, out)  # fmt: skip
                await browser.close()
            print(f"{len(smtp.messages)} email(s), {len(slack.messages)} Slack message(s) sent")
        except Exception:
            print("".join(up.lines[-60:]), file=sys.stderr)
            raise
        finally:
            up.kill()


async def _form(page: Page, fields: dict[str, str]) -> None:
    for label, value in fields.items():
        await page.get_by_label(label, exact=True).fill(value)


async def take(
    browser: Browser, base: str, mongodb_url: str, shop_token: str, blog_token: str, out: Path
) -> None:
    context = await browser.new_context(viewport={"width": 1440, "height": 900}, base_url=base)
    page = await context.new_page()
    try:
        await steps(browser, base, mongodb_url, shop_token, blog_token, out, context, page)
    except Exception:
        (out / "failed.html").write_text(await page.content())
        await page.screenshot(path=str(out / "failed.png"), full_page=True)
        raise
    finally:
        await context.close()


async def steps(
    browser: Browser, base: str, mongodb_url: str, shop_token: str, blog_token: str, out: Path,
    context: BrowserContext, page: Page,
) -> None:  # fmt: skip
    await page.goto("/sources")
    await shoot(browser, base, [], "/sign-in", "sign-in", out)
    await _form(page, {"Email": ADMIN, "Password": PASSWORD})
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/sources")

    await page.goto("/settings/organisation")
    await _form(page, {"Name": "Acme", "Timezone": "Europe/Paris"})
    await page.get_by_role("button", name="Add").click()
    await page.get_by_role("status").wait_for()

    await page.goto("/sources/new")
    await _form(page, {"Data Export token": "not-a-token", "Label": "Acme shop"})
    await page.get_by_role("button", name="Test & Connect").click()
    await page.locator(".field-error").wait_for()
    cookies = await context.cookies()
    await page.screenshot(path=str(out / "source-new-desktop.png"), full_page=True)
    await page.set_viewport_size({"width": WIDTHS["phone"], "height": 900})
    await page.screenshot(path=str(out / "source-new-phone.png"), full_page=True)
    await page.set_viewport_size({"width": WIDTHS["desktop"], "height": 900})
    for label, token in (("Acme ブログ · مدونة · בלוג 📝", blog_token), ("Acme shop", shop_token)):
        await page.goto("/sources/new")
        await _form(page, {"Data Export token": token, "Label": label})
        await page.get_by_label("Organisation").select_option(label="Acme (Europe/Paris)")
        await page.get_by_role("button", name="Test & Connect").click()
        await page.locator("#pull-done").wait_for(state="visible", timeout=60_000)
    pull_path = page.url.removeprefix(base)
    source_path = pull_path.split("/pulls/")[0]
    project_id = source_path.rsplit("/", 1)[1]

    store = Store.connect(mongodb_url, "claritycast")
    yesterday = local_yesterday("Europe/Paris", datetime.now(UTC))
    skip = [(yesterday - timedelta(days=back), g) for back in (6, 13, 14) for g in GROUP_NAMES]
    await seed_history(store, project_id, "Europe/Paris", yesterday - timedelta(days=40),
                       yesterday - timedelta(days=1), GROUP_NAMES, skip)  # fmt: skip
    await store.close()

    await page.goto(source_path)
    await page.screenshot(path=str(out / "source-top-desktop.png"))
    await page.get_by_role("button", name="Refresh now").click()
    await page.get_by_role("alert").wait_for()
    await page.screenshot(path=str(out / "refresh-refused-desktop.png"))

    await page.goto(f"/connections/new?source={project_id}")
    await page.get_by_label("Slack channel", exact=True).fill("#web-metrics")
    await page.get_by_role("button", name="Preview").click()
    await page.locator("#preview img").wait_for()
    await page.screenshot(path=str(out / "connection-preview-desktop.png"), full_page=True)
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_url("**/connections")
    await page.goto(f"/connections/new?source={project_id}")
    await page.get_by_label("Metric").select_option("top_pages_by_sessions")
    await page.get_by_label("Email", exact=True).check()
    await page.get_by_label("Email addresses").fill("ops@acme.example, cto@acme.example")
    await page.get_by_label("Schedule").select_option("weekly:monday")
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_url("**/connections")
    for name in ("acme-shop-sessions-slack", "acme-shop-top-pages-by-sessions-email"):
        await page.goto("/connections")
        await page.get_by_role("button", name=f"Send {name} now").click()
        await page.locator('#delivery[data-final="true"]').wait_for(timeout=60_000)
    delivery_path = page.url.removeprefix(base)

    await shoot(browser, base, cookies, "/operations", "operations", out)
    await page.goto("/operations")
    await page.get_by_role("button", name="Replay every waiting letter that matches").click()
    await page.get_by_role("status").wait_for()

    await page.goto("/settings/organisation")
    await page.locator('input[name="timezone"]').first.fill("America/New_York")
    await page.get_by_role("button", name="Review the change").first.click()
    await page.locator(".review").wait_for()
    await page.screenshot(path=str(out / "settings-timezone-review-desktop.png"), full_page=True)

    for path, name in (
        ("/sources", "sources"),
        (pull_path, "pull"),
        (source_path, "source"),
        (f"{source_path}?days=90", "source-90-days"),
        ("/connections", "connections"),
        ("/deliveries", "deliveries"),
        (delivery_path, "delivery"),
        ("/operations", "operations-replayed"),
        ("/operations/quota", "quota"),
        ("/settings/organisation", "settings-organisation"),
        ("/settings/access", "settings-access"),
    ):
        await shoot(browser, base, cookies, path, name, out)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots"))
