"""``cvlib serve``: a finished run's models behind HTTP (FastAPI app, served by uvicorn).

- ``POST /score``: a few customers' events (canonical columns) in, their scores out: the rows
  ``cvlib score`` and :meth:`cvlib.Scorer.score` give for the same events. Concurrent requests
  are scored together (:mod:`cvlib.serve.batcher`), each with exactly its own rows.
- ``GET /health``: the run being served. ``GET /openapi.json``: the schema, from the models below.

Safe by default: every request but /health and the schema needs ``Authorization: Bearer <token>``
(the token comes from ``$CVLIB_SERVE_TOKEN``; ``--no-auth`` only on a loopback address); request
bodies and event counts are bounded; a bad request gets a 422 naming the field, never a
traceback; the log names customers by their pseudonymous key only.

Model updates without downtime: a thread watches the run folder's manifest; when a new run of the
same dataset is published there (the runner swaps folders atomically), it is loaded and checked
in the background and takes over between requests; requests already accepted finish on the
models they started with. A damaged or incompatible new run is refused with a log line, and the
old models keep serving.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at runtime.

import asyncio
import dataclasses
import datetime as dt
import gc
import hmac
import ipaddress
import json
import logging
import math
import os
import signal
import threading
import time
import traceback
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from cvlib.data.adapters import file_sha256
from cvlib.serve.batcher import COLUMNS, Batcher, Request
from cvlib.serve.model_folder import ModelFolderError

log = logging.getLogger("cvlib.serve")

TOKEN_ENV = "CVLIB_SERVE_TOKEN"
MIN_TOKEN_CHARS = 16
# settings of `cvlib serve` for its worker processes (no secrets: the token stays in TOKEN_ENV)
SETTINGS_ENV = "CVLIB_SERVE_SETTINGS"


@dataclasses.dataclass(frozen=True)
class Limits:
  """Bounds on one request: JSON body bytes, events (transactions + reviews + items), customers."""
  max_body_bytes: int = 1_000_000
  max_events: int = 10_000
  max_customers: int = 100


# --- the request and response, as the OpenAPI schema shows them ---------------------------------

_STRICT = ConfigDict(extra="forbid", coerce_numbers_to_str=True, str_max_length=100_000)
Money = Annotated[float, Field(allow_inf_nan=False)]


class Transaction(BaseModel):
  """One order (the canonical transactions columns)."""
  model_config = _STRICT
  customer_id: str = Field(min_length=1)
  order_id: str = Field(min_length=1)
  timestamp: dt.datetime = Field(description="ISO 8601; with an offset it is converted to UTC")
  amount: Money = Field(description="order total in the shop's currency; < 0 is a return")


class Review(BaseModel):
  """One review (the canonical reviews columns)."""
  model_config = _STRICT
  review_id: str = Field(min_length=1)
  customer_id: str = Field(min_length=1)
  timestamp: dt.datetime | None = None
  rating: Annotated[float, Field(ge=1, le=5, allow_inf_nan=False)] | None = None
  text: str | None = None
  title: str | None = None
  product_id: str | None = None
  order_id: str | None = None


class Item(BaseModel):
  """One order line (the canonical items columns)."""
  model_config = _STRICT
  order_id: str = Field(min_length=1)
  product_id: str = Field(min_length=1)
  quantity: Money
  unit_price: Money
  amount: Money | None = Field(None, description="default: quantity * unit_price")


class ScoreRequest(BaseModel):
  """A few customers' whole histories up to the scoring day."""
  model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
      "transactions": [
          {"customer_id": "C-1042", "order_id": "A-1", "timestamp": "2024-03-02T10:15:00",
           "amount": 54.9},
          {"customer_id": "C-1042", "order_id": "A-7", "timestamp": "2024-05-20T18:02:00",
           "amount": 23.5}],
      "reviews": [
          {"review_id": "R-88", "customer_id": "C-1042", "timestamp": "2024-05-25T09:00:00",
           "rating": 4, "text": "Fits well, the colour faded after one wash though."}],
      "as_of": "2024-07-01"}]})
  transactions: list[Transaction] = Field(min_length=1)
  reviews: list[Review] = Field(default_factory=list)
  items: list[Item] = Field(default_factory=list)
  as_of: dt.date | None = Field(None, description="the scoring day: events before it count "
                                "(default: tomorrow, UTC, so every event up to today counts)")


