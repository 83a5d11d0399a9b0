"""Web pages as input: an article's main text, taken out of its page by trafilatura (the [html] extra).

A saved page or a fetched URL holds navigation, share buttons, newsletter prompts and disclaimers
around the article; scoring all of it flags boilerplate. `article_text` keeps the article (title and
body, paragraphs one per line) and drops the rest, so span offsets index the extracted text, which
the records carry with the name and version of the extractor.

`fetch_page` reads a URL with a timeout and a size limit. The server passes `refuse=non_public_address`,
checked for every address a host name resolves to, at every redirect, and the connection goes to the
address that was checked (not to a second lookup), so a request cannot reach the server's own network.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from persuasion import __version__
from persuasion.errors import PersuasionError

EXTRA = "pip install 'persuasion[html]'"
PAGE_SUFFIXES = (".html", ".htm")
URL_SCHEMES = ("http://", "https://")
FETCH_TIMEOUT_S = 20  # for the connection and for each read
FETCH_DEADLINE_S = 60  # for the whole page: a server sending a byte at a time must not hold us
MAX_PAGE_BYTES = 10_000_000  # a news page with its inline scripts is rarely over 2 MB
MAX_REDIRECTS = 5
PAGE_TYPES = ("text/html", "application/xhtml+xml")

# address -> why it may not be fetched, or None
AddressPolicy = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], str | None]


class PageError(PersuasionError):
    """A page or URL that cannot be turned into an article's text: one line, naming it."""


class RefusedAddress(PageError):
    """A URL whose host (or a redirect's) is an address the fetching policy refuses."""


def is_url(name: str) -> bool:
    return name.lower().startswith(URL_SCHEMES)


def is_page(name: str) -> bool:
    return name.lower().endswith(PAGE_SUFFIXES)


def require_extractor(what: str) -> None:
    """A one-line error naming the extra when trafilatura is not installed."""
    try:
        import trafilatura  # noqa: F401
    except ImportError:
        raise PageError(f"{what}: reading web pages needs the [html] extra (trafilatura): {EXTRA}") from None


def extractor_name() -> str:
    """What took the text out of the page, as records name it: 'trafilatura 2.3.1'."""
    return f"trafilatura {metadata.version('trafilatura')}"


def article_text(page: bytes | str, source: str) -> str:
    """The main text of an HTML page: the article's title and body, without navigation, share buttons,
    comments, disclaimers or footers; a PageError when the page holds no article text."""
    require_extractor(source)
    import trafilatura

    text = trafilatura.extract(page, output_format="txt", include_comments=False, include_tables=False,
                               with_metadata=False, deduplicate=False, favor_precision=True)
    if not text or not text.strip():
        raise PageError(f"{source}: no article text found in the page")
    return text


@dataclass(frozen=True)
class FetchedPage:
    url: str  # after redirects
    content_type: str
    body: bytes


def fetch_page(url: str, refuse: AddressPolicy | None = None, timeout: float = FETCH_TIMEOUT_S,
               max_bytes: int = MAX_PAGE_BYTES) -> FetchedPage:
    """GET `url`, following up to MAX_REDIRECTS redirects; every address connected to passes `refuse` first."""
    deadline = time.monotonic() + FETCH_DEADLINE_S
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PageError(f"{url}: only http:// and https:// URLs with a host can be fetched")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise PageError(f"{url}: the port is not a number from 0 to 65535") from None
        connection = _connection(parts.scheme, parts.hostname, port, timeout, refuse)
        try:
            path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
            connection.request("GET", path, headers={"User-Agent": f"persuasion/{__version__}",
                                                     "Accept": "text/html,application/xhtml+xml,text/plain"})
            response = connection.getresponse()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                url = urllib.parse.urljoin(url, response.getheader("Location"))
                continue
            if response.status != 200:
                raise PageError(f"{url}: the server answered {response.status} {response.reason}")
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise PageError(f"{url}: the page has {int(declared):,} bytes; the limit is {max_bytes:,}")
            body = _read_within(response, max_bytes, deadline, url)
            return FetchedPage(url, response.getheader("Content-Type", ""), body)
        except RefusedAddress as error:
            raise RefusedAddress(f"{url}: {error}") from None
        except (OSError, http.client.HTTPException) as error:
            raise PageError(f"{url}: cannot fetch: {_reason(error)}") from None
        finally:
            connection.close()
    raise PageError(f"{url}: more than {MAX_REDIRECTS} redirects")


def _read_within(response, max_bytes: int, deadline: float, url: str) -> bytes:
    chunks, size = [], 0
    while True:
        if time.monotonic() > deadline:
            raise PageError(f"{url}: the page took over {FETCH_DEADLINE_S} s to arrive")
        chunk = response.read1(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise PageError(f"{url}: the page is over {max_bytes:,} bytes, the limit")
        chunks.append(chunk)


def _connection(scheme: str, host: str, port: int, timeout: float,
                refuse: AddressPolicy | None) -> http.client.HTTPConnection:
    """An HTTP(S) connection to `host` that connects only to an address `refuse` passed."""
    if scheme == "https":
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    # http.client's hook for opening the socket: the address is resolved and checked here, once.
    connection._create_connection = lambda address, *rest: checked_socket(host, port, timeout, refuse)
    return connection


def checked_socket(host: str, port: int, timeout: float, refuse: AddressPolicy | None) -> socket.socket:
    """A socket connected to the first address of `host` that answers; with `refuse`, every address the name
    resolves to must pass it, or nothing is connected."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise OSError(f"cannot resolve {host}: {error.strerror or error}") from None
    addresses = [(family, address) for family, _, _, _, address in found]
    if refuse is not None:
        for _, address in addresses:
            reason = refuse(ipaddress.ip_address(address[0].split("%")[0]))
            if reason:
                shown = host if host == address[0] else f"{host} resolves to {address[0]}"
                raise RefusedAddress(f"refused: {shown}, {reason}")
    last_error: OSError | None = None
    for family, address in addresses:
        connected = socket.socket(family, socket.SOCK_STREAM)
        connected.settimeout(timeout)
        try:
            connected.connect(address)
            return connected
        except OSError as error:
            connected.close()
            last_error = error
    raise last_error or OSError(f"no address for {host}")


def non_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a server fetching for its clients may not connect to `address`, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind, test in (("a loopback", address.is_loopback), ("a link-local", address.is_link_local),
                       ("a private", address.is_private), ("an unspecified", address.is_unspecified),
                       ("a multicast", address.is_multicast), ("a reserved", address.is_reserved)):
        if test:
            return f"{kind} address, which this server does not fetch"
    if not address.is_global:
        return "not a public address, which this server does not fetch"
    return None


def _reason(error: Exception) -> str:
    if isinstance(error, socket.timeout):
        return "timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({error.verify_message})"
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())


def page_text(page: FetchedPage, source: str) -> str:
    """The text to score from a fetched page: the article of an HTML page, a plain-text page as it is."""
    kind = page.content_type.split(";")[0].strip().lower()
    if kind in PAGE_TYPES or not kind:
        return article_text(page.body, source)
    if kind == "text/plain":
        charset = _charset(page.content_type) or "utf-8"
        try:
            return page.body.decode(charset)
        except (LookupError, UnicodeDecodeError):
            raise PageError(f"{source}: the text is not valid {charset}") from None
    raise PageError(f"{source}: not a web page (Content-Type {kind}); give an HTML page or plain text")


def _charset(content_type: str) -> str | None:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"') or None
    return None
