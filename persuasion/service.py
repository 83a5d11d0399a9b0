"""The JSON API and web page of `persuasion serve`, on FastAPI (needs the [serve] extra).

    POST /api/detect     DetectRequest   -> DetectResponse     technique spans in a text, a web page or a URL
    POST /api/classify   ClassifyRequest -> ClassifyResponse   the 14 techniques ranked for spans you give
    POST /api/render     RenderRequest   -> RenderResponse     the page's highlighted HTML for spans you give
    GET  /healthz        Health
    GET  /docs           the OpenAPI page (Swagger UI, loaded from a CDN); the schema itself at /openapi.json
    GET  /               the page: paste text or open a .txt or .html file, see the highlighted techniques

Errors are JSON: {"error": "one line", "detail": [...]}; 400 for a body that is not JSON, 403 for a URL
this server does not fetch, 422 for JSON that does not fit the request model (or a page with no
article text), 413 over the size limits, 415 for a body sent as another type (no Content-Type is read
as JSON), 502 for a URL that could not be fetched, 503 while the queue is full.

Inference runs in two worker threads, one for short texts and one for long ones (InferenceQueue), so the
event loop keeps answering (health checks, errors, queued requests) while the model works and a short
request never waits behind a long text; at most `max_queue` requests wait or run at a time.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from persuasion import __version__
from persuasion.errors import PersuasionError
from persuasion.highlight import STYLESHEET, legend_html, result_html
from persuasion.limits import MAX_DOCUMENT_CHARACTERS, MAX_QUEUE, MAX_REQUEST_BYTES, MAX_TEXT_CHARS
from persuasion.model.checkpoint import SHIPPED_NAMES
from persuasion.named_models import load_model
from persuasion.pages import (PageError, RefusedAddress, article_text, extractor_name, fetch_page, non_public_address,
                              page_text)
from persuasion.result import DetectionResult, SentenceScore, Span

MAX_CLASSIFY_SPANS = 1_000
# Texts up to this many characters (a page or two: a few windows) take the short lane, longer ones the long lane.
SHORT_TEXT_CHARS = 5_000
LANES = ("short", "long")
# Scripts only from this server, so markup that slipped through escaping still could not run.
# Not on /docs: its page loads Swagger UI's scripts from a CDN.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
UNGUARDED_PATHS = ("/docs", "/openapi.json")

log = logging.getLogger("persuasion.serve")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


class DetectRequest(StrictModel):
    text: str | None = Field(None, description="the text to search; an empty text finds no spans")
    html: str | None = Field(None, description="instead of text: a web page, whose article text is searched")
    url: str | None = Field(None, description="instead of text: an http(s) URL whose page the server fetches "
                                              "(only when started with --allow-urls)")
    model: str | None = Field(None, description='"default", "fast" or the model the server started with; '
                                                "omit for the server's model")
    min_score: float | None = Field(None, ge=0.0, le=1.0,
                                    description="leave out spans scoring below this; omit for the model's default "
                                                "(0: every span)")

    @model_validator(mode="after")
    def one_input(self):
        given = [name for name in ("text", "html", "url") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of text, html or url, not {' and '.join(given) or 'none'}")
        return self


class SpanAnswer(BaseModel):
    start: int = Field(description="offset of the first character, in Python characters")
    end: int = Field(description="offset after the last character: text[start:end] == span text")
    text: str
    technique: str
    score: float = Field(description="P(a span flagged at this score overlaps a span annotators marked with this "
                                     "technique), calibrated on validation")


class SentenceAnswer(BaseModel):
    start: int
    end: int
    score: float = Field(description="P(the sentence overlaps a technique span), calibrated on validation")


class SummaryRow(BaseModel):
    technique: str
    count: int
    max_score: float


class DetectResponse(BaseModel):
    spans: list[SpanAnswer]
    sentences: list[SentenceAnswer]
    summary: list[SummaryRow] = Field(description="count and highest score per technique, most frequent first")
    html: str = Field(description="the text with its spans highlighted, escaped, as the page shows it")
    text: str | None = Field(None, description="for html or url: the article text taken out of the page, which the "
                                               "offsets index")
    extractor: str | None = Field(None, description="for html or url: what took the text out of the page")


class RenderRequest(StrictModel):
    text: str
    spans: list[SpanAnswer] = Field(description="spans of the text, as /api/detect returned them")
    sentences: list[SentenceAnswer] = Field(default_factory=list)


class RenderResponse(BaseModel):
    html: str = Field(description="the text with these spans highlighted, escaped")


class Fragment(StrictModel):
    start: int = Field(ge=0)
    end: int = Field(ge=1)


class ClassifyRequest(StrictModel):
    text: str
    spans: list[Fragment] = Field(max_length=MAX_CLASSIFY_SPANS, description="fragments of the text to classify")
    model: str | None = Field(None, description="as for /api/detect")


class TechniqueScore(BaseModel):
    technique: str
    score: float = Field(description="calibrated p(the fragment uses this technique)")


class ClassifiedSpan(BaseModel):
    start: int
    end: int
    text: str
    techniques: list[TechniqueScore] = Field(description="all 14 techniques, most likely first")


class ClassifyResponse(BaseModel):
    spans: list[ClassifiedSpan]


class Health(BaseModel):
    status: str
    model: str
    models: list[str] = Field(description="the names a request's model may take")
    max_text_chars: int
    min_score: float = Field(description="the served model's min_score when a request gives none")
    allow_urls: bool = Field(description="whether /api/detect fetches a url (persuasion serve --allow-urls)")


class ErrorAnswer(BaseModel):
    error: str
    detail: list | None = None


ERRORS = {status: {"model": ErrorAnswer} for status in (400, 403, 413, 415, 422, 502, 503)}


class Closing(Exception):
    """The server is shutting down: a long detection stops at its next forward pass."""


class InferenceQueue:
    """Two worker threads run the model calls: one takes texts up to SHORT_TEXT_CHARS in turn, the other the
    longer ones in turn, so a short request never waits behind a long text (each thread has its own tokenizer;
    the network's weights are shared, read-only). `run` refuses with 503 when `max_queue` calls already wait
    or run; closing the queue stops a long call at its next forward pass."""

    def __init__(self, max_queue: int):
        self.max_queue = max_queue
        self.pending = 0  # changed only on the event loop's thread
        self.closing = threading.Event()
        self.lanes = {lane: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"persuasion-{lane}")
                      for lane in LANES}

    async def run(self, characters: int, work: Callable[[str, Callable[[], None]], object]):
        """work(lane, check) on the lane for `characters`; check() between forward passes stops it on close."""
        if self.pending >= self.max_queue:
            raise HTTPException(503, f"the server is busy ({self.pending} requests queued); retry shortly",
                                headers={"Retry-After": "1"})
        lane = "short" if characters <= SHORT_TEXT_CHARS else "long"
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.lanes[lane], work, lane, self.check)
        except Closing:
            raise HTTPException(503, "the server is shutting down") from None
        finally:
            self.pending -= 1

    def check(self) -> None:
        if self.closing.is_set():
            raise Closing("the server is shutting down")

    def close(self) -> None:
        self.closing.set()
        for executor in self.lanes.values():
            executor.shutdown(wait=False, cancel_futures=True)


def unfit(message: str, location: list) -> HTTPException:
    """A 422 for a request that passed the request model but not the server's checks, with its `detail`."""
    return HTTPException(422, {"error": message, "detail": [{"loc": location, "msg": message, "type": "value_error"}]})


def checking(detector, check: Callable[[], None]):
    """The detector, calling check() before each forward pass over windows, so a long call can be stopped
    between two passes."""
    checked = copy.copy(detector)  # shares the network and tokenizer; only this copy checks
    checked.before_each_pass = check
    return checked


class Models:
    """The server's own detector under its name, and the shipped models (SHIPPED_NAMES) on first request."""

    def __init__(self, detector, name: str):
        self.name = name
        self.loaded = {name: detector}
        self.lock = threading.Lock()
        self.per_lane: dict[tuple[str, str], object] = {}

    @property
    def names(self) -> list[str]:
        return [self.name] + [name for name in SHIPPED_NAMES if name != self.name]

    def check(self, name: str | None) -> str:
        name = name or self.name
        if name not in self.names:
            raise unfit(f"model {name!r} is not served here; use one of {', '.join(self.names)}", ["body", "model"])
        return name

    def get(self, name: str, lane: str):
        """The model for one lane's thread: shared weights, the lane's own tokenizer (a fast tokenizer may not be
        used by two threads at once). Call on that thread: loading a model takes seconds."""
        with self.lock:
            if name not in self.loaded:
                self.loaded[name] = load_model(name, self.loaded[self.name].precision)  # as the server's model
            if (name, lane) not in self.per_lane:
                detector = copy.copy(self.loaded[name])
                detector.tokenizer = copy.deepcopy(detector.tokenizer)
                self.per_lane[name, lane] = detector
            return self.per_lane[name, lane]


def create_app(detector, model_name: str = "custom", max_text_chars: int = MAX_TEXT_CHARS,
               max_request_bytes: int = MAX_REQUEST_BYTES, max_queue: int = MAX_QUEUE,
               allow_urls: bool = False) -> FastAPI:
    if max_text_chars > MAX_DOCUMENT_CHARACTERS:
        raise PersuasionError(f"max_text_chars {max_text_chars:,} is over the {MAX_DOCUMENT_CHARACTERS:,}-character "
                              "limit of one document")
    models = Models(detector, model_name)
    queue = InferenceQueue(max_queue)
    # strict_content_type=False: a body sent with no Content-Type at all is read as JSON (one of another type is 415).
    app = FastAPI(title="persuasion", version=__version__, redoc_url=None, strict_content_type=False,
                  description="Find persuasion and propaganda techniques in text (SemEval-2020 Task 11).")
    app.state.queue = queue
    app.add_middleware(RequestLimits, max_request_bytes=max_request_bytes)

    def check_length(text: str) -> None:
        if len(text) > max_text_chars:
            raise HTTPException(413, f"text has {len(text)} characters; the limit is {max_text_chars}: "
                                     "split it, or start the server with a larger --max-text-chars")

    async def article(request: DetectRequest) -> str:
        """The article text of the request's html or url (extraction and fetching run off the event loop)."""
        try:
            if request.html is not None:
                return await asyncio.to_thread(article_text, request.html, "html")
            if not allow_urls:
                raise HTTPException(403, "this server does not fetch URLs (start it with --allow-urls); "
                                         "send the page as html instead")
            page = await asyncio.to_thread(fetch_page, request.url, non_public_address)
            return await asyncio.to_thread(page_text, page, request.url)
        except RefusedAddress as error:
            raise HTTPException(403, str(error)) from None
        except PageError as error:
            problem = str(error)
            raise HTTPException(502 if "cannot fetch" in problem or "answered" in problem else 422, problem) from None

    @app.post("/api/detect", response_model=DetectResponse, responses=ERRORS, response_model_exclude_none=True,
              summary="Find technique spans in a text, a web page or (with --allow-urls) a URL")
    async def detect(request: DetectRequest) -> dict:
        name = models.check(request.model)
        text = request.text if request.text is not None else await article(request)
        check_length(text)

        def work(lane: str, check) -> DetectionResult:
            detector = models.get(name, lane)
            if request.min_score is not None:
                detector = detector.with_min_score(request.min_score)
            return checking(detector, check).detect(text)

        result = await queue.run(len(text), work)
        answer = await asyncio.to_thread(lambda: {**result.to_dict(), "html": result_html(result)})
        if request.text is None:
            answer.update(text=text, extractor=extractor_name())
        return answer

    @app.post("/api/classify", response_model=ClassifyResponse, responses=ERRORS,
              summary="Rank the techniques for fragments of a text")
    async def classify(request: ClassifyRequest) -> dict:
        check_length(request.text)
        name = models.check(request.model)
        fragments = [(span.start, span.end) for span in request.spans]
        for number, (start, end) in enumerate(fragments):
            if not start < end <= len(request.text):
                raise unfit(f"span {start}-{end} is not inside the text ({len(request.text)} characters); "
                            "give 0 <= start < end <= length", ["body", "spans", number])

        def work(lane: str, check) -> dict:
            ranked = checking(models.get(name, lane), check).classify_spans(request.text, fragments)
            return {"spans": [{"start": start, "end": end, "text": request.text[start:end],
                               "techniques": [{"technique": t, "score": p} for t, p in techniques]}
                              for (start, end), techniques in zip(fragments, ranked)]}

        return await queue.run(len(request.text), work)

    @app.post("/api/render", response_model=RenderResponse, responses=ERRORS,
              summary="Highlight spans you give in a text, as the page shows them (no model runs)")
    async def render(request: RenderRequest) -> dict:
        check_length(request.text)
        for number, span in enumerate(request.spans):
            if not 0 <= span.start < span.end <= len(request.text) or request.text[span.start:span.end] != span.text:
                raise unfit(f"span {span.start}-{span.end} is not that text's span", ["body", "spans", number])
        result = DetectionResult(request.text, [Span(**span.model_dump()) for span in request.spans],
                                 [SentenceScore(**sentence.model_dump()) for sentence in request.sentences])
        return {"html": await asyncio.to_thread(result_html, result)}

    @app.get("/healthz", response_model=Health)
    async def health() -> dict:
        return {"status": "ok", "model": model_name, "models": models.names, "max_text_chars": max_text_chars,
                "min_score": detector.decoding.min_score, "allow_urls": allow_urls}

    static = resources.files("persuasion") / "web_static"
    page = (static / "index.html").read_text(encoding="utf-8").replace("<!-- legend -->", legend_html())
    script = (static / "page.js").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def send_page() -> Response:
        return Response(page, media_type="text/html; charset=utf-8")

    @app.get("/page.js", include_in_schema=False)
    async def send_script() -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8")

    @app.get("/highlight.css", include_in_schema=False)
    async def send_stylesheet() -> Response:
        return Response(STYLESHEET, media_type="text/css; charset=utf-8")

    icon = (static / "icon.svg").read_bytes()

    @app.get("/favicon.ico", include_in_schema=False)  # browsers ask for it whatever the page links
    @app.get("/icon.svg", include_in_schema=False)
    async def send_icon() -> Response:
        return Response(icon, media_type="image/svg+xml")

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, server_error)
    return app