class CustomerScore(BaseModel):
  customer_id: str = Field(description="the id sent (never logged)")
  customer_key: str = Field(description="the pseudonymous key the reports use")
  predicted_value: float = Field(description="expected spend over the run's horizon")
  value_lo: float
  value_hi: float
  churn_probability: float
  segment: str = Field(description="RFM segment")
  value_tier: str
  risk_band: str
  action: str
  action_reason: str


class NotScored(BaseModel):
  customer_id: str
  reason: str


class RunInfo(BaseModel):
  dataset: str
  run_ended: str | None
  cvlib_version: str
  manifest_sha256: str
  model: str
  model_version: str
  horizon_days: int
  interval: float


class ScoreResponse(BaseModel):
  run: RunInfo
  as_of: dt.date | None = Field(description="the scoring day (None when nothing was scored)")
  scores: list[CustomerScore]
  not_scored: list[NotScored] = Field(default_factory=list)


class Health(BaseModel):
  status: str
  run: RunInfo
  loaded_at: str


class Problem(BaseModel):
  field: str
  message: str


class ErrorBody(BaseModel):
  detail: list[Problem] | str


# --- the models being served, reloaded when a new run is published --------------------------------

@dataclasses.dataclass(frozen=True)
class Loaded:
  scorer: Any
  info: RunInfo
  stamp: tuple
  loaded_at: str


def _stamp(run_dir: Path) -> tuple | None:
  """What changes when a run is published into ``run_dir``: the folder and its manifest file."""
  try:
    manifest = run_dir / "models" / "manifest.json"
    a, b = run_dir.stat(), manifest.stat()
  except OSError:
    return None
  return (a.st_ino, a.st_dev, b.st_ino, b.st_mtime_ns, b.st_size)


def load_run(run_dir: Path, model: str | None = None) -> Loaded:
  """Loads (and verifies) a run folder's scoring models (``model``: default the run's).

  Raises:
    ModelFolderError: the folder is not a finished, intact, scorable run of this cvlib.
  """
  from cvlib.serve.batcher import ENCODER_BATCH
  from cvlib.serve.scorer import Scorer
  stamp = _stamp(run_dir)
  scorer = Scorer(run_dir, model=model, warm_up=False)
  scorer.warm_up(ENCODER_BATCH if scorer.needs_text else 1)
  manifest_file = run_dir / "models" / "manifest.json"
  run_json = run_dir / "run.json"
  try:
    ended = json.loads(run_json.read_text()).get("ended")
  except (OSError, ValueError):
    ended = scorer.manifest.get("created")
  info = RunInfo(dataset=str(scorer.manifest.get("dataset")), run_ended=ended,
                 cvlib_version=str(scorer.manifest.get("cvlib_version")),
                 manifest_sha256=file_sha256(manifest_file),
                 model=scorer.name, model_version=scorer.version,
                 horizon_days=int(scorer.horizon_days), interval=float(scorer.reference.interval))
  return Loaded(scorer, info, stamp,
                dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


def settle_heap() -> None:
  """Moves every object alive now (the models, JAX, pandas: ~300k objects) out of the cyclic
  garbage collector's view, after collecting what is garbage (a replaced run's models).

  Without it, every full collection walks them all: ~200 ms with the GIL held, in the middle
  of some request (it was the service's 99th-percentile latency). Objects dropped later are
  still freed by reference counting; cycles among them wait for the next reload's collection.
  """
  gc.unfreeze()
  gc.collect()
  gc.freeze()


class LiveModels:
  """The run being served, and a thread that swaps in a newly published run of the same dataset.

  Args:
    run_dir: the run folder (``reports/<dataset>``).
    interval: seconds between looks at the folder.
    load: loads a run folder into a :class:`Loaded` (default :func:`load_run`).
  """

  def __init__(self, run_dir: Path, *, interval: float = 2.0, load=load_run):
    self.run_dir = Path(run_dir)
    self.interval = interval
    self._load = load
    self.current: Loaded = load(self.run_dir)
    self._refused: tuple | None = None
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def start(self) -> None:
    settle_heap()
    self._thread = threading.Thread(target=self._watch, name="cvlib-reload", daemon=True)
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=10)

  def check_now(self) -> bool:
    """Loads a newly published run if there is one; True when the served run changed."""
    stamp = _stamp(self.run_dir)
    if stamp is None or stamp == self.current.stamp or stamp == self._refused:
      return False  # nothing new, a swap in progress, or a run already refused
    old = self.current
    try:
      new = self._load(self.run_dir)
      if new.info.dataset != old.info.dataset:
        raise ModelFolderError([f"it is a run of dataset {new.info.dataset!r}, not "
                                f"{old.info.dataset!r}"])
    except Exception as e:  # noqa: BLE001 - a damaged folder must not stop the service
      checked = isinstance(e, ModelFolderError)  # the manifest's checks said why
      if not checked and _stamp(self.run_dir) != stamp:
        return False  # the folder changed while loading: look again next time
      self._refused = stamp
      log.warning("refused the new run in %s: %s; still serving the run of %s", self.run_dir,
                  "; ".join(e.problems) if checked else type(e).__name__, old.info.run_ended)
      return False
    self.current = new  # one reference assignment: each request reads it once
    log.info("now serving the run of %s (manifest %s, %s)", new.info.run_ended,
             new.info.manifest_sha256[:12], new.info.model_version)
    settle_heap()
    return True

  def _watch(self) -> None:
    while not self._stop.wait(self.interval):
      self.check_now()


