"""``maskfocal serve``: count heads over HTTP, and a page to do it by hand.

An ASGI app (FastAPI, served by uvicorn): ``POST /api/count`` takes one image (multipart field
``image``: JPEG, PNG or WebP) and answers JSON; ``GET /`` is a page that sends photos there and
draws each photo's heads, zones and lines; ``GET /api/models`` lists the models a request may
name; ``GET /healthz`` says the worker is up; ``/docs`` and ``/redoc`` are the OpenAPI pages
(served from the fastapi-offline wheel, no CDN).

What keeps it alive, per worker process (each loads the model once):

- uploads over ``max_upload_bytes`` are refused (413) from their Content-Length, or as soon as
  the body grows past it; images over ``max_side`` px on a side or ``max_pixels`` are refused
  (413) from their header, before any pixel is decoded (decompression bombs);
- non-images, damaged and truncated files get 400 with a JSON error saying what was wrong;
- at most ``max_in_flight`` images are decoded and counted at once; up to ``max_waiting`` more
  wait their turn, later ones get 503 at once (with ``Retry-After``), so memory is bounded;
- a request that cannot finish within ``timeout_s`` gets 503 (still waiting) or 504 (counting);
- nothing a client sends is written to disk under a name it chose (uploads stay in memory, or
  in the server framework's own anonymous temporary files).

Every error is JSON: ``{"error": "..."}``.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoint signatures at run time,
# and their types are local to create_app.
import asyncio
import base64
import io
import json
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np

from maskfocal.errors import MaskfocalError

ENV_SETTINGS = "MASKFOCAL_SERVE"
"""Environment variable through which ``maskfocal serve --workers N`` hands its settings to
each worker (:func:`app_from_env`)."""

FORMATS = {"JPEG": "JPEG", "MPO": "JPEG (MPO, as phones save it)", "PNG": "PNG", "WEBP": "WebP"}
OVERLAY_SIDE = 2048  # overlays are drawn at most this large on their longer side
MAX_ZONES_CHARS = 100_000  # a zones form field: thousands of corners, not megabytes


@dataclass
class ServeSettings:
    """How one worker serves; every limit is per worker process."""

    checkpoint: str | None = None  # None: the shipped model
    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_side: int = 10_000
    max_in_flight: int = 1
    max_waiting: int = 16
    timeout_s: float = 60.0
    receive_timeout_s: float = 20.0  # a request must arrive whole (headers, body) in this time
    max_connections: int = 200  # open connections per worker; beyond: 503 at once
    allowed_hosts: tuple[str, ...] | None = None  # Host headers served (None: any)
    inference: dict = field(default_factory=dict)  # InferenceOptions changes (tile_above ...)
    device: str = "cpu"
    backend: str | None = None  # auto, torch or onnx (None: $MASKFOCAL_BACKEND, else auto)
    threads: int | None = None  # threads of each worker (None: usable CPUs / workers)

    def check(self) -> None:
        """A one-line error for a limit that cannot work."""
        for name in ("max_upload_bytes", "max_pixels", "max_side", "max_in_flight",
                     "max_connections"):
            if getattr(self, name) < 1:
                raise MaskfocalError(f"{name.replace('_', '-')} must be at least 1, got "
                                     f"{getattr(self, name)}")
        if self.max_waiting < 0:
            raise MaskfocalError(f"max-waiting must be >= 0, got {self.max_waiting}")
        for name in ("timeout_s", "receive_timeout_s"):  # finite: the event loop's timers
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise MaskfocalError(f"{name[:-2].replace('_', '-')} must be a number of "
                                     f"seconds > 0, got {value}")
        from maskfocal.device import check_backend
        from maskfocal.inference.options import InferenceOptions

        InferenceOptions().replace(**self.inference)  # a bad option: one line, before any work
        check_backend(self.backend)
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise MaskfocalError(f"{self.checkpoint}: no such checkpoint")


class UploadError(Exception):
    """A request the service refuses: an HTTP status, a one-line reason and, for "busy",
    headers (``Retry-After``)."""

    def __init__(self, status: int, reason: str, headers: dict | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


def decode_upload(data: bytes, settings: ServeSettings) -> np.ndarray:
    """Upload bytes as (H, W, 3) uint8, upright; :class:`UploadError` for what is refused."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from maskfocal.structures import as_rgb

    if not data:
        raise UploadError(400, "the file 'image' is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UploadError(400, "the file 'image' is not an image (expected JPEG, PNG or "
                               "WebP)") from None
    except Image.DecompressionBombError as error:  # Pillow's limit: far above ours
        raise UploadError(413, f"image over the {settings.max_pixels:,} pixel limit, a "
                               f"decompression bomb ({error})") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise UploadError(400, f"the file 'image' is damaged or truncated ({error})") from None
    if image.format not in FORMATS:
        raise UploadError(400, f"the file 'image' is {image.format}; expected JPEG, PNG or "
                               "WebP")
    width, height = image.size
    if max(width, height) > settings.max_side:
        raise UploadError(413, f"image of {width}x{height} px: a side is over the "
                               f"{settings.max_side} px limit")
    if width * height > settings.max_pixels:
        raise UploadError(413, f"image of {width}x{height} px: {width * height:,} pixels is "
                               f"over the {settings.max_pixels:,} limit")
    try:
        image.load()  # Pillow's own bomb check is above ours; ours came first
        if image.getexif().get(0x0112, 1) != 1:
            image = ImageOps.exif_transpose(image)
        return as_rgb(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UploadError(400, f"the {FORMATS[image.format]} image is damaged or truncated "
                               f"({error})") from None


def overlay_png(pixels: np.ndarray, result, zones=None) -> str:
    """The overlay of ``result`` on ``pixels`` (and ``zones``) as base64 PNG, at most
    OVERLAY_SIDE px."""
    from maskfocal.visualize import draw_overlay

    picture = draw_overlay(pixels, result, zones=zones)
    if max(picture.size) > OVERLAY_SIDE:
        picture.thumbnail((OVERLAY_SIDE, OVERLAY_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class _OncePerMinute:
    """A logging filter that lets each message through once a minute, so a flood of one
    error (a client storm, a full descriptor table) cannot fill the disk with its log."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def filter(self, record) -> bool:
        key = f"{record.name}:{record.msg}"
        now = time.monotonic()
        if now - self.last.get(key, -math.inf) < 60:
            return False
        self.last[key] = now
        return True


def _quiet_logger():
    import logging

    logger = logging.getLogger("maskfocal.serve")
    if not logger.filters:
        logger.addFilter(_OncePerMinute())
        for name in ("uvicorn.error", "uvicorn.access", "asyncio"):
            logging.getLogger(name).addFilter(_OncePerMinute())
    return logger


def _settings_from_env() -> ServeSettings:
    saved = json.loads(os.environ.get(ENV_SETTINGS, "{}"))
    if saved.get("allowed_hosts") is not None:
        saved["allowed_hosts"] = tuple(saved["allowed_hosts"])
    return ServeSettings(**saved)


def _model_name(checkpoint: str | None) -> str:
    from maskfocal.pretrained import DEFAULT_MODEL

    return DEFAULT_MODEL if checkpoint is None else Path(checkpoint).name


def model_files(checkpoint: str | None) -> dict[str, Path]:
    """The models a server can count with, by the name its answers give them: the shipped
    models, and the checkpoint it was started with (which wins a clash of names)."""
    from maskfocal.pretrained import MODELS, pretrained_path

    files = {name: pretrained_path(name) for name in MODELS}
    if checkpoint is not None:
        files[_model_name(checkpoint)] = Path(checkpoint)
    return files


class CountingService:
    """One worker's counting, without the web framework: a :class:`~maskfocal.Counter` per
    model (the default loaded at once, any other the first time a request names it), at most
    ``max_in_flight`` images counted at once, at most ``max_waiting`` waiting for a turn, each
    request within ``timeout_s``. Refusals are :class:`UploadError`.
    """

    def __init__(self, settings: ServeSettings, counter=None) -> None:
        settings.check()
        if settings.threads:
            import torch

            torch.set_num_threads(settings.threads)
        self.settings = settings
        self.model_name = _model_name(settings.checkpoint)
        self.files = model_files(settings.checkpoint)
        self.counters = {self.model_name: counter or self._load(self.model_name)}
        self.loading = threading.Lock()
        self.thresholds: dict[str, float | None] = {}  # of models not loaded, read once
        self.executor = ThreadPoolExecutor(max_workers=settings.max_in_flight,
                                           thread_name_prefix="maskfocal-count")
        self.slots = asyncio.Semaphore(settings.max_in_flight)
        self.state = {"in_flight": 0, "waiting": 0, "served": 0}

    @property
    def counter(self):
        """The default model's counter."""
        return self.counters[self.model_name]

    def _load(self, name: str):
        from maskfocal.inference import Counter

        settings = self.settings
        return Counter.from_checkpoint(self.files[name], device=settings.device,
                                       backend=settings.backend, **settings.inference)

    def known(self, name: str) -> str:
        """``name``, where :meth:`models` lists it; else the 400 that lists the choices."""
        if name not in self.files:
            raise UploadError(400, f"model: no model {name!r} here; choose one of: "
                                   f"{', '.join(self.files)}")
        return name

    def counter_for(self, name: str | None):
        """The counter of model ``name`` (None: the default), loaded the first time (each
        model a worker has loaded stays in its memory: about 200 MB)."""
        name = self.known(name or self.model_name)
        with self.loading:
            if name not in self.counters:
                self.counters[name] = self._load(name)
        return self.counters[name]

    def models(self) -> dict:
        """``GET /api/models``: the default, and each model's name, score threshold and
        whether this worker holds it already (a threshold is read from the file's config,
        without building the network)."""
        from maskfocal.checkpoint import load_checkpoint
        from maskfocal.inference.options import InferenceOptions

        listed = []
        for name, path in self.files.items():
            if name in self.counters:
                threshold = self.counters[name].threshold
            elif name in self.thresholds:
                threshold = self.thresholds[name]
            else:
                try:
                    config = load_checkpoint(path)["config"]
                    threshold = InferenceOptions.from_saved(config).threshold
                except MaskfocalError:  # not loadable: a request naming it says why
                    threshold = None
                self.thresholds[name] = threshold
            listed.append({"name": name, "threshold": threshold,
                           "loaded": name in self.counters})
        return {"default": self.model_name, "models": listed}

    def health(self) -> dict:
        from maskfocal import __version__

        return {"status": "ok", "model": self.model_name, "version": __version__,
                "backend": self.counter.predictor.backend, **self.state}

    def count_now(self, data: bytes, threshold: float | None, overlay: bool,
                  stop: threading.Event | None = None, zones=None, floor: float | None = None,
                  model: str | None = None) -> dict:
        """Decode and count one upload (in a worker thread): the answer's fields. ``stop``
        set (the request timed out) ends the count before its next forward pass. ``zones``
        (:class:`~maskfocal.zones.Zones`): heads per zone too. ``floor`` (below the
        threshold): also every head scored at least that (``candidates``), so that a client
        can count at any threshold from the floor up without asking again. ``model``: a
        name :meth:`models` lists (None: the default)."""
        from maskfocal.inference.predictor import Stopped

        started = time.perf_counter()
        counter = self.counter_for(model)
        pixels = decode_upload(data, self.settings)
        threshold = counter.threshold if threshold is None else threshold
        if floor is not None and floor >= threshold:
            raise UploadError(400, f"floor: {floor:g} must be below the threshold "
                                   f"{threshold:g}")
        heatmap = overlay and counter.has_heatmap
        try:
            if floor is None:
                result = counter(pixels, threshold=threshold, return_heatmap=heatmap,
                                 stop=stop, zones=zones)
            else:
                result, candidates = counter.with_candidates(
                    pixels, floor / threshold, threshold=threshold, return_heatmap=heatmap,
                    zones=zones, stop=stop)
        except Stopped:
            raise
        except MaskfocalError as error:  # a zone that does not fit this image
            raise UploadError(400, str(error)) from None
        if stop is not None and stop.is_set():  # no overlay for an answer nobody awaits
            raise UploadError(504, "stopped at the timeout")
        from maskfocal.inference.records import CountRecord

        answer = CountRecord(result, width=int(pixels.shape[1]), height=int(pixels.shape[0]),
                             model=model or self.model_name, threshold=float(threshold)
                             ).to_json(points=True, scores=True, boxes=True, size=True,
                                       provenance=True)
        if floor is not None:  # scores unrounded: counted at a threshold, the API's count
            answer["candidates"] = {"floor": floor, **CountRecord(candidates).to_json(
                points=True), "scores": candidates.scores.astype(float).tolist()}
        if overlay:
            answer["overlay_png"] = overlay_png(pixels, result, zones)
        answer["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return answer

    async def count(self, upload, threshold: float | None, overlay: bool,
                    zones: str | None = None, floor: float | None = None,
                    model: str | None = None) -> dict:
        """Read the upload (an object with ``async read(n)``), wait for a turn, count it in
        the thread pool; busy (503), too large (413) and too slow (504) are refusals."""
        settings, state = self.settings, self.state
        deadline = time.monotonic() + settings.timeout_s
        if model is not None:
            self.known(model)  # before the upload is read
        if zones:
            from maskfocal.zones import zones_from_json

            if len(zones) > MAX_ZONES_CHARS:
                raise UploadError(413, f"zones: over {MAX_ZONES_CHARS:,} characters")
            try:
                zones = zones_from_json(zones, "zones")
            except MaskfocalError as error:
                raise UploadError(400, str(error)) from None
        else:
            zones = None
        if state["waiting"] >= settings.max_waiting and self.slots.locked():
            raise UploadError(503, f"busy: {state['in_flight']} images being counted and "
                                   f"{state['waiting']} waiting; retry later",
                              {"Retry-After": "1"})
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise UploadError(413, f"upload is over the {settings.max_upload_bytes:,} byte "
                                   "limit")
        state["waiting"] += 1
        try:
            await asyncio.wait_for(self.slots.acquire(),
                                   timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise UploadError(503, f"busy: waited {settings.timeout_s:g} s for a turn; retry "
                                   "later", {"Retry-After": "5"}) from None
        finally:
            state["waiting"] -= 1
        state["in_flight"] += 1
        stop = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(
            self.executor, self.count_now, data, threshold, overlay, stop, zones, floor, model)

        def finished(_):
            state["in_flight"] -= 1
            self.slots.release()

        future.add_done_callback(finished)
        try:
            answer = await asyncio.wait_for(asyncio.shield(future),
                                            timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            stop.set()  # the worker thread ends at its next forward pass, freeing the slot
            raise UploadError(504, f"counting took longer than {settings.timeout_s:g} s") \
                from None
        state["served"] += 1
        return answer


def _schemas():
    """The API's response models (pydantic comes with the ``serve`` extra)."""
    from pydantic import BaseModel, Field

    class CountResponse(BaseModel):
        count: int = Field(description="heads found at the threshold")
        points: list[list[float]] = Field(description="head centres [x, y], image pixels")
        scores: list[float] = Field(description="the score of each head, in (0, 1)")
        boxes: list[list[float]] | None = Field(
            description="head boxes [x1, y1, x2, y2] where the model predicts sizes")
        width: int
        height: int
        model: str = Field(description="the model that counted")
        threshold: float = Field(description="the score threshold used")
        elapsed_ms: float = Field(description="server time for this image: decode and count")
        overlay_png: str | None = Field(
            None, description="with overlay=true: the overlay (heads, heatmap), base64 PNG")
        zones: dict[str, int] | None = Field(
            None, description="with a zones field: heads in each named zone")
        density: dict[str, float] | None = Field(
            None, description="with zones and a ground scale: people per square metre")
        candidates: dict | None = Field(
            None, description='with floor: {"floor", "count", "points", "scores"} of every '
                              "head scored at least the floor (a superset of points; scores "
                              "unrounded, so that counting them at a threshold gives what "
                              "the API counts there)")

    class Model(BaseModel):
        name: str = Field(description="what a request's model field names")
        threshold: float | None = Field(description="its calibrated score threshold")
        loaded: bool = Field(description="held by this worker already (else loaded on "
                                         "first use)")

    class Models(BaseModel):
        default: str
        models: list[Model]

    class Health(BaseModel):
        status: str
        model: str
        version: str
        in_flight: int
        waiting: int
        served: int

    return CountResponse, Health, Models


def create_app(settings: ServeSettings | None = None, counter=None):
    """The app of one worker (loads the model now, or uses ``counter``): routes that hand
    each request to a :class:`CountingService`, and JSON for every error."""
    from fastapi import File, Form, Query, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from fastapi_offline import FastAPIOffline
    from starlette.exceptions import HTTPException

    from maskfocal import __version__

    settings = settings or ServeSettings()
    service = CountingService(settings, counter)
    CountResponse, Health, Models = _schemas()
    app = FastAPIOffline(  # FastAPI whose /docs and /redoc load no script from a CDN
        title="maskfocal", version=__version__,
        description="Count people in images by detecting their heads. Limits per worker: "
                    f"uploads up to {settings.max_upload_bytes:,} bytes, images up to "
                    f"{settings.max_side} px a side and {settings.max_pixels:,} pixels, "
                    f"{settings.max_in_flight} counted at once, {settings.max_waiting} waiting.")

    def error(status: int, reason: str, headers: dict | None = None):
        return JSONResponse({"error": reason}, status_code=status, headers=headers)

    if settings.allowed_hosts:  # else any Host header is served (say so: docs/usage.md)
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: "
                             f"{e['msg']}" for e in exc.errors())
        return error(400, problems)

    @app.exception_handler(UploadError)
    async def _refused(request: Request, exc: UploadError):
        return error(exc.status, exc.reason, exc.headers)

    @app.middleware("http")
    async def _body_limit(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_upload_bytes:
            return error(413, f"upload of {int(length):,} bytes is over the "
                              f"{settings.max_upload_bytes:,} byte limit")
        if length is None and request.method == "POST":
            return error(411, "a Content-Length header is required")
        return await call_next(request)

    @app.get("/healthz", response_model=Health, summary="the worker is up")
    async def healthz():
        return Health(**service.health())

    @app.get("/api/models", response_model=Models, summary="the models a request may name")
    async def models():
        return Models(**await asyncio.get_running_loop().run_in_executor(None, service.models))

    @app.post("/api/count", response_model=CountResponse, response_model_exclude_none=False,
              summary="count the heads in one image",
              responses={400: {"description": "not an image, damaged, truncated or empty"},
                         413: {"description": "upload or image over the limits"},
                         503: {"description": "busy: too many images waiting"},
                         504: {"description": "counting took longer than the timeout"}})
    async def count(
            image: Annotated[UploadFile, File(description="JPEG, PNG or WebP")],
            threshold: Annotated[float | None, Query(
                gt=0, lt=1, allow_inf_nan=False,
                description="score threshold (default: the model's calibrated one); also "
                            "accepted as a form field")] = None,
            overlay: Annotated[bool, Query(
                description="also return the overlay PNG; also accepted as a form "
                            "field")] = False,
            threshold_form: Annotated[float | None, Form(
                alias="threshold", gt=0, lt=1, allow_inf_nan=False,
                include_in_schema=False)] = None,
            overlay_form: Annotated[bool | None, Form(
                alias="overlay", include_in_schema=False)] = None,
            floor: Annotated[float | None, Query(
                gt=0, lt=1, allow_inf_nan=False,
                description="also answer every head scored at least this (below the "
                            "threshold) as candidates, to count at other thresholds "
                            "without asking again")] = None,
            model: Annotated[str | None, Query(
                max_length=200, description="a model /api/models lists (default: the "
                                            "server's)")] = None,
            zones: Annotated[str | None, Form(
                description='a zone file\'s JSON, polygons only: {"zones": [{"name": ..., '
                            '"polygon": [[x, y], ...]}], "ground": {...}}; the answer '
                            "gains heads (and people per m²) per zone")] = None):
        return await service.count(image, threshold if threshold is not None
                                   else threshold_form, overlay or bool(overlay_form), zones,
                                   floor, model)

    web = resources.files("maskfocal") / "web"
    app.mount("/static", StaticFiles(directory=str(web)), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(str(web / "index.html"), media_type="text/html")

    return app


def app_from_env():
    """The app factory each ``uvicorn`` worker calls: settings from :data:`ENV_SETTINGS`."""
    _quiet_logger()  # a spawned worker's loggers get the once-a-minute filter too
    return create_app(_settings_from_env())


def serve(settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000,
          workers: int = 1) -> None:
    """Run the service until interrupted (``maskfocal serve``)."""
    import socket

    import uvicorn

    settings.check()
    if workers < 1:
        raise MaskfocalError(f"--workers must be at least 1, got {workers}")
    try:  # a taken port is a one-line error, before any model is loaded
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        raise MaskfocalError(f"cannot listen on {host}:{port} ({error.strerror})") from None
    if settings.threads is None:  # the CPUs this process may use, shared by the workers
        from maskfocal.device import usable_cpus

        settings.threads = max(1, usable_cpus() // workers)
    os.environ[ENV_SETTINGS] = json.dumps(asdict(settings))  # workers and the protocol read it
    limits = {"http": "maskfocal.serve_protocol:ReceivingProtocol",
              "limit_concurrency": settings.max_connections,
              "timeout_keep_alive": 5, "log_level": "info"}
    _quiet_logger()
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, **limits)
        return
    from maskfocal.inference import Predictor

    # a bad checkpoint is one line here, not N tracebacks; and its ONNX export is written
    # once, here, before the workers load it
    from maskfocal.pretrained import pretrained_path

    Predictor.from_checkpoint(settings.checkpoint or pretrained_path(), device=settings.device,
                              backend=settings.backend)
    uvicorn.run("maskfocal.service:app_from_env", factory=True, host=host, port=port,
                workers=workers, **limits)
