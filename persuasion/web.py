"""`persuasion serve`: the web page and JSON API (persuasion.service) under uvicorn, on this machine by default.

    persuasion serve [--host 127.0.0.1] [--port 8000] [--model default|fast|PATH] [--precision P] [--max-text-chars N]
                     [--allow-urls]

Needs the [serve] extra (FastAPI, uvicorn and trafilatura). The API is described at /openapi.json once it runs
(and at /docs, whose page loads Swagger UI from a CDN, so it needs internet access).
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading

from persuasion.errors import PersuasionError
from persuasion.limits import MAX_DOCUMENT_CHARACTERS, MAX_QUEUE, MAX_REQUEST_BYTES, MAX_TEXT_CHARS

DEFAULT_HOST = "127.0.0.1"  # this machine only; pass --host 0.0.0.0 to serve the network
DEFAULT_PORT = 8000
SHUTDOWN_GRACE_S = 2


class Server:
    """The app on a socket bound when made (so a busy port fails here); `serve_forever()` blocks until
    `shutdown()`, which may come from another thread."""

    def __init__(self, app, listening: socket.socket, max_text_chars: int, log_requests: bool):
        import uvicorn

        self.app = app
        self.socket = listening
        self.max_text_chars = max_text_chars
        config = uvicorn.Config(app, log_config=None, access_log=log_requests, lifespan="off",
                                log_level=logging.INFO if log_requests else logging.WARNING,
                                timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
        self.uvicorn = uvicorn.Server(config)
        self.serving = threading.Event()
        self.stopped = threading.Event()

    @property
    def server_address(self) -> tuple:
        return self.socket.getsockname()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def serve_forever(self) -> None:
        self.serving.set()
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            self.stopped.set()

    def shutdown(self) -> None:
        self.uvicorn.should_exit = True
        if self.serving.is_set():
            self.stopped.wait()

    def server_close(self) -> None:
        self.app.state.queue.close()
        self.socket.close()


def service_module():
    """persuasion.service, or a one-line error naming the extra to install."""
    try:
        from persuasion import service
    except ImportError as error:
        raise PersuasionError(f"persuasion serve needs the [serve] extra ({error.name} is missing): "
                              "pip install 'persuasion[serve]'") from None
    return service


def make_server(detector, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, model_name: str = "custom",
                max_request_bytes: int = MAX_REQUEST_BYTES, max_text_chars: int = MAX_TEXT_CHARS,
                max_queue: int = MAX_QUEUE, log_requests: bool = False, allow_urls: bool = False) -> Server:
    """A server bound to host:port (port 0 picks a free one), not yet serving: call `serve_forever()`."""
    app = service_module().create_app(detector, model_name, max_text_chars=max_text_chars,
                                      max_request_bytes=max_request_bytes, max_queue=max_queue, allow_urls=allow_urls)
    listening = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(128)
    except OSError:
        listening.close()
        raise
    return Server(app, listening, max_text_chars, log_requests)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks one)")
    parser.add_argument("--model", default="default", metavar="NAME|PATH",
                        help="'default', 'fast' or a checkpoint folder (default: default, the shipped model)")
    parser.add_argument("--precision", default="auto", metavar="P",
                        help="what the model computes in: auto (bf16 where the hardware has it, else fp32), fp32, "
                             "bf16 or int8 (default: auto)")
    parser.add_argument("--max-text-chars", type=int, default=MAX_TEXT_CHARS,
                        help=f"longest text one request may send (default {MAX_TEXT_CHARS}; at most "
                             f"{MAX_DOCUMENT_CHARACTERS}, the limit of one document)")
    parser.add_argument("--max-queue", type=int, default=MAX_QUEUE,
                        help=f"requests that may wait for the model at once; more get 503 (default {MAX_QUEUE})")
    parser.add_argument("--allow-urls", action="store_true",
                        help="let a request name a URL for the server to fetch (never a loopback, private or "
                             "link-local address, after DNS and redirects); default: pages are sent as html")
    parser.add_argument("--quiet", action="store_true", help="do not log one line per request")


def run(args: argparse.Namespace) -> int:
    from persuasion.named_models import load_model

    if not 1 <= args.max_text_chars <= MAX_DOCUMENT_CHARACTERS:
        raise PersuasionError(f"--max-text-chars {args.max_text_chars}: give 1 to {MAX_DOCUMENT_CHARACTERS}, "
                              "the limit of one document")
    service_module()  # before the model loads, so a missing extra is the first thing said
    detector = load_model(args.model, args.precision)
    max_request_bytes = max(MAX_REQUEST_BYTES, 8 * args.max_text_chars)  # JSON escapes can take 6 bytes a character
    try:
        server = make_server(detector, args.host, args.port, model_name=str(args.model),
                             max_request_bytes=max_request_bytes, max_text_chars=args.max_text_chars,
                             max_queue=args.max_queue, log_requests=not args.quiet, allow_urls=args.allow_urls)
    except OSError as error:
        raise PersuasionError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}; "
                              "choose another --port or --host") from None
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"persuasion serve: open {server.url} (model: {args.model}, {detector.precision}; API schema at "
          f"{server.url}openapi.json); Ctrl+C stops", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
