"""The ceiling: a no-op ASGI endpoint under the same uvicorn (uvloop + httptools) as ``roost serve``.

It reads the whole request body and answers a small orjson body, nothing else: what any Python server
on this stack can do at best per core. Usage: ``python noop.py PORT``.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import uvicorn

BODY = orjson.dumps({"model_name": "noop", "outputs": [{"name": "predict", "datatype": "INT64", "shape": [1],
                                                         "data": [1]}]})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
                lifespan="off")
