"""/v1/docs works on a site without internet: the page names no other host, and the script,
style sheet and icon it loads are served by the server itself (issue 9, item 10)."""

from __future__ import annotations

import re

from tests.unit.conftest import Api, RunApi


def test_the_api_browser_loads_nothing_from_another_host(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        page = await api.client.get("/v1/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        # Every URL the page loads is a path on this server.
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
        assert urls, page.text
        assert not [u for u in urls if "//" in u], urls
        assert "'/v1/openapi.json'" in page.text

        for path, media in (
            ("/v1/docs/assets/swagger-ui-bundle.js", "text/javascript"),
            ("/v1/docs/assets/swagger-ui.css", "text/css"),
            ("/v1/docs/assets/favicon.png", "image/png"),
        ):
            assert path in page.text
            asset = await api.client.get(path)
            assert asset.status_code == 200, path
            assert asset.headers["content-type"].startswith(media)
            assert len(asset.content) > 1000
        bundle = await api.client.get("/v1/docs/assets/swagger-ui-bundle.js")
        assert b"SwaggerUIBundle" in bundle.content

        for name in ("../../../etc/passwd", "%2e%2e%2fapp.py", "core.py", "nope.js"):
            missing = await api.client.get(f"/v1/docs/assets/{name}")
            assert missing.status_code == 404, name

    run_api(scenario)
