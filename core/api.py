"""The HTTP API: every demo as a route under /api/v1, plus /healthz, /readyz and /metrics.

app.py hands `routes()` to `st.App`, so the API runs inside Streamlit's own server process: one process,
one model registry, and API requests coalesce with the UI's in the same micro-batches.

Why FastAPI, mounted as a sub-application: Streamlit 1.67's server is Starlette, and FastAPI is Starlette
plus request validation from type hints (pydantic) and an OpenAPI document with a browsable page
(/api/v1/docs) for free. Plain Starlette routes would need hand-written validation and no docs; a second
server process would load every model twice and batch nothing with the UI.

    POST /api/v1/sentiment               one text or a batch -> label and probabilities (optionally word weights)
    POST /api/v1/images/classify         multipart upload of one or more images -> top-k ImageNet labels
    GET  /api/v1/credit-risk/schema      the applicant fields the model takes, with an example
    POST /api/v1/credit-risk/score       applicants (JSON) -> PD, score, decision, reason codes
    POST /api/v1/recommendations         a known user, or liked movies for a new visitor -> movies
    GET  /api/v1/recommendations/movies  search the catalogue (ids and titles to like)
    POST /api/v1/embeddings              OpenAI format (floats or base64)
    POST /api/v1/chat/completions        OpenAI format, streaming with server-sent events: Penny, the support bot
    GET  /api/v1/models                  OpenAI format: the model names the two routes above take
    POST /api/v1/tickets                 a visitor hands a question to a person (the chatbot's hand-off form) -> id
    GET  /healthz  GET /readyz  GET /metrics

Access: with sign-in configured (core.access) every /api/v1 call and /metrics need `Authorization: Bearer
<key>`; keys are stored as SHA-256 hashes, named, in LAUNCHPAD_API_KEYS or `[api.keys]` of
.streamlit/secrets.toml (`python -m core.api key NAME` makes one). With open access the API is open too.
Each client (a key's name, or an address when open) gets the UI's rate limit (LAUNCHPAD_RATE_LIMIT).
No route is for operators only (core.access roles): none loads or unloads models, lists tickets or retrains;
filing a ticket is a visitor's action (rate-limited like a model call), reading them is the Support desk page's.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import sys
import threading
import time
import tomllib
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Mount, Route

from core import access, catalog, chat, config, embeddings, recommender, risk, sentiment, store, vision
from core.registry import READY, SlotError, SlotState, registry

log = logging.getLogger("launchpad.api")
PREFIX = "/api/v1"
MAX_TEXTS = 1000  # texts per sentiment request
MAX_EMBED_INPUTS = 256
MAX_IMAGES = 16
MAX_APPLICANTS = 100  # reason codes are Shapley values, ~20 ms an applicant: more belong in the page's batch tab
MAX_MESSAGES = 50
TICKET_NAME_CHARS, TICKET_EMAIL_CHARS = 100, 200  # the hand-off form's fields (pages/chatbot.py)
CHAT_MODELS = {"penny": "chat_lm", "penny-b": "chat_lm_b"}  # model name -> chat slot; both answer as the support bot
EMBED_MODELS = ("all-MiniLM-L6-v2", embeddings.SLOT)


# --- settings (in core.config's table) ---------------------------------------------------------

def max_body_bytes() -> int:
    return int(config.setting("api_max_body_mb") * 2**20)


def ready_slots() -> list[str]:
    """The slots /readyz waits for (LAUNCHPAD_API_READY_SLOTS, comma-separated); loaded at startup."""
    names = [s.strip() for s in config.setting("api_ready_slots").split(",") if s.strip()]
    unknown = [s for s in names if s not in registry.slots()]
    if unknown:
        raise ValueError(f"LAUNCHPAD_API_READY_SLOTS names no slot called {', '.join(unknown)}; "
                         f"slots: {', '.join(catalog.slots())}")
    return names


# --- errors: every failure a JSON body in OpenAI's shape, never a traceback ------------------------

class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.headers = headers or {}


def error_response(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _where(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "the body"


def _validation_message(errors: list[dict]) -> tuple[int, str, str | None]:
    """(status, message, param) for pydantic's errors: plain sentences naming each field to fix."""
    for e in errors:
        if e.get("type") == "json_invalid":
            detail = (e.get("ctx") or {}).get("error", "")
            return 400, f"The body is not valid JSON ({detail}). Send a JSON object.", None
    lines, param = [], None
    for e in errors[:10]:
        where, kind, msg = _where(tuple(e.get("loc", ()))), e.get("type", ""), e.get("msg", "")
        param = param or where
        if kind == "missing":
            lines.append(f"'{where}' is required")
        elif kind == "extra_forbidden":
            lines.append(f"'{where}' is not a field this route takes")
        elif kind in ("model_attributes_type", "dict_type") and where == "the body":
            lines.append("the body must be a JSON object")
        else:
            lines.append(f"'{where}': {msg[0].lower() + msg[1:] if msg else kind}")
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    text = "; ".join(lines)
    return 422, text[:1].upper() + text[1:] + more + f". The schema is at {PREFIX}/docs.", param


def _slot_unavailable(exc: SlotError) -> ApiError:
    return ApiError(503, f"The model '{exc.slot}' is unavailable: {exc.reason}. Fix: {exc.fix}", "model_unavailable",
                    code="model_unavailable", headers={"Retry-After": "30"})


# --- slot state and metrics -------------------------------------------------------------------------

def slot_state(slot: str) -> SlotState:
    """The one place this module reads a slot's state."""
    return registry.state(slot)


METRICS = CollectorRegistry()
CALL_SECONDS = Histogram("launchpad_model_call_seconds", "Seconds per model call (a batched call serves several "
                         "requests)", ["slot"], registry=METRICS,
                         buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
BATCH_SIZE = Histogram("launchpad_model_batch_size", "Requests served per model call", ["slot"], registry=METRICS,
                       buckets=(1, 2, 4, 8, 16, 32, 64))
TOKENS = Counter("launchpad_tokens_generated", "Tokens generated for API chat completions", ["slot"],
                 registry=METRICS)
HTTP_REQUESTS = Counter("launchpad_http_requests", "API requests by route and status", ["route", "method", "status"],
                        registry=METRICS)
HTTP_SECONDS = Histogram("launchpad_http_request_seconds", "API request latency (streams: until the last byte)",
                         ["route"], registry=METRICS,
                         buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))


