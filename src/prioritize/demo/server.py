"""``python -m prioritize.demo.server POLICY_TOML``: serve the demo's service with uvicorn.

The demo runs its server in a child process so that the server and the
load generator each have an interpreter (and a GIL) of their own on a
two-core machine. The protocol with the parent is two pipes:

* once the socket listens, the child prints one line, ``listening PORT``,
  on stdout (port 0 was asked for, so the kernel picks a free one);
* the child serves until its stdin reaches end of file, then shuts down
  gracefully. Closing stdin is how the parent stops it, and a parent that
  dies closes it too, so the server never outlives the demo.

Anything the child writes to stderr is the parent's error message if it
fails to start.
"""

from __future__ import annotations

import socket
import sys
import threading

import uvicorn

from ..errors import ConfigError
from .service import build_app

__all__ = ["main", "serve"]

#: Seconds an idle keep-alive connection is kept open: longer than any run, so the
#: load generator's pooled connections are not closed under it between requests.
KEEP_ALIVE = 300


def serve(policy_toml: str, host: str = "127.0.0.1") -> None:
    """Serve until stdin closes; announce the port on stdout first."""
    app = build_app(policy_toml)  # a bad policy fails here, before anything listens
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets whose proto is
    # IPPROTO_TCP, and without it every response (head and body written apart)
    # waits out the client's delayed ACK, 40 ms on Linux.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(2048)  # connections made before uvicorn accepts wait in this backlog
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=KEEP_ALIVE,
    )
    server = uvicorn.Server(config)

    def stop_when_stdin_closes() -> None:
        sys.stdin.buffer.read()
        server.should_exit = True

    threading.Thread(target=stop_when_stdin_closes, name="stdin-watch", daemon=True).start()
    print(f"listening {sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m prioritize.demo.server POLICY_TOML", file=sys.stderr)
        return 2
    try:
        serve(args[0])
    except (ConfigError, OSError) as error:  # the parent shows this line as the reason
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