# --- errors as 422s naming the field -----------------------------------------------------------

class BadRequest(Exception):
  """A request the service cannot score: 422 with these problems."""

  def __init__(self, problems: list[tuple[str, str]]):
    super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
    self.problems = problems


def _field(loc: tuple, kind: str | None = None) -> str:
  if kind == "json_invalid":
    return "body"
  parts = [p for p in loc if p != "body"]
  out = ""
  for p in parts:
    out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
  return out or "body"


_COLUMNS = {"transactions": Transaction, "reviews": Review, "items": Item}


def _message(error: dict) -> str:
  kind, loc = error.get("type"), error.get("loc", ())
  if kind == "extra_forbidden":
    table = next((p for p in loc if p in _COLUMNS), None)
    if table:
      return (f"unknown column (the {table} columns are "
              f"{', '.join(_COLUMNS[table].model_fields)})")
    return f"unknown field (the request fields are {', '.join(ScoreRequest.model_fields)})"
  if kind == "json_invalid":
    ctx = error.get("ctx") or {}
    where = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
    return f"not valid JSON{where} ({ctx.get('error', 'parse error')})"
  if kind == "model_attributes_type" and tuple(loc) == ("body",):
    return "the body must be a JSON object (and the request's Content-Type application/json)"
  return str(error.get("msg"))


def _problems(errors: list[dict]) -> list[dict[str, str]]:
  return [{"field": _field(tuple(e.get("loc", ())), e.get("type")), "message": _message(e)}
          for e in errors]


def _customers(req: ScoreRequest, limits: Limits) -> list[tuple[str, str]]:
  """Problems with the request as a whole (beyond each event's own checks)."""
  problems = []
  n_events = len(req.transactions) + len(req.reviews) + len(req.items)
  if n_events > limits.max_events:
    problems.append(("transactions", f"{n_events} events (transactions, reviews and items); the "
                     f"limit is {limits.max_events} per request: score larger sets with "
                     "`cvlib score`"))
  buyers = {t.customer_id for t in req.transactions}
  if len(buyers) > limits.max_customers:
    problems.append(("transactions", f"{len(buyers)} customers; the limit is "
                     f"{limits.max_customers} per request"))
  for i, r in enumerate(req.reviews):
    if r.customer_id not in buyers:
      problems.append((f"reviews[{i}].customer_id", "a customer with no transactions in this "
                       "request: send each customer's orders with their reviews"))
      break
  orders = {t.order_id for t in req.transactions}
  for i, item in enumerate(req.items):
    if item.order_id not in orders:
      problems.append((f"items[{i}].order_id", "an order line of an order not in transactions"))
      break
  return problems