def _on_call(slot: str, seconds: float, batch_size: int, failed: bool) -> None:
    CALL_SECONDS.labels(slot).observe(seconds)
    BATCH_SIZE.labels(slot).observe(batch_size)


class _SlotCollector:
    """Per-slot figures read from the registry at each scrape."""

    def collect(self):
        requests = CounterMetricFamily("launchpad_slot_requests", "Requests served by the slot", labels=["slot"])
        errors = CounterMetricFamily("launchpad_slot_errors", "Requests to the slot that raised", labels=["slot"])
        loads = CounterMetricFamily("launchpad_slot_loads", "Times the slot's model was loaded", labels=["slot"])
        resident = GaugeMetricFamily("launchpad_slot_resident_bytes", "Resident weights", labels=["slot"])
        depth = GaugeMetricFamily("launchpad_slot_queue_depth", "Requests waiting for or inside a model call",
                                  labels=["slot"])
        ready = GaugeMetricFamily("launchpad_slot_ready", "1 when the slot's model is loaded", labels=["slot", "state"])
        for name in registry.slots():
            s = slot_state(name)
            requests.add_metric([name], s.calls)
            errors.add_metric([name], s.errors)
            loads.add_metric([name], s.loads)
            resident.add_metric([name], s.bytes)
            depth.add_metric([name], s.queue_depth)
            ready.add_metric([name, str(s.state)], 1.0 if s.state == READY else 0.0)
        yield from (requests, errors, loads, resident, depth, ready)


METRICS.register(_SlotCollector())
registry.on_call(_on_call)


# --- keys and access ----------------------------------------------------------------------------------

KEY_PREFIX = "lp_"


def hash_key(key: str) -> str:
    """How a key is stored: API keys are 256 random bits, so one SHA-256 suffices (a slow password hash
    would cost every request ~0.5 s)."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key(name: str) -> tuple[str, str]:
    """(the key to hand out, the line that stores its hash)."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError("name a key with letters, digits, - or _ (say: ci, alice, dashboard)")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, f'{name} = "{hash_key(key)}"'


def _secrets_file() -> dict:
    path = config.ROOT / ".streamlit" / "secrets.toml"
    if not path.is_file():
        return {}
    return _read_secrets(str(path), path.stat().st_mtime)


_SECRETS_CACHE: dict[tuple[str, float], dict] = {}


def _read_secrets(path: str, mtime: float) -> dict:
    if (path, mtime) not in _SECRETS_CACHE:
        try:
            with open(path, "rb") as f:
                parsed = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}") from None
        _SECRETS_CACHE.clear()
        _SECRETS_CACHE[(path, mtime)] = parsed
    return _SECRETS_CACHE[(path, mtime)]


def _parse_hash(name: str, stored: str, where: str) -> str:
    stored = stored.strip()
    digest = stored.removeprefix("sha256:")
    if not stored.startswith("sha256:") or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"API key '{name}' in {where} is not a stored hash ('sha256:' and 64 hex digits). Keep only "
                         "the hash: `python -m core.api key NAME` prints a new key and the line to store")
    return digest


def api_keys() -> dict[str, str]:
    """name -> SHA-256 hex digest: LAUNCHPAD_API_KEYS ("name:sha256:...,name:..."), then `[api.keys]` in
    .streamlit/secrets.toml. Revoke a key by deleting its entry (the secrets file is read again when it changes)."""
    keys: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in config.setting("api_keys").split(","))):
        name, _, stored = pair.partition(":")
        keys[name.strip()] = _parse_hash(name.strip(), stored, "LAUNCHPAD_API_KEYS")
    for name, stored in dict(_secrets_file().get("api", {}).get("keys", {}) or {}).items():
        keys.setdefault(str(name), _parse_hash(str(name), str(stored), ".streamlit/secrets.toml [api.keys]"))
    return keys


def keys_required() -> bool:
    """The API needs a key exactly when the UI needs a sign-in."""
    return access.load_access(_secrets_file()).required


@dataclass(frozen=True)
class Client:
    name: str  # the key's name, or "address 1.2.3.4" with open access
    key: bool


def authenticate(request: Request) -> Client:
    try:
        required = keys_required()
        keys = api_keys() if required else {}
    except ValueError as exc:  # a broken secrets file or key entry, edited while running
        raise ApiError(503, f"API access is misconfigured: {exc}", "server_error") from None
    if not required:
        return Client(f"address {request.client.host if request.client else 'unknown'}", False)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "This API needs a key: send the header 'Authorization: Bearer <key>'. Sign-in is on for "
                       "this app, so ask its admin for a key (`python -m core.api key NAME`).", "authentication_error",
                       code="missing_key", headers={"WWW-Authenticate": "Bearer"})
    digest = hashlib.sha256(token.strip().encode()).hexdigest()
    for name, stored in keys.items():
        if hmac.compare_digest(digest, stored):
            return Client(name, True)
    raise ApiError(401, "That API key is not valid: it was mistyped or has been revoked." + (
        "" if keys else " No keys are configured yet (LAUNCHPAD_API_KEYS or [api.keys] in .streamlit/secrets.toml)."),
        "authentication_error", code="invalid_key", headers={"WWW-Authenticate": "Bearer"})


Authed = Annotated[Client, Depends(authenticate)]


