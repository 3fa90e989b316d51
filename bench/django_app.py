"""The frameworks workload's Django app: GET /row reads one row of a SQLite database through
Django's database layer and answers it as JSON.

The database is the file BENCH_SQLITE names: bench/run makes it (bench/lineup.py's
make_database: one table of 100 rows) before it starts the server.  Connections are kept
(CONN_MAX_AGE None): each worker, or each thread, opens the file once, and a request costs
the query, not the open.  No middleware, no apps: the view, the database connection and the
JSON answer.

WSGI: ``django_app:application``; ASGI (Django's own handler, for uvicorn): ``django_app:asgi``.
"""

import os

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="scgikit-bench-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    USE_TZ=True,
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                           "NAME": os.environ.get("BENCH_SQLITE", "bench.sqlite3"),
                           "CONN_MAX_AGE": None}},
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def row(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, text FROM greeting WHERE id = %s", [42])
        number, text = cursor.fetchone()
    return JsonResponse({"id": number, "text": text})


urlpatterns = [path("row", row)]

application = get_wsgi_application()
asgi = get_asgi_application()
