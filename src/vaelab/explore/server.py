"""Listening: the socket the server takes (bound before the slow start, so a taken port fails
at once), its URL, and uvicorn serving an app in a background thread (tests, benchmarks,
screenshots)."""

import ipaddress
import signal
import socket
import threading
import time

import uvicorn

from vaelab.interrupts import Interrupted


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches: 127.0.0.0/8, ::1, localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on (host, port) (port 0: a free one), with a one-line error naming
    the option when that fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on sockets that say they
    # are TCP, and without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({err.strerror}): choose another port=, "
                      "or port=0 for any free one") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def server_for(app) -> uvicorn.Server:
    """uvicorn quiet but for warnings (the page's requests are not logged)."""
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))


def serve(app, sock: socket.socket) -> None:
    """Serve `app` on a bound socket until Ctrl+C (a normal end, status 0) or SIGTERM (143)."""
    try:
        server_for(app).run(sockets=[sock])
    except (KeyboardInterrupt, Interrupted) as stop:
        # uvicorn shuts down on the signal, then re-raises it; Ctrl+C is how a user ends the
        # explorer, so it is not an interrupted command, but a scheduler's SIGTERM still is
        if isinstance(stop, Interrupted) and stop.signum != signal.SIGINT:
            raise


class BackgroundServer:
    """uvicorn serving `app` on host:port (0: a free port) in a daemon thread, as a context
    manager; `url` is where it listens."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self.sock = listen(host, port)
        self.url = url_of(self.sock)
        self.server = server_for(app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the explorer's server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