def rate_limited(client: Authed) -> Client:
    """The UI's per-visitor limit on model calls, per API client: 429 with Retry-After when it is spent. The
    same process-wide limiters as the pages (core.access.heavy_call): an address shares one budget there, and
    every client and visitor together share the server's (LAUNCHPAD_SERVER_RATE_LIMIT)."""
    wait, limiter = access.heavy_call(client.name)
    if wait:
        who = "all clients and visitors together" if limiter is access.server_limiter() else "each client"
        raise ApiError(429, f"Rate limit: {limiter.calls} model calls per {limiter.seconds:g} s for {who}. "
                       f"Try again in {math.ceil(wait)} s.", "rate_limit_error", code="rate_limited",
                       headers={"Retry-After": str(math.ceil(wait))})
    return client


Limited = Annotated[Client, Depends(rate_limited)]


# --- the request guard: body size and content type, before anything is parsed -----------------------

JSON_ROUTES = ("/sentiment", "/credit-risk/score", "/recommendations", "/embeddings", "/chat/completions", "/tickets")
MULTIPART_ROUTES = ("/images/classify",)
KNOWN_PATHS = {*JSON_ROUTES, *MULTIPART_ROUTES, "/credit-risk/schema", "/recommendations/movies", "/models", "/docs",
               "/openapi.json"}


class _TooLarge(Exception):
    pass


class RequestGuard:
    """ASGI middleware: 413 for a body over LAUNCHPAD_API_MAX_BODY_MB (by Content-Length, or counted as it
    arrives), 415 for a POST whose Content-Type the route does not take; HTTP metrics for every request."""

    def __init__(self, app):
        self.app, self.limit = app, max_body_bytes()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        route = path if path in KNOWN_PATHS else "other"  # a bounded set of metric labels
        started, status = time.perf_counter(), [0]

        async def counted_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            problem = self._check(scope, path)
            if problem:
                await problem(scope, receive, counted_send)
                return
            received = 0

            async def limited_receive():
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.limit:
                        raise _TooLarge()
                return message

            try:
                await self.app(scope, limited_receive, counted_send)
            except _TooLarge:
                if status[0]:
                    raise
                await self._too_large()(scope, receive, counted_send)
        finally:
            HTTP_REQUESTS.labels(route, scope["method"], str(status[0] or 500)).inc()
            HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)

    def _too_large(self) -> JSONResponse:
        return error_response(413, f"The body is over this server's limit of {self.limit / 2**20:g} MB "
                              "(LAUNCHPAD_API_MAX_BODY_MB). Send less per request.", code="body_too_large")

    def _check(self, scope, path: str) -> Response | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            return self._too_large()
        if scope["method"] != "POST":
            return None
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if path in JSON_ROUTES and kind != "application/json":
            return error_response(415, f"POST {PREFIX}{path} takes a JSON body: send the header 'Content-Type: "
                                  f"application/json' (got {kind or 'none'!r}).", code="unsupported_media_type")
        if path in MULTIPART_ROUTES and kind != "multipart/form-data":
            return error_response(415, f"POST {PREFIX}{path} takes a multipart/form-data upload with a 'file' "
                                  f"field (curl -F file=@photo.jpg); got {kind or 'no content type'!r}.",
                                  code="unsupported_media_type")
        return None


# --- the app ------------------------------------------------------------------------------------------

API = FastAPI(title="Launchpad API", version="1", docs_url="/docs", redoc_url=None, openapi_url="/openapi.json",
              description="Every Launchpad demo over HTTP. With sign-in configured, send 'Authorization: Bearer "
                          "<key>'. Chat completions and embeddings follow OpenAI's format.")
API.add_middleware(RequestGuard)


@API.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError):
    return error_response(exc.status, exc.message, exc.kind, exc.param, exc.code, exc.headers)


@API.exception_handler(SlotError)
async def _slot_error(request: Request, exc: SlotError):
    e = _slot_unavailable(exc)
    return error_response(e.status, e.message, e.kind, code=e.code, headers=e.headers)


@API.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError):
    status, message, param = _validation_message(list(exc.errors()))
    return error_response(status, message, param=param, code="invalid_body" if status == 422 else "invalid_json")


@API.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException):
    path = request.url.path
    if isinstance(exc.__cause__, _TooLarge):
        return RequestGuard(None)._too_large()
    if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not parse the body (a broken upload)
        return error_response(400, f"The body could not be read ({type(exc.__cause__).__name__}: {exc.__cause__}). "
                              "Send JSON with Content-Type: application/json, or a multipart/form-data upload.",
                              code="unreadable_body")
    if exc.status_code == 404:
        message = f"There is no route {path}. The routes are listed at {PREFIX}/docs."
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {path}. The routes and their methods are at {PREFIX}/docs."
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, message, code="not_found" if exc.status_code == 404 else None)


@API.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception):
    ref = uuid.uuid4().hex[:8]
    log.exception("API request %s %s failed (ref %s)", request.method, request.url.path, ref)
    return error_response(500, f"Something went wrong on the server (ref {ref}); its log has the details.",
                          "server_error")


# sentiment ---------------------------------------------------------------------------------------------

class SentimentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, description="one text (or use texts)")
    texts: list[str] | None = Field(None, max_length=MAX_TEXTS, description="a batch of texts")
    explain: bool = Field(False, description="one text only: each word's weight (occlusion)")
    second_opinion: bool = Field(False, description="one text only: a language model (the sentiment_judge slot) "
                                 "reads it too and its reading is mixed in, as on the page (about 1 s on 2 CPU cores)")


