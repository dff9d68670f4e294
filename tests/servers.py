"""Real HTTP servers for tests: an ASGI app served by uvicorn on a free loopback port.

`serve_asgi` runs the server on its own event loop in a background thread,
so tests may drive it with blocking ``httpx.Client`` calls or from their own
event loop with ``httpx.AsyncClient``. The port is chosen by the kernel
(port 0) and read back from the listening socket once uvicorn has started,
so concurrent test runs never collide. Startup and shutdown are waited for
on uvicorn's own ``started`` flag and the thread's exit, not with sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

STARTUP_TIMEOUT = 30.0


@contextmanager
def serve_asgi(app: Any, **config: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1; yields its base URL, e.g. ``http://127.0.0.1:41234``."""
    settings: dict[str, Any] = {"log_level": "warning", "lifespan": "auto", **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, **settings))
    started = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)
        finally:
            started.set()

    # uvicorn flips ``started`` from inside its loop; a callback-free way to be told
    # is to wrap its startup, which returns once every socket listens.
    original_startup = server.startup

    async def startup(*args: Any, **kwargs: Any) -> None:
        await original_startup(*args, **kwargs)
        started.set()

    server.startup = startup  # type: ignore[method-assign]
    thread = threading.Thread(target=run, name="uvicorn-test-server", daemon=True)
    thread.start()
    if not started.wait(STARTUP_TIMEOUT):
        raise RuntimeError(f"uvicorn did not start within {STARTUP_TIMEOUT} s")
    if errors or not server.started:
        raise RuntimeError(f"uvicorn failed to start: {errors[0] if errors else 'no socket'}")
    (sock,) = [s for srv in server.servers for s in srv.sockets][:1]
    host, port = sock.getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError("uvicorn did not shut down")
