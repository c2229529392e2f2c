"""The aiohttp application: the one module that wires every part together."""

from __future__ import annotations

from aiohttp import web

from bot.settings import Settings

SETTINGS = web.AppKey("settings", Settings)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[SETTINGS] = settings
    app.router.add_get("/healthz", healthz)
    return app


def run(settings: Settings, *, host: str, port: int) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    web.run_app(create_app(settings), host=host, port=port)