@API.post("/sentiment", summary="Sentiment of one text or a batch")
def sentiment_route(body: SentimentRequest, client: Limited):
    if (body.text is None) == (body.texts is None):
        raise ApiError(422, "Send either 'text' (one string) or 'texts' (a list of strings), not both or neither.",
                       param="text")
    texts = [body.text] if body.text is not None else list(body.texts)
    if not texts:
        raise ApiError(422, "'texts' is empty: send at least one text.", param="texts")
    for option in ("explain", "second_opinion"):
        if getattr(body, option) and body.text is None:
            raise ApiError(422, f"'{option}' works on one 'text' at a time.", param=option)
    checked, notices = [], []
    for i, text in enumerate(texts):
        try:
            clean, notice = sentiment.check_text(text)
        except ValueError as exc:
            where = "'text'" if body.text is not None else f"texts[{i}]"
            raise ApiError(422, f"{where} is empty. {exc}", param="text" if body.text is not None else "texts") from None
        checked.append(clean)
        notices.append(notice)
    slot = sentiment.serving_slot()  # the quick model while the fine-tuned one trains (said in "model")
    out: dict[str, Any] = {"model": slot}
    if body.explain:
        label, words, probs = sentiment.explain(checked[0], slot=slot)
        rows = [probs]
        out["words"] = [{"word": w, "weight": round(weight, 4)} for w, weight in words]
    else:
        rows = sentiment.predict(checked, slot)
    if body.second_opinion:
        out["classifier"] = _probabilities(rows[0])
        try:
            opinion = sentiment.second_opinion(checked[0])
        except (SlotError, RuntimeError) as exc:  # the classifier's answer stands; say why there is no second one
            opinion, out["second_opinion_error"] = None, str(exc)
        out["second_opinion"] = None if opinion is None else _probabilities(opinion)
        rows = [sentiment.combine(rows[0], opinion)]
    out["results"] = [{"label": sentiment.LABELS[int(np.argmax(p))], "probabilities": _probabilities(p),
                       **({"notice": n} if n else {})} for p, n in zip(rows, notices)]
    return out


def _probabilities(p) -> dict[str, float]:
    return {label: round(float(v), 4) for label, v in zip(sentiment.LABELS, p)}


# image classification ------------------------------------------------------------------------------------

@API.post("/images/classify", summary="Top-k ImageNet labels for uploaded images")
def classify_route(file: Annotated[list[UploadFile], File(description="one or more images (repeat the field)")],
                   client: Limited, top_k: Annotated[int, Form(ge=1, le=20)] = 5):
    if len(file) > MAX_IMAGES:
        raise ApiError(422, f"{len(file)} images: send at most {MAX_IMAGES} per request.", param="file")
    uploads = [(upload.file.read(), upload.filename or "upload") for upload in file]
    refusal = vision.upload_refusal(len(uploads), sum(vision.header_pixels(data) for data, _ in uploads))
    if refusal:  # the pages' budget (total pixels), checked before anything is decoded
        raise ApiError(422, refusal, param="file", code="over_budget")
    pictures = []
    for data, name in uploads:
        try:
            pictures.append(vision.read_image(data, name))
        except vision.ImageInputError as exc:
            raise ApiError(422, str(exc), param="file", code="bad_image") from None
    results = vision.classify([p.image for p in pictures], k=top_k)
    return {"model": vision.SLOT, "results": [
        {"file": p.name, "labels": [{"label": label, "probability": round(prob, 4)} for label, prob in top],
         **({"notes": p.notes} if p.notes else {})} for p, top in zip(pictures, results)]}


# credit risk -----------------------------------------------------------------------------------------------

class RiskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    applicants: list[dict[str, str | float | int | None]] = Field(
        ..., min_length=1, max_length=MAX_APPLICANTS, description="one object per applicant: field -> value")
    method: Literal["gbm", "scorecard"] = Field("gbm", description="gbm: calibrated gradient boosting; scorecard")
    approve_at: float = Field(540, description="approve at this score and above")
    decline_below: float = Field(500, description="decline below this score; review in between")
    reasons: int = Field(4, ge=0, le=20, description="reason codes per applicant (what lowered the score most)")


def _risk_model() -> risk.RiskModel:
    return registry.get(risk.SLOT).model


@API.get("/credit-risk/schema", summary="The applicant fields the credit-risk model takes")
def risk_schema(client: Authed):
    schema = _risk_model().schema
    example = {c: schema.medians.get(c) for c in schema.numeric} | dict(schema.modes)
    return {"features": schema.features,
            "numeric": {c: {"min": lo, "max": hi, "median": schema.medians.get(c)}
                        for c, (lo, hi) in schema.ranges.items()},
            "categorical": schema.categorical, "example": example}


def _applicants(message: str) -> str:
    """core.risk numbers rows as in a CSV file (the header is row 1); here they are indexes into 'applicants'."""
    def renumber(m: re.Match) -> str:
        indexes = ", ".join(f"applicants[{int(n) - 2}]" for n in re.findall(r"\d+", m.group(2)))
        return indexes

    return re.sub(r"\b(rows?) (\d+(?:, \d+)*)", renumber, message)


def _score(model: risk.RiskModel, body: RiskRequest) -> dict:
    if body.decline_below > body.approve_at:
        raise ApiError(422, f"decline_below ({body.decline_below:g}) is above approve_at ({body.approve_at:g}): "
                       "decline below a score no higher than the one you approve at.", param="decline_below")
    method = risk.Method(body.method)
    frame = pd.DataFrame([{k: "" if v is None else str(v) for k, v in a.items()} for a in body.applicants])
    frame.columns = [str(c) for c in frame.columns]
    frame = frame.fillna("")  # a field one applicant has and another lacks: blank for the latter
    scored, problems = risk.score_batch(model, frame, method, approve_at=body.approve_at,
                                        decline_below=body.decline_below)
    errors = [p.message.replace("The file needs", "Each applicant needs").replace(
        " Download the template for the expected header.", f" GET {PREFIX}/credit-risk/schema has an example.")
        for p in problems if p.level == "error"]
    if scored is None:
        raise ApiError(422, " ".join(errors), param="applicants")
    clean, _, reason = risk.validate(frame, model.schema)
    results = []
    for i in range(len(frame)):
        row = scored.iloc[i]
        if reason.iat[i]:
            results.append({"pd": None, "score": None, "decision": "not scored", "reason_codes": [],
                            "problem": reason.iat[i]})
            continue
        codes = []
        if body.reasons:
            _, points = model.explain(clean.iloc[[i]], method)
            for name, pts in points[points < 0].sort_values().head(body.reasons).items():
                codes.append({"feature": name, "value": body.applicants[i].get(name), "points": round(float(pts), 1)})
        results.append({"pd": round(float(row["pd"]), 5), "score": int(row["score"]), "decision": str(row["band"]),
                        "reason_codes": codes})
    notes = [_applicants(p.message) for p in problems if p.level == "note"]
    return {"model": risk.SLOT, "method": method.value, "results": results, **({"notes": notes} if notes else {})}


