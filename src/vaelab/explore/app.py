"""The explorer's web app (FastAPI): the page and its static files, and a JSON API over a
LatentSpace. Requests name images by their index in the scatter, never by a file path; bodies
are size-limited; a request the model cannot answer gets a 4xx with a one-line message.

    GET  /                     the page (static/index.html; static/ holds its JS and CSS)
    GET  /api/info             what the page lays itself out from (dims, scatter, classes, ...)
    GET  /api/points?x=&y=     the scatter images' codes on two latent dims
    POST /api/decode           {z, y} -> {image}
    POST /api/item             {index} -> {image, reconstruction, z, y, class}
    POST /api/interpolate      {start: {z, y}, end: {z, y}, steps, method} -> {frames, codes}
    POST /api/direction        {attribute, source} -> {vector, num_with, num_without}
    POST /api/sample           {temperature, layer, z} -> {z}
    POST /api/upload           {data: base64 file, invert, y} -> {image, reconstruction, z, ...}
"""

import base64
import binascii
from importlib.resources import files
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from vaelab.explore.images import UploadError, png_data_url, read_upload
from vaelab.explore.space import MAX_ABS_VALUE, LatentSpace, RequestError
from vaelab.viz.grids import INTERPOLATIONS

STATIC = files("vaelab.explore") / "static"
#: the most frames one interpolation decodes
MAX_STEPS = 64
#: the hottest prior sample the page may ask for
MAX_TEMPERATURE = 10.0
#: a JSON body other than an upload (codes, conditions) stays far below this
MAX_JSON_BYTES = 1_000_000

Number = Annotated[float, Field(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE, allow_inf_nan=False)]
Vector = Annotated[list[Number], Field(min_length=1, max_length=100_000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Point(Strict):
    z: Vector
    y: Vector | None = None


class Item(Strict):
    index: int


class Interpolation(Strict):
    start: Point
    end: Point
    steps: Annotated[int, Field(ge=2, le=MAX_STEPS)] = 10
    method: Literal[INTERPOLATIONS] = "linear"


class Direction(Strict):
    attribute: Annotated[str, Field(min_length=1, max_length=200)]
    source: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class Sample(Strict):
    temperature: Annotated[float, Field(gt=0, le=MAX_TEMPERATURE, allow_inf_nan=False)] = 1.0
    layer: Annotated[int, Field(ge=0)] = 0
    z: Vector | None = None


class Upload(Strict):
    data: str
    invert: bool = False
    y: Vector | None = None


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` (declared or as it arrives) gets 413
    before the app holds it in memory."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _too_large(self) -> HTTPException:
        return HTTPException(413, f"the request body is over {self.max_bytes} bytes")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            message = self._too_large().detail if declared.isdigit() else \
                "a malformed Content-Length header"
            status = 413 if declared.isdigit() else 400
            return await JSONResponse({"detail": message}, status)(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self._too_large()  # FastAPI answers an HTTPException raised while reading
            return message

        return await self.app(scope, counted, send)


def _one_line(error: RequestValidationError) -> str:
    """The first validation error as `field: problem` (FastAPI's default is a JSON list)."""
    first = error.errors()[0]
    if first.get("type") == "json_invalid":
        return f"the request body is not valid JSON ({first.get('ctx', {}).get('error', '')})"
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    return f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "invalid")


def _upload_bytes(data: str, max_bytes: int) -> bytes:
    """The file of an upload's base64 `data` (a data URL's prefix is allowed)."""
    payload = data.split(",", 1)[1] if data.startswith("data:") else data
    if len(payload) > 4 * (max_bytes // 3 + 1):
        raise UploadError(f"the image is over {max_bytes} bytes (uploads.max_bytes)", status=413)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise UploadError("data is not base64: send the file's bytes base64-encoded") from None


def create_app(space: LatentSpace, title: str = "vaelab-explore", max_upload_bytes: int = 5_000_000,
               max_pixels: int = 16_000_000, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The app serving `space`; uploads of at most `max_upload_bytes` and `max_pixels`;
    requests only for `allowed_hosts` (Host header; None: any)."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, max_bytes=max(MAX_JSON_BYTES, 4 * max_upload_bytes // 3 + 4096))
    if allowed_hosts is not None:
        # a web page whose name an attacker points at 127.0.0.1 (DNS rebinding) is refused
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        return JSONResponse({"detail": _one_line(error)}, 422)

    @app.exception_handler(RequestError)
    async def unanswerable(request: Request, error: RequestError):
        return JSONResponse({"detail": str(error)}, 422)

    @app.exception_handler(UploadError)
    async def bad_upload(request: Request, error: UploadError):
        return JSONResponse({"detail": str(error)}, error.status)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(str(STATIC / "index.html"))

    @app.get("/api/info")
    def info():
        return {"title": title, **space.info(),
                "limits": {"max_steps": MAX_STEPS, "max_temperature": MAX_TEMPERATURE,
                           "max_upload_bytes": max_upload_bytes, "max_pixels": max_pixels}}

    @app.get("/api/points")
    def points(x: int, y: int):
        return space.points(x, y)

    @app.post("/api/decode")
    def decode(point: Point):
        return {"image": png_data_url(space.decode(point.z, point.y))}

    @app.post("/api/item")
    def item(request: Item):
        found = space.item(request.index)
        return {**found, "image": png_data_url(found["image"]),
                "reconstruction": png_data_url(found["reconstruction"])}

    @app.post("/api/interpolate")
    def interpolation(request: Interpolation):
        frames, codes = space.interpolation(request.start.model_dump(),
                                            request.end.model_dump(), request.steps,
                                            request.method)
        return {"frames": [png_data_url(frame) for frame in frames], "codes": codes.tolist()}

    @app.post("/api/direction")
    def direction(request: Direction):
        vector, counts = space.direction(request.attribute, request.source)
        return {"vector": vector.tolist(), **counts}

    @app.post("/api/sample")
    def sample(request: Sample):
        return {"z": space.sample(request.temperature, request.layer, request.z).tolist()}

    @app.post("/api/upload")
    def upload(request: Upload):
        data = _upload_bytes(request.data, max_upload_bytes)
        image = read_upload(data, space.images.shape[1:], max_upload_bytes, max_pixels,
                            request.invert)
        found = space.encode(image, request.y)
        return {**found, "image": png_data_url(found["image"]),
                "reconstruction": png_data_url(found["reconstruction"])}

    return app
