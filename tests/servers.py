"""Run an ASGI app for a test: in-process with its lifespan, or under uvicorn in a thread on an ephemeral port."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx


@asynccontextmanager
async def in_process(app: Any, api_key: str = "unused") -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """(AsyncOpenAI client, raw httpx client) on ``app`` through the ASGI transport, lifespan running."""
    import openai

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            client = openai.AsyncOpenAI(base_url="http://roost.test/v1", api_key=api_key, http_client=http,
                                        max_retries=0)
            yield client, http


@contextmanager
def uvicorn_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1, port 0, in a daemon thread; yield its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