def error_answer(status: int, message: str, detail: list | None = None, headers: dict | None = None) -> JSONResponse:
    content = {"error": message} if detail is None else {"error": message, "detail": detail}
    return JSONResponse(content, status_code=status, headers=headers)


async def invalid_request(request, error: RequestValidationError) -> JSONResponse:
    problems = error.errors()
    detail = [{"loc": list(p["loc"]), "msg": p["msg"], "type": p["type"]} for p in problems]
    if isinstance(error.body, bytes):  # FastAPI leaves a body it did not read as JSON as bytes
        kind = request.headers.get("content-type", "")
        return error_answer(415, f"send the body as JSON with the header Content-Type: application/json, not {kind}",
                            detail)
    not_json = next((p for p in problems if p["type"] == "json_invalid"), None)
    if not_json is not None:
        reason = not_json.get("ctx", {}).get("error", "")
        return error_answer(400, f"request body is not valid JSON: {reason}".rstrip(": "), detail)
    message = "; ".join(f"{_field(p['loc'])}: {p['msg']}" for p in problems[:3])
    example = '{"text": "...", "spans": [{"start": 0, "end": 5}]}' if request.url.path == "/api/classify" \
        else '{"text": "..."}'
    return error_answer(422, f"{message}; send {example}", detail)


