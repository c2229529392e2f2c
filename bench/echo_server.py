"""A bare aiohttp server with the web chat's POST route and answer shape: the load baseline.

    python bench/echo_server.py --port 8099

``POST /api/webchat/{conversation_id}/messages`` reads the JSON body and answers
``{"replies": [{"text", "buttons"}], "ticket_id": null}`` echoing the text; ``GET /healthz``
answers ``{"status": "ok"}``. No logging, no storage: what is left is aiohttp, JSON and the
machine, the ceiling bench/load.py compares the product with.
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web


async def post_message(request: web.Request) -> web.Response:
    data = json.loads(await request.read())
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return web.json_response({"error": '"text" must be a string'}, status=400)
    return web.json_response({"replies": [{"text": data["text"], "buttons": []}],
                              "ticket_id": None})


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/api/webchat/{conversation_id}/messages", post_message)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