def _naive_utc(t: dt.datetime | None) -> dt.datetime | None:
  if t is None or t.tzinfo is None:
    return t
  return t.astimezone(dt.timezone.utc).replace(tzinfo=None)


def to_request(req: ScoreRequest, default_as_of: dt.date) -> Request:
  """The batcher's request (canonical columns as lists) from a validated one."""
  tx, rv, items = req.transactions, req.reviews, req.items
  return Request(
      {"customer_id": [t.customer_id for t in tx], "order_id": [t.order_id for t in tx],
       "timestamp": [_naive_utc(t.timestamp) for t in tx], "amount": [t.amount for t in tx]},
      {col: ([_naive_utc(r.timestamp) for r in rv] if col == "timestamp"
             else [getattr(r, col) for r in rv]) for col in COLUMNS["reviews"]},
      {"order_id": [i.order_id for i in items], "product_id": [i.product_id for i in items],
       "quantity": [i.quantity for i in items], "unit_price": [i.unit_price for i in items],
       "amount": [i.quantity * i.unit_price if i.amount is None else i.amount for i in items]},
      req.as_of or default_as_of)


def tomorrow_utc() -> dt.date:
  """The default scoring day: every event up to today (UTC) counts."""
  return dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)


def _number(x: Any) -> float:
  x = float(x)
  return x if math.isfinite(x) else 0.0


# --- the app -----------------------------------------------------------------------------------

def create_app(run_dir: str | os.PathLike, *, token: str | None, limits: Limits = Limits(),
               reload_interval: float = 2.0, model: str | None = None) -> FastAPI:
  """The service for one run folder. ``token=None`` serves without authentication; ``model``
  names the value network (default: the run's scoring model).

  Raises:
    ModelFolderError: the folder is not a finished, intact, scorable run.
  """
  models = LiveModels(Path(run_dir), interval=reload_interval,
                      load=lambda folder: load_run(folder, model))

  @asynccontextmanager
  async def lifespan(app: FastAPI):
    app.state.batcher = Batcher()  # its thread lives as long as the server
    models.start()
    log.info("serving the %s run of %s (%s) from %s", models.current.info.dataset,
             models.current.info.run_ended, models.current.info.model_version, run_dir)
    yield
    models.stop()
    app.state.batcher.close(timeout=30)

  app = FastAPI(title="cvlib scoring service", version=models.current.info.cvlib_version,
                description="Scores customers with a finished cvlib run's models.",
                lifespan=lifespan)
  app.state.models = models
  app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
  bearer = HTTPBearer(auto_error=False)

  # async: a sync dependency would cost every request a hop to the thread pool
  async def authorised(credentials: Annotated[HTTPAuthorizationCredentials | None,
                                              Depends(bearer)]) -> None:
    if token is None:
      return
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
      raise _Unauthorised()

  @app.exception_handler(_Unauthorised)
  async def unauthorised(request: HttpRequest, exc: _Unauthorised):
    return JSONResponse({"detail": "missing or wrong bearer token (Authorization: Bearer ...)"},
                        status_code=401, headers={"WWW-Authenticate": "Bearer"})

  @app.exception_handler(RequestValidationError)
  async def invalid(request: HttpRequest, exc: RequestValidationError):
    problems = _problems(list(exc.errors()))
    log.info("422: %s", "; ".join(f"{p['field']}: {p['message']}" for p in problems[:3]))
    return JSONResponse({"detail": problems}, status_code=422)

  @app.exception_handler(BadRequest)
  async def bad_request(request: HttpRequest, exc: BadRequest):
    log.info("422: %s", "; ".join(f"{f}" for f, _ in exc.problems[:3]))
    return JSONResponse({"detail": [{"field": f, "message": m} for f, m in exc.problems]},
                        status_code=422)

  @app.get("/health", response_model=Health)
  async def health() -> Health:
    current = models.current
    return Health(status="ok", run=current.info, loaded_at=current.loaded_at)

  @app.post("/score", response_model=ScoreResponse, dependencies=[Depends(authorised)],
            responses={401: {"model": ErrorBody}, 413: {"model": ErrorBody},
                       422: {"model": ErrorBody}})
  async def score(req: ScoreRequest) -> Response:
    start = time.perf_counter()
    problems = _customers(req, limits)
    if problems:
      raise BadRequest(problems)
    current = models.current  # read once: this request finishes on these models
    request = to_request(req, tomorrow_utc())
    future = app.state.batcher.submit(current.scorer, request)
    try:
      result = await asyncio.wrap_future(future)
      response = _response(current.info, result)
    except ValueError as e:  # the scorer's checks on the events
      raise BadRequest([("transactions", str(e))]) from None
    except Exception as e:  # noqa: BLE001 - logged without its message: it could quote ids
      frames = "".join(traceback.format_tb(e.__traceback__))
      log.error("500: %s while scoring\n%s", type(e).__name__, frames)
      return JSONResponse({"detail": "internal error: the service log has the details"},
                          status_code=500)
    scores = response["scores"]
    log.info("scored %d customer(s) [%s] in %.1f ms", len(scores),
             ", ".join(s["customer_key"] for s in scores[:5]) + (" ..." if len(scores) > 5 else ""),
             1000 * (time.perf_counter() - start))
    # the body is serialised here, once: returning the model would have FastAPI validate it again
    return Response(json.dumps(response, allow_nan=False, separators=(",", ":")),
                    media_type="application/json")

  return app