def _field(location: tuple) -> str:
    """'spans.0.end' for ("body", "spans", 0, "end"); 'body' for the body itself."""
    return ".".join(str(part) for part in location[1:]) or "body"


async def http_error(request, error: StarletteHTTPException) -> JSONResponse:
    if isinstance(error.detail, dict):  # unfit(): a message with its detail
        return error_answer(error.status_code, error.detail["error"], error.detail["detail"], headers=error.headers)
    message = error.detail if isinstance(error.detail, str) else str(error.detail)
    if isinstance(error.__cause__, UnicodeDecodeError):  # FastAPI's 400 for a body it cannot decode
        message = f"request body is not valid JSON: not UTF-8 ({error.__cause__.reason})"
    elif error.status_code == 404:
        message = f"no page at {request.url.path}; try GET / or POST /api/detect"
    elif error.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; use {error.headers.get('Allow', 'GET')}"
    return error_answer(error.status_code, message, headers=error.headers)


async def server_error(request, error: Exception) -> JSONResponse:
    # A bug, not the client's fault: keep serving, leave the traceback in the log.
    log.error("request to %s failed", request.url.path, exc_info=error)
    return error_answer(500, "the request failed inside the server; see the server log")


class RequestLimits:
    """ASGI middleware: bodies over `max_request_bytes` get 413 before they are read (or as soon as a
    chunked one passes the limit), and every answer gets the page's security headers."""

    def __init__(self, app, max_request_bytes: int):
        self.app = app
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        guarded = not scope["path"].startswith(UNGUARDED_PATHS)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + [
                    (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")] + (
                    [(b"content-security-policy", CONTENT_SECURITY_POLICY.encode())] if guarded else [])
            await send(message)

        # uvicorn has already refused a Content-Length that is not a number (400).
        declared = dict(scope["headers"]).get(b"content-length")
        limit = self.max_request_bytes
        if declared is not None and int(declared) > limit:
            answer = error_answer(413, f"request body has {int(declared)} bytes; the limit is {limit}")
            return await answer(scope, receive, send_with_headers)
        received = 0

        async def receive_within_limit():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, f"request body passed {limit} bytes, the limit")
            return message

        await self.app(scope, receive_within_limit, send_with_headers)
