"""`/docs` and `/redoc` work without internet: their pages reference only the back office's own URLs, which
serve the bundled Swagger UI and ReDoc; and in Chromium, with every request elsewhere aborted, Swagger UI
renders the API's operations. No database or Temporal: the pages and /openapi.json need neither."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from simserver import serve

from api.app import create_app
from api.docs import ASSETS_URL
from backoffice.settings import Settings

# Debian's Chromium (.ci/run installs it); Playwright's own browser download cannot work here.
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
SHOTS = Path(__file__).parents[1] / "artifacts" / "screenshots"  # git-ignored, kept as the run's artifacts


@pytest.fixture
async def docs_app() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url="postgresql://unused/none", temporal_address="unused"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        yield http


def _referenced(html: str) -> list[str]:
    """Every URL the page loads: src/href attributes and the string URLs its inline script passes."""
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html) + re.findall(
        r"""(?:url|oauth2RedirectUrl|spec-url)\s*[:=]\s*["']([^"']+)["']""", html
    )


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png"}),
    ],
)
async def test_docs_pages_load_only_the_back_offices_own_assets(
    docs_app: httpx.AsyncClient, page: str, assets: set[str]
) -> None:
    response = await docs_app.get(page)
    assert response.status_code == 200
    # The browser itself refuses anything from elsewhere (ReDoc's bundle names a logo on cdn.redoc.ly).
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "http" not in policy
    html = response.text
    urls = _referenced(html)
    assert urls, html
    # Relative to the back office: no scheme, no host, no protocol-relative //cdn...
    foreign = [u for u in urls if urlsplit(u).scheme or urlsplit(u).netloc]
    assert foreign == [], foreign
    assert "cdn.jsdelivr" not in html
    assert "fonts.googleapis" not in html
    loaded = {u.removeprefix(f"{ASSETS_URL}/") for u in urls if u.startswith(ASSETS_URL)}
    assert loaded == assets
    assert "/openapi.json" in urls
    assert page != "/docs" or '"validatorUrl": null' in html  # no badge from validator.swagger.io
    for name in sorted(assets):
        asset = await docs_app.get(f"{ASSETS_URL}/{name}")
        assert asset.status_code == 200, name
        assert len(asset.content) > 1000, name  # the real build, not an empty file
    script = await docs_app.get(f"{ASSETS_URL}/swagger-ui-bundle.js") if page == "/docs" else None
    if script is not None:
        assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert (await docs_app.get(f"{ASSETS_URL}/nothing-here.js")).status_code == 404


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}: .ci/run installs it")
@pytest.mark.parametrize(
    ("path", "operation", "script"),
    [
        # Swagger UI draws one block per operation once it has fetched and parsed /openapi.json.
        ("/docs", ".opblock", "swagger-ui-bundle.js"),
        # ReDoc one section per operation in its middle panel.
        ("/redoc", "[data-section-id^='operation/']", "redoc.standalone.js"),
    ],
)
async def test_the_docs_render_the_operations_with_the_network_cut_off(
    path: str, operation: str, script: str
) -> None:
    from playwright.async_api import Route, async_playwright

    app = create_app(Settings(database_url="postgresql://unused/none", temporal_address="unused"))
    async with serve(app) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            # As the machine notes say: no sandbox as root, no background calls home.
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            page = await browser.new_page()
            aborted: list[str] = []

            async def only_the_back_office(route: Route) -> None:
                if route.request.url.startswith(f"{base}/"):
                    await route.continue_()
                else:
                    aborted.append(route.request.url)
                    await route.abort()

            await page.route("**/*", only_the_back_office)
            served: list[str] = []
            page.on("requestfinished", lambda request: served.append(request.url))
            await page.goto(f"{base}{path}")
            operations = page.locator(operation)
            await operations.first.wait_for(timeout=30_000)
            assert await operations.count() > 20
            assert await page.get_by_text("/v1/orders/{order_id}/cancel").count() >= 1
            assert aborted == []  # nothing on the page even tried to leave the back office
            assert f"{base}{ASSETS_URL}/{script}" in served
            assert f"{base}/openapi.json" in served
            SHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=SHOTS / f"{path.strip('/')}-offline.png")
        finally:
            await browser.close()