@API.post("/credit-risk/score", summary="Probability of default, score, decision and reason codes")
def risk_route(body: RiskRequest, client: Limited):
    return registry.run(risk.SLOT, lambda bundle: _score(bundle.model, body))


# recommendations --------------------------------------------------------------------------------------------

class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str | int | None = Field(None, description="a MovieLens user id (or use liked)")
    liked: list[str | int] | None = Field(None, max_length=100, description="movie ids or exact titles")
    method: Literal["item_item", "bpr", "content", "popularity"] = "item_item"
    k: int = Field(10, ge=1, le=100)
    genre: str | None = None


def _recommend(model: recommender.Recommender, body: RecommendRequest) -> dict:
    if (body.user is None) == (body.liked is None):
        raise ApiError(422, "Send either 'user' (a known user id) or 'liked' (movies a new visitor likes).",
                       param="user")
    if body.genre and body.genre not in model.genres:
        raise ApiError(422, f"Unknown genre '{body.genre}'. Genres: {', '.join(model.genres)}.", param="genre")
    method = recommender.Method(body.method)
    if body.user is not None:
        user = str(body.user)
        if user not in model.user_index:
            raise ApiError(404, f"No user '{user}' in the ratings: users are ids such as {', '.join(model.users[:3])} "
                           f"({len(model.users)} users). For a new visitor send 'liked' instead.", param="user",
                           code="unknown_user")
        table = model.recommend(method, user=user, k=body.k, genre=body.genre)
    else:
        by_title = {t.lower(): i for i, t in zip(model.items["item"], model.items.title)}
        liked, unknown = [], []
        for value in body.liked:
            key = str(value).strip()
            item = key if key in model.index else by_title.get(key.lower())
            (liked if item else unknown).append(item or key)
        if unknown:
            raise ApiError(422, f"Not in the catalogue: {', '.join(repr(u) for u in unknown[:5])}. Use a movie id or "
                           f"its exact title (GET {PREFIX}/recommendations/movies?search=... finds both).",
                           param="liked", code="unknown_movie")
        if not liked:
            raise ApiError(422, "'liked' is empty: name at least one movie.", param="liked")
        table = model.recommend(method, liked=liked, k=body.k, genre=body.genre)
    return {"model": recommender.SLOT, "method": method.value, "recommendations": [
        {"item": r["item"], "title": r["title"], "genres": r["genres"], "score": round(float(r["score"]), 4),
         "because_you_liked": r["because you liked"]} for r in table.to_dict("records")]}


@API.post("/recommendations", summary="Movies for a known user, or for a new visitor's liked movies")
def recommend_route(body: RecommendRequest, client: Limited):
    return registry.run(recommender.SLOT, lambda bundle: _recommend(bundle.model, body))


@API.get("/recommendations/movies", summary="Search the catalogue by title")
def movies_route(client: Authed, search: Annotated[str, Query(max_length=200)] = "",
                 limit: Annotated[int, Query(ge=1, le=200)] = 20):
    found = registry.get(recommender.SLOT).model.search(search, limit)
    return {"movies": [{"item": r["item"], "title": r["title"], "genres": r["genres"], "ratings": int(r["ratings"])}
                       for r in found.to_dict("records")]}


# embeddings (OpenAI format) --------------------------------------------------------------------------------

class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use (user)
    input: str | list[str] = Field(..., description="a text or a list of texts")
    model: str = Field(EMBED_MODELS[0], description="all-MiniLM-L6-v2")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


@API.post("/embeddings", summary="Sentence embeddings (OpenAI format)")
def embeddings_route(body: EmbeddingsRequest, client: Limited):
    if body.model not in EMBED_MODELS:
        raise ApiError(404, f"No embedding model '{body.model}': use {EMBED_MODELS[0]!r}.", param="model",
                       code="model_not_found")
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts or len(texts) > MAX_EMBED_INPUTS:
        raise ApiError(422, f"'input' has {len(texts)} texts: send 1 to {MAX_EMBED_INPUTS}.", param="input")
    if any(not t.strip() for t in texts):
        raise ApiError(422, "'input' holds an empty text: every text needs some words.", param="input")
    vectors = np.asarray(embeddings.embed(texts), dtype=np.float32)
    if body.dimensions not in (None, vectors.shape[1]):
        raise ApiError(422, f"'dimensions' must be {vectors.shape[1]} (this model's size) or left out.",
                       param="dimensions")
    tokenizer = registry.get(embeddings.SLOT).tokenizer
    tokens = sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=512)["input_ids"])
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if body.encoding_format == "base64"
             else v.tolist()} for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": EMBED_MODELS[0],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


# chat completions (OpenAI format): Penny, the support bot over the knowledge base --------------------------

class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI's content parts: the text ones
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields that do not apply (user, seed, ...)
    model: str = Field(..., description="penny (the chat_lm slot) or penny-b (chat_lm_b)")
    messages: list[Message] = Field(..., min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.3, ge=0, le=2)
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    stream_options: dict | None = None
    grounded: bool = Field(True, description="Launchpad: only sentences the cited articles support (default)")


_KB: list[chat.KnowledgeBase] = []
_KB_LOCK = threading.Lock()


def knowledge_base() -> chat.KnowledgeBase:
    with _KB_LOCK:
        if not _KB:
            _KB.append(chat.sample_kb())
        return _KB[0]


