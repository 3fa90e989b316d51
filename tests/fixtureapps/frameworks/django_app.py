"""A small single-file Django project: what tests/test_frameworks.py serves behind nginx and
compares with django.test.Client.  Every route exists in each framework's app.

No prefix setting (FORCE_SCRIPT_NAME) on purpose: the mount point comes from SCRIPT_NAME,
which scgikit sets from --script-name."""

import hashlib
import json
import os

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="scgikit-test-only",
    ALLOWED_HOSTS=["example.test", "testserver", "localhost", "127.0.0.1"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    USE_TZ=True,
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import (  # noqa: E402
    FileResponse,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect  # noqa: E402
from django.urls import get_script_prefix, path, reverse  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402


@require_GET
def index(request):
    return HttpResponse("index of the django app\n")


@require_GET
def hello(request, name):
    return JsonResponse({
        "hello": name,
        "path": request.path,
        "root_path": request.META.get("SCRIPT_NAME", ""),
        "script_prefix": get_script_prefix(),
        "url": reverse("hello", args=[name]),
        "external_url": request.build_absolute_uri(reverse("hello", args=[name])),
    })


@require_GET
def items(request):
    return JsonResponse({"items": ["a", "b"]})


@require_GET
def query(request):
    return JsonResponse({key: request.GET.getlist(key) for key in request.GET})


@require_POST
def form(request):
    return JsonResponse({key: request.POST.getlist(key) for key in request.POST})


@require_POST
def json_body(request):
    data = json.loads(request.body)
    return JsonResponse({"received": data, "total": sum(data.get("values", []))})


@require_POST
def upload(request):
    upload = request.FILES["file"]
    digest = hashlib.sha256()
    size = 0
    for chunk in upload.chunks():
        digest.update(chunk)
        size += len(chunk)
    return JsonResponse({"note": request.POST["note"], "filename": upload.name,
                         "content_type": upload.content_type, "size": size,
                         "sha256": digest.hexdigest()})


@require_GET
def cookies(request):
    response = JsonResponse({"cookies": request.COOKIES})
    response.set_cookie("visited", "yes", httponly=True)
    response.set_cookie("theme", "dark", path=request.META.get("SCRIPT_NAME") or "/")
    return response


@require_GET
def redirect_relative(request):
    return redirect("hello", name="redirected")


@require_GET
def redirect_absolute(request):
    url = request.build_absolute_uri(reverse("hello", args=["redirected"]))
    return HttpResponseRedirect(url + "?from=absolute")


@require_GET
def stream(request):
    def chunks():
        for number in range(5):
            yield f"chunk {number}: {'x' * 1000 * number}\n"

    return StreamingHttpResponse(chunks(), content_type="text/plain")


@require_GET
def download(request):
    # the file the test made; sent with wsgi.file_wrapper (scgikit: sendfile)
    return FileResponse(open(os.environ["FRAMEWORKS_DOWNLOAD"], "rb"),
                        content_type="application/octet-stream")


@require_GET
def error(request):
    raise RuntimeError("an app error: Django answers its own 500 page")


@require_GET
def server(request):
    """How the server runs this app (not compared with the test client)."""
    return JsonResponse({"multithread": request.META["wsgi.multithread"],
                         "multiprocess": request.META["wsgi.multiprocess"]})


urlpatterns = [
    path("", index),
    path("hello/<str:name>", hello, name="hello"),
    path("items/", items),
    path("query", query),
    path("form", form),
    path("json", json_body),
    path("upload", upload),
    path("cookies", cookies),
    path("redirect", redirect_relative),
    path("redirect/absolute", redirect_absolute),
    path("stream", stream),
    path("download", download),
    path("error", error),
    path("server", server),
]

application = app = get_wsgi_application()
