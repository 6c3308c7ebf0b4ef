"""An upstream that speaks HTTP/1.1 and h2c (hypercorn), for the gateway's edge tests.

Every request is recorded; `GET /__seen` (asked directly, never through the gateway) answers the list
of `{"path", "headers"}` seen so far. Any other path answers `200` with the path it was asked for.
"""
import json

SEEN = []


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/__seen":
        body = json.dumps(SEEN).encode()
    else:
        headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        SEEN.append({"path": path, "http_version": scope["http_version"], "headers": headers})
        body = ("private content of " + path if path != "/ping" else "pong").encode()
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