class _Unauthorised(Exception):
  pass


def _response(info: RunInfo, result: Any) -> dict:
  """The /score body (ScoreResponse's fields) as plain JSON values, built column by column."""
  columns = {field: [convert(v) for v in result.column(col)]
             for field, (col, convert) in SCORE_FIELDS.items()}
  return {"run": info.model_dump(),
          "as_of": None if result.as_of is None else result.as_of.isoformat(),
          "scores": [dict(zip(columns, row)) for row in zip(*columns.values())],
          "not_scored": [{"customer_id": c, "reason": why} for c, why in result.not_scored.items()]}


# CustomerScore's fields in order: the scores column each comes from, and its JSON conversion
# (non-finite numbers are sent as 0)
SCORE_FIELDS = {"customer_id": ("customer_id", str), "customer_key": ("customer_key", str),
                "predicted_value": ("predicted_value", _number), "value_lo": ("value_lo", _number),
                "value_hi": ("value_hi", _number),
                "churn_probability": ("churn_probability", _number),
                "segment": ("rfm_segment", str), "value_tier": ("value_tier", str),
                "risk_band": ("risk_band", str), "action": ("action", str),
                "action_reason": ("action_reason", str)}


class BodyLimit:
  """ASGI middleware: a 413 for a body over ``max_bytes``, declared or streamed."""

  def __init__(self, app: Any, max_bytes: int):
    self.app = app
    self.max_bytes = max_bytes

  async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
      return await self.app(scope, receive, send)
    declared = dict(scope.get("headers") or []).get(b"content-length")
    if declared is not None:
      if not declared.isdigit() or int(declared) > self.max_bytes:
        return await self._too_large(scope, receive, send)
      return await self.app(scope, receive, send)
    body, more = b"", True  # no length given: read it here, up to the limit, then replay it
    while more:
      message = await receive()
      if message["type"] != "http.request":
        return
      body += message.get("body", b"")
      more = message.get("more_body", False)
      if len(body) > self.max_bytes:
        return await self._too_large(scope, receive, send)
    replayed = False

    async def replay() -> dict:
      nonlocal replayed
      if not replayed:
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}
      return await receive()

    return await self.app(scope, replay, send)

  async def _too_large(self, scope: dict, receive: Any, send: Any) -> None:
    response = JSONResponse({"detail": [{"field": "body", "message": (
        f"larger than {self.max_bytes} bytes: send fewer customers per request")}]},
        status_code=413)
    await response(scope, receive, send)


# --- running it ----------------------------------------------------------------------------------