@dataclass
class Reply:
    """One support-bot answer in progress: `pieces` yields its text; the rest is filled in as it goes."""

    slot: str
    plan: chat.Plan
    answer: chat.AnswerStream | None

    def pieces(self):
        if self.answer is None:
            yield self.plan.text
            return
        yield from self.answer

    def extras(self) -> dict:
        a = self.answer
        kind = "handoff" if a is not None and a.unanswered else self.plan.kind
        return {"kind": kind, "intent": self.plan.intent, "notice": self.plan.notice,
                "sources": [{"question": h.question, "score": round(h.score, 3)} for h in self.plan.hits],
                "dropped_sentences": a.dropped if a else 0, "quoted_article": bool(a and a.fallback)}

    def usage(self) -> dict:
        u = self.answer.usage if self.answer is not None else None
        prompt, completion = (u.prompt_tokens, u.completion_tokens) if u else (0, 0)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _plan(body: ChatRequest) -> Reply:
    slot = CHAT_MODELS.get(body.model)
    if slot is None:
        raise ApiError(404, f"No model '{body.model}': use one of {', '.join(CHAT_MODELS)} (GET {PREFIX}/models).",
                       param="model", code="model_not_found")
    if body.messages[-1].role != "user":
        raise ApiError(422, "The last message must be the user's question (role 'user').", param="messages")
    history = [{"role": m.role, "content": m.text()} for m in body.messages[:-1] if m.role in ("user", "assistant")]
    question = body.messages[-1].text()
    if not question.strip():
        raise ApiError(422, "The last user message is empty: ask a question.", param="messages")
    plan = chat.plan_reply(knowledge_base(), history, question)
    if plan.kind != "generate":
        return Reply(slot, plan, None)
    registry.get(slot)  # loaded before the first byte, so a model that cannot load is a 503, not a broken stream
    limit = body.max_completion_tokens or body.max_tokens or chat.MAX_NEW_TOKENS
    answer = chat.AnswerStream(plan, temperature=body.temperature, max_new_tokens=limit, grounded=body.grounded,
                               product=knowledge_base().name, slot=slot)
    return Reply(slot, plan, answer)


def _finish_reason(reply: Reply, limit: int | None) -> str:
    used = reply.usage()["completion_tokens"]
    return "length" if limit and used >= min(limit, chat.MAX_NEW_TOKENS) else "stop"


def _count_tokens(reply: Reply) -> None:
    used = reply.usage()["completion_tokens"]
    if used:
        TOKENS.labels(reply.slot).inc(used)


@API.post("/chat/completions", summary="Chat with Penny, the support bot (OpenAI format; stream: true for SSE)")
async def chat_route(body: ChatRequest, request: Request, client: Limited):
    reply = await run_in_threadpool(_plan, body)
    ident, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())
    limit = body.max_completion_tokens or body.max_tokens
    if not body.stream:
        def whole() -> str:
            try:
                return "".join(reply.pieces())
            finally:
                _count_tokens(reply)

        text = await run_in_threadpool(whole)
        return {"id": ident, "object": "chat.completion", "created": created, "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": _finish_reason(reply, limit)}],
                "usage": reply.usage(), "launchpad": reply.extras()}
    stop = threading.Event()
    response = _EventStream(_events(reply, request, stop, ident, created, body, limit), stop)
    return response


class _EventStream(StreamingResponse):
    """Server-sent events; however the response ends (finished, client gone, cancelled), the generation is told
    to stop, so a client that disconnects mid-stream frees its llama.cpp sequence."""

    def __init__(self, content, stop: threading.Event):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.stop = stop

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.stop.set()


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


async def _events(reply: Reply, request: Request, stop: threading.Event, ident: str, created: int,
                  body: ChatRequest, limit: int | None):
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def put(item) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server shutting down)
            pass

    def work() -> None:
        pieces = reply.pieces()
        try:
            for piece in pieces:
                if piece:
                    put(("text", piece))
                if stop.is_set():
                    break
        except BaseException as exc:
            put(("error", exc))
        finally:
            pieces.close()  # AnswerStream -> core.llm: the model stops at its next token
            _count_tokens(reply)
            put(("done", None))

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": body.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    threading.Thread(target=work, name="api-chat-stream", daemon=True).start()
    try:
        yield _sse(chunk({"role": "assistant", "content": ""}))
        while True:
            try:
                kind, value = await asyncio.wait_for(queue.get(), timeout=0.25)
            except asyncio.TimeoutError:
                kind = "wait"
            if await request.is_disconnected():  # checked between pieces too: a server may drop writes silently
                stop.set()
                if reply.answer is not None:  # grounded answers hold a sentence back: stop the model itself
                    reply.answer.stop()
                return
            if kind == "wait":
                continue
            if kind == "text":
                yield _sse(chunk({"content": value}))
            elif kind == "error":
                message = (_slot_unavailable(value).message if isinstance(value, SlotError)
                           else "The answer stopped because of a server error; its log has the details.")
                if not isinstance(value, SlotError):
                    log.error("chat stream failed", exc_info=value)
                yield _sse({"error": {"message": message, "type": "server_error", "param": None, "code": None}})
            else:
                break
        yield _sse(chunk({}, _finish_reason(reply, limit)) | {"launchpad": reply.extras()})
        if (body.stream_options or {}).get("include_usage"):
            yield _sse({"id": ident, "object": "chat.completion.chunk", "created": created, "model": body.model,
                        "choices": [], "usage": reply.usage()})
        yield _sse("[DONE]")
    finally:
        stop.set()


@API.get("/models", summary="The model names chat completions and embeddings take (OpenAI format)")
def models_route(client: Authed):
    created = int(time.time())
    rows = [{"id": name, "object": "model", "created": created, "owned_by": "launchpad",
             "launchpad": {"slot": slot, "model": slot_state(slot).model, "state": str(slot_state(slot).state)}}
            for name, slot in CHAT_MODELS.items()]
    rows.append({"id": EMBED_MODELS[0], "object": "model", "created": created, "owned_by": "launchpad",
                 "launchpad": {"slot": embeddings.SLOT, "state": str(slot_state(embeddings.SLOT).state)}})
    return {"object": "list", "data": rows}


# tickets: the chatbot's hand-off form over HTTP (a visitor files one; operators read them on the Support desk) ------

class TicketMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: str = Field(..., max_length=chat.MAX_MESSAGE_CHARS * 4)  # an answer of 256 tokens fits


class TicketRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(..., description=f"what the visitor needs help with (at most {chat.MAX_MESSAGE_CHARS:,} "
                          "characters, as a chat message)")
    name: str = Field("", max_length=TICKET_NAME_CHARS, description="optional, as on the hand-off form")
    email: str = Field("", max_length=TICKET_EMAIL_CHARS, description="optional, for a reply")
    messages: list[TicketMessage] = Field([], max_length=MAX_MESSAGES,
                                          description="the conversation so far (default: just the question)")


@API.post("/tickets", status_code=201, summary="Hand a question to a person: a support ticket (the hand-off form)")
def ticket_route(body: TicketRequest, client: Limited):
    """The same checks as the chatbot's hand-off form (pages/chatbot.py): the question is a chat message
    (core.chat.clean_message: control characters dropped; here over-long is refused, not cut), the email is
    optional but must look like one. Stored as typed; the Support desk shows it as text (core.files.plain)."""
    question, notice = chat.clean_message(body.question)
    if notice:
        raise ApiError(422, f"'question' is {len(body.question):,} characters: at most {chat.MAX_MESSAGE_CHARS:,}. "
                       "Send a shorter question (the conversation goes in 'messages').", param="question")
    if not question:
        raise ApiError(422, "'question' is empty: say what you need help with.", param="question")
    if body.email.strip() and not chat.valid_email(body.email):
        raise ApiError(422, "'email' doesn't look like an email address: check it, or leave it out.", param="email")
    # the visitor's messages as the chatbot takes them; Penny's answers (up to 256 tokens) as written
    conversation = [{"role": m.role, "content": chat.clean_message(m.content)[0] if m.role == "user" else m.content}
                    for m in body.messages]
    if not conversation or conversation[-1] != {"role": "user", "content": question}:
        conversation.append({"role": "user", "content": question})
    ticket = store.create_ticket(question, conversation, body.name, body.email)
    return {"id": ticket, "status": "open"}


# --- health, readiness, metrics (outside /api/v1) -----------------------------------------------------------

async def healthz(request: Request) -> Response:
    """The process is alive and serving requests."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 when every slot in LAUNCHPAD_API_READY_SLOTS is loaded, else 503 naming those that are not."""
    try:
        names = ready_slots()
    except ValueError as exc:
        return error_response(503, str(exc), "server_error")
    states = {n: slot_state(n) for n in names}
    waiting = {n: {"state": str(s.state), **({"error": s.last_error} if s.last_error else {}),
                   **({"progress": s.progress} if s.progress else {})} for n, s in states.items() if s.state != READY}
    body = {"status": "ready" if not waiting else "not ready", "slots": {n: str(s.state) for n, s in states.items()}}
    if waiting:
        body["waiting_for"] = waiting
    return JSONResponse(body, status_code=200 if not waiting else 503)


async def metrics(request: Request) -> Response:
    """Prometheus text format. Needs a key when sign-in is configured, like the API."""
    try:
        authenticate(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.kind, code=exc.code, headers=exc.headers)
    return Response(generate_latest(METRICS), media_type=CONTENT_TYPE_LATEST)


def preload_slots() -> list[str]:
    """The slots loaded when the server starts: /readyz's, then LAUNCHPAD_PRELOAD's (models our code trains are
    trained then, not when the first visitor opens their page)."""
    names = list(dict.fromkeys(ready_slots() + list(config.setting("preload"))))
    unknown = [s for s in names if s not in registry.slots()]
    if unknown:
        raise ValueError(f"LAUNCHPAD_PRELOAD names no slot called {', '.join(unknown)}; slots: {', '.join(catalog.slots())}")
    return names


def _preload(names: list[str]) -> None:
    """One after another, so the quick ones are ready first, each once no other slot is loading: the loads
    visitors started go first (a visitor's page may start another meanwhile)."""
    for name in names:
        try:
            registry.prepare(name, after_others=True)
            while not registry.wait(name, timeout=5.0):
                pass
        except SlotError as exc:  # the Models page and /readyz show it
            log.error("could not load %s at start-up: %s", name, exc)


@asynccontextmanager
async def lifespan(app):
    """Starts loading the slots /readyz waits for and LAUNCHPAD_PRELOAD's, in the background, when the server starts."""
    names = preload_slots()
    if names:
        threading.Thread(target=_preload, args=(names,), name="preload", daemon=True).start()
    yield


def tcp_nodelay() -> None:
    """Streamlit 1.67 binds its listening socket itself, with protocol 0, so asyncio never turns on TCP_NODELAY
    for the connections it accepts: every request after the first on a keep-alive connection then waited
    ~40 ms for a delayed ACK (bench/api.py: 60 ms per request for a 7 ms sentiment call, Streamlit's own
    /_stcore/health too). Turns it on as uvicorn accepts each connection. Call before the server starts."""
    import socket

    from uvicorn.protocols.http import h11_impl

    protocols = [h11_impl.H11Protocol]
    try:
        from uvicorn.protocols.http import httptools_impl

        protocols.append(httptools_impl.HttpToolsProtocol)
    except ImportError:  # httptools not installed: uvicorn uses h11
        pass
    for cls in protocols:
        if getattr(cls, "_launchpad_nodelay", False):
            continue
        original = cls.connection_made

        def connection_made(self, transport, _original=original):
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            return _original(self, transport)

        cls.connection_made = connection_made
        cls._launchpad_nodelay = True


def routes() -> list:
    """The routes app.py gives st.App. Checks the API settings first, so a bad value stops the server with a
    plain message instead of failing requests later."""
    max_body_bytes()
    preload_slots()
    api_keys()
    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]), Mount(PREFIX, app=API)]


# --- examples: what each page's "Use via API" expander shows, and what tests/test_api.py runs -------------

@dataclass(frozen=True)
class Example:
    route: str
    curl: str
    python: str

    def filled(self, base: str) -> tuple[str, str]:
        """(curl, python) for a server at `base` (say http://localhost:8501)."""
        return self.curl.replace("{base}", base.rstrip("/")), self.python.replace("{base}", base.rstrip("/"))


