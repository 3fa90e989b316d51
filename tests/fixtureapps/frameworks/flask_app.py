"""A small Flask app: what tests/test_frameworks.py serves behind nginx and compares with
Flask's own test client.  Every route exists in each framework's app."""

import hashlib
import os

from flask import Flask, Response, jsonify, redirect, request, send_file, url_for

app = Flask(__name__)


@app.get("/")
def index():
    return "index of the flask app\n"


@app.get("/hello/<name>")
def hello(name):
    # Werkzeug's request.path is the path within the app (PATH_INFO); script_root the mount.
    return jsonify(hello=name, path=request.script_root + request.path,
                   root_path=request.script_root,
                   url=url_for("hello", name=name),
                   external_url=url_for("hello", name=name, _external=True))


@app.get("/items/")
def items():
    return jsonify(items=["a", "b"])


@app.get("/query")
def query():
    return jsonify({key: request.args.getlist(key) for key in request.args})


@app.post("/form")
def form():
    return jsonify({key: request.form.getlist(key) for key in request.form})


@app.post("/json")
def json_body():
    data = request.get_json()
    return jsonify(received=data, total=sum(data.get("values", [])))


@app.post("/upload")
def upload():
    upload = request.files["file"]
    digest = hashlib.sha256()
    size = 0
    while chunk := upload.stream.read(1 << 16):
        digest.update(chunk)
        size += len(chunk)
    return jsonify(note=request.form["note"], filename=upload.filename,
                   content_type=upload.content_type, size=size, sha256=digest.hexdigest())


@app.get("/cookies")
def cookies():
    response = jsonify(cookies=request.cookies.to_dict())
    response.set_cookie("visited", "yes", httponly=True)
    response.set_cookie("theme", "dark", path=request.script_root or "/")
    return response


@app.get("/redirect")
def redirect_relative():
    return redirect(url_for("hello", name="redirected"))


@app.get("/redirect/absolute")
def redirect_absolute():
    return redirect(url_for("hello", name="redirected", _external=True, **{"from": "absolute"}))


@app.get("/stream")
def stream():
    def chunks():
        for number in range(5):
            yield f"chunk {number}: {'x' * 1000 * number}\n"

    return Response(chunks(), mimetype="text/plain")


@app.get("/download")
def download():
    # the file the test made; sent with wsgi.file_wrapper (scgikit: sendfile)
    return send_file(os.environ["FRAMEWORKS_DOWNLOAD"], mimetype="application/octet-stream")


@app.get("/error")
def error():
    raise RuntimeError("an app error: Flask answers its own 500 page")


@app.get("/server")
def server():
    """How the server runs this app (not compared with the test client)."""
    return jsonify(multithread=request.environ["wsgi.multithread"],
                   multiprocess=request.environ["wsgi.multiprocess"])
