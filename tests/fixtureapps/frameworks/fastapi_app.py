"""A small FastAPI app: what tests/test_frameworks.py serves behind nginx and compares with
Starlette's TestClient.  Every route exists in each framework's app, here with FastAPI's own
parameter declarations (Query, Form, File, Cookie, a pydantic body)."""

import contextlib
import hashlib
import os
from typing import Annotated

from fastapi import Cookie, FastAPI, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel


@contextlib.asynccontextmanager
async def lifespan(app):
    # per worker, from the lifespan protocol; each request sees it in request.state
    yield {"started": "by the lifespan startup"}


app = FastAPI(lifespan=lifespan)


class Numbers(BaseModel):
    name: str
    values: list[int] = []


@app.get("/", response_class=PlainTextResponse)
async def index():
    return "index of the fastapi app\n"


@app.get("/hello/{name}", name="hello")
async def hello(name: str, request: Request):
    return {"hello": name, "path": request.url.path,
            "root_path": request.scope.get("root_path", ""),
            "url": request.url_for("hello", name=name).path,
            "external_url": str(request.url_for("hello", name=name))}


@app.get("/items/")
async def items():
    return {"items": ["a", "b"]}


@app.get("/state")
async def state(request: Request):
    return {"started": request.state.started}


@app.get("/query")
async def query(a: Annotated[list[str], Query()] = [], b: str = "", n: int = 0):  # noqa: B006
    return {"a": a, "b": [b], "n": [n]}


@app.post("/form")
async def form(name: Annotated[str, Form()], tag: Annotated[list[str], Form()] = []):  # noqa: B006
    return {"name": [name], "tag": tag}


@app.post("/json")
async def json_body(numbers: Numbers):
    return {"received": numbers.model_dump(), "total": sum(numbers.values)}


@app.post("/upload")
async def upload(file: Annotated[UploadFile, File()], note: Annotated[str, Form()]):
    digest = hashlib.sha256()
    size = 0
    while chunk := await file.read(1 << 16):
        digest.update(chunk)
        size += len(chunk)
    return {"note": note, "filename": file.filename, "content_type": file.content_type,
            "size": size, "sha256": digest.hexdigest()}


@app.get("/cookies")
async def cookies(request: Request, response: Response,
                  a: Annotated[str | None, Cookie()] = None,
                  b: Annotated[str | None, Cookie()] = None):
    response.set_cookie("visited", "yes", httponly=True)
    response.set_cookie("theme", "dark", path=request.scope.get("root_path") or "/")
    return {"cookies": request.cookies, "a": a, "b": b}


@app.get("/redirect")
async def redirect(request: Request):
    return RedirectResponse(request.url_for("hello", name="redirected"))


@app.get("/redirect/absolute")
async def redirect_absolute(request: Request):
    return RedirectResponse(str(request.url_for("hello", name="redirected")) + "?from=absolute",
                            status_code=302)


@app.get("/stream")
async def stream():
    async def chunks():
        for number in range(5):
            yield f"chunk {number}: {'x' * 1000 * number}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/download")
async def download():
    # the file the test made; sent with http.response.pathsend where the server offers it
    return FileResponse(os.environ["FRAMEWORKS_DOWNLOAD"], media_type="application/octet-stream")


@app.get("/error")
async def error():
    raise RuntimeError("an app error: FastAPI answers its own 500, then raises it again")
