"""A small Starlette app: what tests/test_frameworks.py serves behind nginx and compares with
Starlette's own TestClient.  Every route exists in each framework's app (flask_app.py,
django_app.py, fastapi_app.py), written the way that framework is usually written."""

import contextlib
import hashlib
import os

from starlette.applications import Starlette
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    StreamingResponse,
)
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app):
    # per worker, from the lifespan protocol; each request sees it in request.state
    yield {"started": "by the lifespan startup"}


async def index(request):
    return PlainTextResponse("index of the starlette app\n")


async def hello(request):
    name = request.path_params["name"]
    return JSONResponse({
        "hello": name,
        "path": request.url.path,
        "root_path": request.scope.get("root_path", ""),
        "url": request.url_for("hello", name=name).path,
        "external_url": str(request.url_for("hello", name=name)),
    })


async def items(request):
    return JSONResponse({"items": ["a", "b"]})


async def state(request):
    return JSONResponse({"started": request.state.started})


async def query(request):
    params = request.query_params
    return JSONResponse({key: params.getlist(key) for key in params})


async def form(request):
    data = await request.form()
    return JSONResponse({key: data.getlist(key) for key in data})


async def json_body(request):
    data = await request.json()
    return JSONResponse({"received": data, "total": sum(data.get("values", []))})


async def upload(request):
    async with request.form(max_part_size=1 << 20) as data:
        upload = data["file"]
        digest = hashlib.sha256()
        size = 0
        while chunk := await upload.read(1 << 16):
            digest.update(chunk)
            size += len(chunk)
        return JSONResponse({"note": data["note"], "filename": upload.filename,
                             "content_type": upload.content_type, "size": size,
                             "sha256": digest.hexdigest()})


async def cookies(request):
    response = JSONResponse({"cookies": request.cookies})
    response.set_cookie("visited", "yes", httponly=True)
    response.set_cookie("theme", "dark", path=request.scope.get("root_path") or "/")
    return response


async def redirect(request):
    # request.url_for is absolute: from the Host header, the scheme and root_path.
    return RedirectResponse(request.url_for("hello", name="redirected"))


async def redirect_absolute(request):
    return RedirectResponse(str(request.url_for("hello", name="redirected")) + "?from=absolute",
                            status_code=302)


async def stream(request):
    async def chunks():
        for number in range(5):
            yield f"chunk {number}: {'x' * 1000 * number}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


async def download(request):
    # the file the test made; sent with http.response.pathsend where the server offers it
    return FileResponse(os.environ["FRAMEWORKS_DOWNLOAD"], media_type="application/octet-stream")


async def error(request):
    raise RuntimeError("an app error: Starlette answers its own 500, then raises it again")


app = Starlette(lifespan=lifespan, routes=[
    Route("/", index),
    Route("/hello/{name}", hello, name="hello"),
    Route("/items/", items),
    Route("/state", state),
    Route("/query", query),
    Route("/form", form, methods=["POST"]),
    Route("/json", json_body, methods=["POST"]),
    Route("/upload", upload, methods=["POST"]),
    Route("/cookies", cookies),
    Route("/redirect", redirect),
    Route("/redirect/absolute", redirect_absolute),
    Route("/stream", stream),
    Route("/download", download),
    Route("/error", error),
])