def check_settings(*, host: str, port: int, workers: int, no_auth: bool,
                   reload_interval: float, limits: Limits) -> list[str]:
  """What stops the service from starting (``cvlib serve``'s options and $CVLIB_SERVE_TOKEN)."""
  problems = []
  token = os.environ.get(TOKEN_ENV) or None
  if no_auth:
    if not _is_loopback(host):
      problems.append(f"--no-auth serves anyone who can reach {host}: only allowed on a "
                      "loopback address such as 127.0.0.1")
  elif token is None:
    problems.append(f"${TOKEN_ENV} is not set: set it to a secret callers send as "
                    "'Authorization: Bearer <token>' (e.g. python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'), or pass --no-auth for local use")
  elif len(token) < MIN_TOKEN_CHARS:
    problems.append(f"${TOKEN_ENV} is shorter than {MIN_TOKEN_CHARS} characters: use a long "
                    "random secret")
  if workers < 1:
    problems.append(f"--workers must be >= 1, got {workers}")
  if not 0 <= port <= 65535:
    problems.append(f"--port must lie in 0-65535, got {port}")
  if reload_interval <= 0:
    problems.append(f"--reload-interval must be > 0, got {reload_interval}")
  for flag, value in (("--max-body-bytes", limits.max_body_bytes),
                      ("--max-events", limits.max_events)):
    if value < 1:
      problems.append(f"{flag} must be > 0, got {value}")
  return problems


def _is_loopback(host: str) -> bool:
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def _log_to_stderr() -> None:
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def app_from_environment() -> FastAPI:
  """The app of a ``cvlib serve --workers N`` worker process (uvicorn's factory)."""
  _log_to_stderr()  # a fresh process: its log lines need a handler too
  settings = json.loads(os.environ[SETTINGS_ENV])
  token = None if settings["no_auth"] else os.environ.get(TOKEN_ENV)
  return create_app(settings["run_dir"], token=token, limits=Limits(**settings["limits"]),
                    reload_interval=settings["reload_interval"], model=settings["model"])


def serve(run_dir: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000,
          workers: int = 1, no_auth: bool = False, limits: Limits = Limits(),
          reload_interval: float = 2.0, model: str | None = None,
          graceful_seconds: float = 30.0) -> None:
  """Runs the service until SIGINT/SIGTERM; in-flight requests complete before it stops.

  Raises:
    ParamsError: settings that make it unsafe or impossible to start (:func:`check_settings`;
      without ``no_auth`` that includes a missing $CVLIB_SERVE_TOKEN).
    ModelFolderError: the run folder cannot be served (checked before the port is opened).
  """
  import uvicorn

  from cvlib.config import ParamsError
  problems = check_settings(host=host, port=port, workers=workers, no_auth=no_auth,
                            reload_interval=reload_interval, limits=limits)
  if problems:
    raise ParamsError(problems)
  _log_to_stderr()
  # no access log: the service logs every /score call itself, with pseudonymous keys
  common = dict(host=host, port=port, timeout_graceful_shutdown=graceful_seconds,
                log_level="info", access_log=False)
  if workers == 1:
    token = None if no_auth else os.environ.get(TOKEN_ENV)
    app = create_app(run_dir, token=token, limits=limits, reload_interval=reload_interval,
                     model=model)
  else:
    from cvlib.serve.scorer import Scorer
    Scorer(run_dir, model=model, warm_up=False)  # fail here, once, rather than in every worker
    os.environ[SETTINGS_ENV] = json.dumps({"run_dir": str(Path(run_dir).resolve()),
                                           "no_auth": no_auth, "reload_interval": reload_interval,
                                           "model": model, "limits": dataclasses.asdict(limits)})
    app = "cvlib.serve.service:app_from_environment"
  # uvicorn handles SIGTERM from here on (in-flight requests complete) and raises it again once
  # it has stopped; by then there is nothing left to unwind, so the caller returns normally
  signal.signal(signal.SIGTERM, lambda signum, frame: None)
  uvicorn.run(app, factory=workers > 1, workers=workers if workers > 1 else None, **common)