_AUTH_CURL = '-H "Authorization: Bearer $LAUNCHPAD_API_KEY"'
_AUTH_PY = 'headers = {"Authorization": "Bearer " + os.environ.get("LAUNCHPAD_API_KEY", "")}'

EXAMPLES: dict[str, Example] = {
    "sentiment": Example(
        "POST /api/v1/sentiment",
        f"""curl -sS --fail-with-body {{base}}/api/v1/sentiment \\
  {_AUTH_CURL} \\
  -H "Content-Type: application/json" \\
  -d '{{"texts": ["@united the flight was delayed 3 hours", "Great crew, thanks!"]}}'""",
        f"""import os
import requests

{_AUTH_PY}
reply = requests.post("{{base}}/api/v1/sentiment", headers=headers, timeout=120,
                      json={{"text": "It does what it says, nothing more.", "explain": True, "second_opinion": True}})
reply.raise_for_status()
result = reply.json()
print(result["results"][0]["label"], result["results"][0]["probabilities"])
"""),
    "image_classifier": Example(
        "POST /api/v1/images/classify",
        f"""curl -sS --fail-with-body {{base}}/api/v1/images/classify \\
  {_AUTH_CURL} \\
  -F "file=@photo.jpg" -F "top_k=3\"""",
        f"""import os
import requests

{_AUTH_PY}
with open("photo.jpg", "rb") as f:
    reply = requests.post("{{base}}/api/v1/images/classify", headers=headers, timeout=120,
                          files={{"file": ("photo.jpg", f, "image/jpeg")}}, data={{"top_k": 3}})
reply.raise_for_status()
for label in reply.json()["results"][0]["labels"]:
    print(f"{{label['probability']:.0%}}  {{label['label']}}")
"""),
    "credit_risk": Example(
        "POST /api/v1/credit-risk/score",
        f"""curl -sS --fail-with-body {{base}}/api/v1/credit-risk/score \\
  {_AUTH_CURL} \\
  -H "Content-Type: application/json" \\
  -d '{{"method": "gbm", "applicants": [{{"Seniority": 9, "Home": "rent", "Time": 60, "Age": 30,
       "Marital": "married", "Records": "no", "Job": "freelance", "Expenses": 73, "Income": 129,
       "Assets": 0, "Debt": 0, "Amount": 800, "Price": 846}}]}}'""",
        f"""import os
import requests

{_AUTH_PY}
applicant = {{"Seniority": 9, "Home": "rent", "Time": 60, "Age": 30, "Marital": "married", "Records": "no",
             "Job": "freelance", "Expenses": 73, "Income": 129, "Assets": 0, "Debt": 0, "Amount": 800, "Price": 846}}
reply = requests.post("{{base}}/api/v1/credit-risk/score", headers=headers, timeout=120,
                      json={{"applicants": [applicant], "method": "scorecard"}})
reply.raise_for_status()
result = reply.json()["results"][0]
print(result["decision"], result["score"], f"PD {{result['pd']:.1%}}")
for reason in result["reason_codes"]:
    print(" ", reason["feature"], reason["value"], reason["points"])
"""),
    "recommender": Example(
        "POST /api/v1/recommendations",
        f"""curl -sS --fail-with-body {{base}}/api/v1/recommendations \\
  {_AUTH_CURL} \\
  -H "Content-Type: application/json" \\
  -d '{{"user": "15", "k": 5}}'""",
        f"""import os
import requests

{_AUTH_PY}
reply = requests.post("{{base}}/api/v1/recommendations", headers=headers, timeout=300,
                      json={{"liked": ["Toy Story (1995)", "Finding Nemo (2003)"], "k": 5}})
reply.raise_for_status()
for movie in reply.json()["recommendations"]:
    print(movie["title"], "- because you liked", movie["because_you_liked"])
"""),
    "chatbot": Example(
        "POST /api/v1/chat/completions",
        f"""curl -sS --fail-with-body -N {{base}}/api/v1/chat/completions \\
  {_AUTH_CURL} \\
  -H "Content-Type: application/json" \\
  -d '{{"model": "penny", "stream": true,
       "messages": [{{"role": "user", "content": "How do I reset my password?"}}]}}'""",
        """import os
from openai import OpenAI

client = OpenAI(base_url="{base}/api/v1", api_key=os.environ.get("LAUNCHPAD_API_KEY") or "none")
stream = client.chat.completions.create(
    model="penny", stream=True, messages=[{"role": "user", "content": "How do I reset my password?"}])
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
"""),
    "embeddings": Example(
        "POST /api/v1/embeddings",
        f"""curl -sS --fail-with-body {{base}}/api/v1/embeddings \\
  {_AUTH_CURL} \\
  -H "Content-Type: application/json" \\
  -d '{{"model": "all-MiniLM-L6-v2", "input": ["refund policy", "how do I get my money back"]}}'""",
        """import os
from openai import OpenAI

client = OpenAI(base_url="{base}/api/v1", api_key=os.environ.get("LAUNCHPAD_API_KEY") or "none")
result = client.embeddings.create(model="all-MiniLM-L6-v2", input=["refund policy", "how do I get my money back"])
a, b = (d.embedding for d in result.data)
print(len(a), "dimensions; cosine", round(sum(x * y for x, y in zip(a, b)), 3))
"""),
}


def main() -> None:
    if sys.argv[1:2] != ["key"] or len(sys.argv) != 3:
        print("usage: python -m core.api key NAME   (prints a new API key, and the hash to store for it)")
        raise SystemExit(2)
    key, line = new_key(sys.argv[2])
    name = sys.argv[2]
    print(f"API key for '{name}' (shown once; hand it to the client):\n  {key}\n")
    print(f"Store its hash in .streamlit/secrets.toml under [api.keys]:\n  {line}")
    print(f"or in the environment: LAUNCHPAD_API_KEYS={name}:{hash_key(key)} (comma-separate several)")
    print("Revoke it by deleting that entry.")


if __name__ == "__main__":
    main()
