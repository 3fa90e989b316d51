/* scgikit._speedups: scgikit's optional C accelerator.
 *
 * parse_head, the SCGI request head parser.  scgikit.protocol uses it when it
 * imports and SCGIKIT_PURE is not set, else the pure function protocol.parse_head_pure.
 * Both give the same results because this one only handles the well-formed case itself:
 *
 *     <digits>":"CONTENT_LENGTH NUL <digits> NUL <name> NUL <value> NUL ... ","
 *
 * with every name distinct and non-empty and SCGI=1 among them, and returns None
 * where the head is still partial.  Anything else (any error, a repeated name,
 * arguments other than bytes/bytearray and an int, lengths too long for a C
 * integer) is handed, with the caller's arguments untouched, to the pure function,
 * which raises the ProtocolError (message, status) it always raises.
 *
 * wsgi_environ and Exchange, the WSGI adapter's per-request glue, used by
 * scgikit.apps.wsgi on the same choice (protocol.ACCELERATED).  The same rule: C does
 * the common case (plain dicts; a path with no "%" that starts with "/"; bytes and
 * bytearray chunks on a real socket; start_response without exc_info) and calls the
 * pure pieces setup_wsgi() gave it for the rest (split_path, merge_cookie,
 * encode_head, _send_rest, and _Exchange's own methods with an Exchange as self).
 *
 * answer_whole, WSGIAdapter.answer_whole: a request whose body came whole (most do)
 * answered without a Python frame of ours: the body file (streams.BufferedBody), the
 * environ, the app's call, its answer through the C Exchange (a FileWrapper result goes
 * to wsgi.answer_file) and the result's close(), as the pure adapter's `finally` does.
 * An Exception goes to adapter.failed(exchange, variables, exc) with its traceback,
 * which logs it and answers 500; anything else (SystemExit, KeyboardInterrupt) goes on.
 *
 * header_pairs, the ASGI scope's request headers, used by scgikit.apps.request on the
 * same choice.  C does a plain dict of exact str whose names are all ASCII and whose
 * values are all latin-1; anything else goes to request.header_pairs_pure (which
 * raises what it always raises, a UnicodeEncodeError for a character above 255), and a
 * Cookie with ", " in it to request.merge_cookie, both given by setup_headers().
 *
 * http_scope, the ASGI http scope of one request, used by scgikit.apps.asgi on the same
 * choice.  C does the common case: a plain dict of variables (every name an exact str of
 * ASCII, every value an exact str of latin-1, as header_pairs takes them; no PATH_INFO), an
 * exact empty str script_name, a plain dict state, an exact tuple (str, int) server, and a
 * target (REQUEST_URI or DOCUMENT_URI or "/") whose path before any "?" is ASCII, starts
 * with "/" and holds no "%".  It adds up ports of up to 18 ASCII digits itself; a port with
 * a character beyond ASCII (str.isdigit() takes "\xb2", which int() refuses), a longer one,
 * and everything else go, with the caller's arguments, to asgi.http_scope_pure, given with
 * asgi's SERVER_PROTOCOL table by setup_scope().  Its headers are header_pairs' (without
 * setup_headers(), every call goes to the pure function).
 *
 * accept_fd, a listener's next connection as a bare descriptor: the server's workers
 * make the socket object themselves and, unless --allow-from needs it, never ask for
 * the peer's address, which socket._accept() makes into Python objects every time.
 * accept_socket goes one step further and makes that socket object, copying a closed
 * template's fields: socket(family, type, 0, fd) would check the new descriptor with
 * a getsockname() call.  It relies on CPython's socket object layout (socket_fields),
 * which socket_layout_matches() checks on a real socket before the server uses it:
 * the type's size, and the descriptor, family, type and protocol read through the
 * socket's own methods where this code reads them.
 *
 * serve_queue, the sync worker's accept loop (Worker._serve_queue): accept, the first
 * receive, parse_head, and for a request that came whole, the answer (the adapter's
 * answer_whole, called as any callable), the worker's counts, the heartbeat slot, the
 * metrics and access log calls where they are on, and the close, request after request
 * until the listen queue is empty, without a Python frame of the server's own.  Signal
 * handlers run between requests (PyErr_CheckSignals), and the loop reads the worker's
 * stopping and drain_queue before each accept, as the pure loop does.  Anything else (a
 * partial, malformed or too large request, a failed receive or accept) is handed back
 * to the Python loop with what came, the connection still open.
 *
 * Safety: the head data is held through the buffer protocol for the whole call (a
 * bytearray cannot be resized under us), every scan is bounded by the buffer's
 * length (memchr with an explicit limit), and every object made is released on
 * every path.  Borrowed references (dict items) are taken as our own before any
 * call that can run Python code.  A send holds its chunk as a buffer, the head and
 * the socket object as references of its own (another thread may replace the
 * exchange's attributes while the GIL is released), and releases them on every path;
 * with the GIL released it touches only those C buffers and the descriptor, no
 * Python object.  Exchange is a GC type: it visits and clears all it holds.
 * header_pairs is done with each borrowed dict item before it makes the tuple that
 * could run a collection (whose finalizers could change the dict), checks again what it
 * looks up after one, and calls merge_cookie only after the loop.  http_scope checks every
 * name and value before it looks any up (in a dict of exact str only no lookup runs Python
 * code), and holds what it read as its own before it makes anything.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* At most this many decimal digits always fit a long long (10**18 - 1 < 2**63). */
#define MAX_FAST_DIGITS 18
/* The netstring length's ':' must be within the first 21 bytes, as the pure function looks. */
#define COLON_WINDOW 21
/* parse_head keeps the names it has made lately, each with its last value: the next
 * request's same name (and, often, same value) reuses the str, hash included. */
#define NAME_CACHE 128
#define CACHED_VALUE_MAX 256

/* The names the WSGI and ASGI code look up, and the ASGI scope's keys and constant
 * values (S_ the keys), made once (interned: a dict lookup of one of them is mostly a
 * pointer comparison). */
#define NAMES(X) \
    X(PATH_INFO, "PATH_INFO") X(SCRIPT_NAME, "SCRIPT_NAME") X(REQUEST_URI, "REQUEST_URI") \
    X(DOCUMENT_URI, "DOCUMENT_URI") X(SLASH, "/") X(WSGI_INPUT, "wsgi.input") \
    X(URL_SCHEME, "wsgi.url_scheme") X(HTTPS_VALUE, "https") X(HTTPS, "HTTPS") X(ON, "on") \
    X(ONE, "1") X(REQUEST_SCHEME, "REQUEST_SCHEME") \
    X(TRANSFER_ENCODING, "HTTP_TRANSFER_ENCODING") X(HTTP_LENGTH, "HTTP_CONTENT_LENGTH") \
    X(HTTP_TYPE, "HTTP_CONTENT_TYPE") X(CONTENT_TYPE, "CONTENT_TYPE") X(COOKIE, "HTTP_COOKIE") \
    X(COMMA_SPACE, ", ") X(LAST_HEAD, "last_head") X(WRITE, "write") \
    X(CONTENT_LENGTH, "CONTENT_LENGTH") X(REQUEST_METHOD, "REQUEST_METHOD") \
    X(ENCODE, "encode") X(LATIN_1, "latin-1") X(TIMEOUT, "timeout") X(APP, "app") \
    X(BASE, "base") X(SCRIPT_NAME_ATTR, "script_name") X(START_RESPONSE, "start_response") \
    X(CLOSE, "close") X(FAILED, "failed") X(STATUS_500, "500") \
    X(QUERY_STRING, "QUERY_STRING") X(SERVER_PROTOCOL, "SERVER_PROTOCOL") \
    X(REMOTE_ADDR, "REMOTE_ADDR") X(REMOTE_PORT, "REMOTE_PORT") X(SERVER_NAME, "SERVER_NAME") \
    X(SERVER_ADDR, "SERVER_ADDR") X(SERVER_PORT, "SERVER_PORT") X(EMPTY, "") X(GET, "GET") \
    X(HTTP_VALUE, "http") X(HTTP_1_1, "1.1") X(S_TYPE, "type") X(S_ASGI, "asgi") \
    X(S_VERSION, "version") X(ASGI_3_0, "3.0") X(S_SPEC_VERSION, "spec_version") \
    X(SPEC_2_4, "2.4") X(S_HTTP_VERSION, "http_version") X(S_METHOD, "method") \
    X(S_SCHEME, "scheme") X(S_PATH, "path") X(S_RAW_PATH, "raw_path") \
    X(S_QUERY_STRING, "query_string") X(S_ROOT_PATH, "root_path") X(S_HEADERS, "headers") \
    X(S_CLIENT, "client") X(S_SERVER, "server") X(S_STATE, "state") \
    X(S_EXTENSIONS, "extensions") X(S_SCGI, "scgi") X(S_VARIABLES, "variables") \
    X(S_PATHSEND, "http.response.pathsend") X(STOPPING, "stopping") \
    X(DRAIN_QUEUE, "drain_queue") X(STARTED, "started") X(HANDLED, "handled") \
    X(FAILING_SINCE, "accept_failing_since") X(RECYCLING, "recycling")
#define NAME_ENUM(id, text) N_##id,
#define NAME_TEXT(id, text) text,
enum { NAMES(NAME_ENUM) N_COUNT };
static const char *const name_texts[N_COUNT] = { NAMES(NAME_TEXT) };

typedef struct {
    PyObject *fallback;           /* protocol.parse_head_pure */
    Py_ssize_t default_max_size;  /* protocol.DEFAULT_MAX_HEADER_SIZE */
    /* From setup_wsgi(), all NULL before it: apps.wsgi's pure pieces, called for
     * whatever the C code leaves to them. */
    PyObject *environ_pure;       /* environ_pure(base, variables, body, script_name) */
    PyObject *split_path;         /* request.split_path(variables, script_name) */
    PyObject *merge_cookie;       /* request.merge_cookie(value, variables) */
    PyObject *encode_head;        /* encode_head(status, headers), raises InvalidResponse */
    PyObject *send_rest;          /* _send_rest(sock, head, data, sent, timeout) */
    PyObject *client_gone;        /* the ClientGone exception */
    PyObject *socket_type;        /* _socket.socket: what the C send may write to */
    PyObject *pure_start_response, *pure_write, *pure_sendfile;  /* _Exchange's */
    PyObject *buffered_body;      /* streams.BufferedBody, the file of a whole body */
    PyObject *file_wrapper;       /* FileWrapper: its results go to answer_file */
    PyObject *answer_file;        /* answer_file(exchange, wrapper) */
    /* The socket type socket_layout_matches() found laid out as socket_fields, or NULL. */
    PyObject *checked_socket_type;
    /* From setup_headers(), NULL before it: apps.request's pure pieces. */
    PyObject *header_pairs_pure;  /* header_pairs_pure(variables) */
    PyObject *pairs_merge_cookie; /* request.merge_cookie(value, variables) */
    /* From setup_scope(), NULL before it: apps.asgi's pure builder and its version table. */
    PyObject *http_scope_pure;    /* http_scope_pure(variables, script_name, server, state) */
    PyObject *http_versions;      /* asgi._HTTP_VERSIONS, a dict */
    /* Made by speedups_exec. */
    PyObject *exchange_type;
    PyObject *empty_bytes;
    /* The scope's keys, in order, each with None (a copy is made at its size at once, and
     * its values replaced), and its "asgi" dict. */
    PyObject *scope_template, *asgi_template;
    PyObject *content_type_name, *content_length_name;  /* b"content-type", b"content-length" */
    PyObject *names[N_COUNT];
    struct { PyObject *name, *value; } variables[NAME_CACHE];  /* see NAME_CACHE */
} speedups_state;

static speedups_state *
get_state(PyObject *module)
{
    return (speedups_state *)PyModule_GetState(module);
}

/* The value of n ASCII digits at p, or -1 if they are not all digits, are empty,
 * have a leading zero, or are too many to be added up here. */
static long long
plain_number(const char *p, Py_ssize_t n)
{
    long long value = 0;
    if (n < 1 || n > MAX_FAST_DIGITS || (n > 1 && p[0] == '0')) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }
        value = value * 10 + (p[i] - '0');
    }
    return value;
}

/* Where the cache keeps a name: its length and three of its bytes (n >= 1). */
static inline Py_ssize_t
name_slot(const char *p, Py_ssize_t n)
{
    size_t h = (size_t)n * 31u + (unsigned char)p[0] * 7u + (unsigned char)p[n - 1] * 3u
               + (unsigned char)p[n / 2];
    return (Py_ssize_t)(h % NAME_CACHE);
}

/* Whether the str s (made by PyUnicode_DecodeLatin1: one byte a character) is the n
 * bytes at p. */
static inline int
same_text(PyObject *s, const char *p, Py_ssize_t n)
{
    return PyUnicode_GET_LENGTH(s) == n && memcmp(PyUnicode_1BYTE_DATA(s), p, (size_t)n) == 0;
}

/* The str of the value at [value, value + n) of the name in `slot`, reused when it is
 * the one that name had last; a new reference, or NULL with an exception set. */
static PyObject *
cached_value(speedups_state *state, Py_ssize_t slot, const char *value, Py_ssize_t n)
{
    PyObject *last = state->variables[slot].value;
    if (last != NULL && same_text(last, value, n)) {
        return Py_NewRef(last);
    }
    PyObject *made = PyUnicode_DecodeLatin1(value, n, NULL);
    if (made != NULL) {
        Py_XSETREF(state->variables[slot].value, n <= CACHED_VALUE_MAX ? Py_NewRef(made) : NULL);
    }
    return made;
}

/* The str of the name at [p, p + n), reused from the cache or put there (which forgets
 * the value kept for the name it replaces); a new reference, or NULL with an exception
 * set.  *slot is where it is kept.  Interned: a name that is one of state->names (or a
 * constant in Python code) is then that very object, and finding it in the variables
 * is a pointer comparison, not a memcmp. */
static PyObject *
cached_name(speedups_state *state, const char *p, Py_ssize_t n, Py_ssize_t *slot)
{
    *slot = name_slot(p, n);
    PyObject *known = state->variables[*slot].name;
    if (known != NULL && same_text(known, p, n)) {
        return Py_NewRef(known);
    }
    PyObject *made = PyUnicode_DecodeLatin1(p, n, NULL);
    if (made != NULL) {
        PyUnicode_InternInPlace(&made);
        Py_XSETREF(state->variables[*slot].name, Py_NewRef(made));
        Py_CLEAR(state->variables[*slot].value);
    }
    return made;
}

/* Sets *environ and *content_length from the block [p, end) of NUL-terminated
 * names and values.  Returns 1 on success, 0 if the block needs the pure
 * function (anything unusual), -1 with an exception set (out of memory). */
static int
parse_variables(speedups_state *state, const char *p, const char *end, PyObject **environ,
                long long *content_length)
{
    int scgi_is_one = 0;
    Py_ssize_t count = 0;
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return -1;
    }
    *content_length = -1;
    while (p < end) {
        const char *name_end = memchr(p, '\0', (size_t)(end - p));
        if (name_end == NULL || name_end == p) {
            goto unusual;  /* not NUL-terminated, or an empty name */
        }
        const char *value = name_end + 1;
        const char *value_end = memchr(value, '\0', (size_t)(end - value));
        if (value_end == NULL) {
            goto unusual;  /* a name without a value */
        }
        Py_ssize_t name_len = name_end - p, value_len = value_end - value;
        if (count == 0) {
            /* SCGI: "The first request header must have the name CONTENT_LENGTH". */
            if (name_len != 14 || memcmp(p, "CONTENT_LENGTH", 14) != 0) {
                goto unusual;
            }
            *content_length = plain_number(value, value_len);
            if (*content_length < 0) {
                goto unusual;
            }
        }
        else if (name_len == 4 && memcmp(p, "SCGI", 4) == 0) {
            /* SCGI: "a header named SCGI with a value of 1 must be present". */
            scgi_is_one = value_len == 1 && value[0] == '1';
        }
        Py_ssize_t slot;
        PyObject *key = cached_name(state, p, name_len, &slot);
        if (key == NULL) {
            goto error;
        }
        PyObject *val = cached_value(state, slot, value, value_len);
        if (val == NULL) {
            Py_DECREF(key);
            goto error;
        }
        int failed = PyDict_SetItem(dict, key, val);
        Py_DECREF(key);
        Py_DECREF(val);
        if (failed) {
            goto error;
        }
        count++;
        if (PyDict_GET_SIZE(dict) != count) {
            goto unusual;  /* a repeated name: merged or refused by the pure function */
        }
        p = value_end + 1;
    }
    if (count == 0 || !scgi_is_one) {
        goto unusual;
    }
    *environ = dict;
    return 1;
unusual:
    Py_DECREF(dict);
    return 0;
error:
    Py_DECREF(dict);
    return -1;
}

/* The fast path on a held buffer: 1 with *result set (a tuple, or None for a
 * partial head), 0 for the pure function, -1 with an exception set. */
static int
parse_buffer(speedups_state *state, const char *buf, Py_ssize_t len, Py_ssize_t max_size,
             PyObject **result)
{
    if (len == 0) {
        return 0;
    }
    Py_ssize_t window = len < COLON_WINDOW ? len : COLON_WINDOW;
    const char *colon = memchr(buf, ':', (size_t)window);
    if (colon == NULL) {
        return 0;  /* partial or wrong: the pure function's checks tell which */
    }
    long long size = plain_number(buf, colon - buf);
    if (size < 0 || size > max_size) {
        return 0;
    }
    Py_ssize_t start = (colon - buf) + 1;
    /* size <= max_size <= PY_SSIZE_T_MAX and start <= 21: start + size cannot overflow
     * unless max_size is within 21 of PY_SSIZE_T_MAX; leave that to the pure function. */
    if (size > PY_SSIZE_T_MAX - start) {
        return 0;
    }
    Py_ssize_t end = start + (Py_ssize_t)size;
    if (len <= end) {
        *result = Py_NewRef(Py_None);  /* the head is not all here yet */
        return 1;
    }
    if (buf[end] != ',') {
        return 0;
    }
    PyObject *environ;
    long long content_length;
    int found = parse_variables(state, buf + start, buf + end, &environ, &content_length);
    if (found <= 0) {
        return found;
    }
    PyObject *length = PyLong_FromLongLong(content_length);
    PyObject *consumed = PyLong_FromSsize_t(end + 1);
    if (length != NULL && consumed != NULL) {
        *result = PyTuple_Pack(3, environ, length, consumed);
    }
    Py_DECREF(environ);
    Py_XDECREF(length);
    Py_XDECREF(consumed);
    return *result == NULL ? -1 : 1;
}

/* Whether a vectorcall keyword (an item of kwnames) is `name`. */
static int
is_keyword(PyObject *kwname, const char *name)
{
    return PyUnicode_Check(kwname) && PyUnicode_CompareWithASCIIString(kwname, name) == 0;
}

PyDoc_STRVAR(parse_head_doc,
"parse_head($module, /, data, max_header_size=65536)\n"
"--\n"
"\n"
"Parse the header netstring at the start of data (the C accelerator).\n"
"\n"
"The same results as scgikit.protocol.parse_head_pure, to which every\n"
"unusual case (errors included) is handed.");

static PyObject *
parse_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    speedups_state *state = get_state(module);
    PyObject *data = NULL, *max_obj = NULL;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);

    if (state->fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "scgikit._speedups.setup() was not called");
        return NULL;
    }
    /* parse_head(data), parse_head(data, max), parse_head(data, max_header_size=max):
     * any other shape is the pure function's to accept or refuse. */
    if (nargs >= 1 && nargs + nkw <= 2) {
        data = args[0];
        if (nargs == 2) {
            max_obj = args[1];
        }
        else if (nkw == 1 && is_keyword(PyTuple_GET_ITEM(kwnames, 0), "max_header_size")) {
            max_obj = args[1];
        }
        else if (nkw == 1) {
            data = NULL;
        }
    }
    Py_ssize_t max_size = state->default_max_size;
    if (max_obj != NULL) {
        if (!PyLong_CheckExact(max_obj)) {
            data = NULL;
        }
        else {
            int overflow;
            long long value = PyLong_AsLongLongAndOverflow(max_obj, &overflow);
            if (value == -1 && PyErr_Occurred()) {
                return NULL;
            }
            if (overflow || value < 0 || value > PY_SSIZE_T_MAX) {
                data = NULL;
            }
            else {
                max_size = (Py_ssize_t)value;
            }
        }
    }
    if (data != NULL && (PyBytes_CheckExact(data) || PyByteArray_CheckExact(data))) {
        Py_buffer view;
        PyObject *result = NULL;
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        int done = parse_buffer(state, (const char *)view.buf, view.len, max_size, &result);
        PyBuffer_Release(&view);
        if (done != 0) {
            return result;  /* NULL with the exception set when done < 0 */
        }
    }
    return PyObject_Vectorcall(state->fallback, args, (size_t)nargs, kwnames);
}

/* --- The WSGI environ ----------------------------------------------------------------------- */

/* (SCRIPT_NAME, PATH_INFO) into environ, as request.split_path gives them, for the
 * common case: a REQUEST_URI (else DOCUMENT_URI, else "/") of str whose path (before
 * any "?") starts with "/" and holds no "%".  Returns 1 when done, 0 when the Python
 * split_path must do it (absolute-form, percent-encoded, values not str), -1 on error. */
static int
split_path_fast(speedups_state *state, PyObject *environ, PyObject *variables,
                PyObject *script_name)
{
    PyObject *target = NULL;
    const int keys[2] = {N_REQUEST_URI, N_DOCUMENT_URI};
    for (int i = 0; i < 2 && target == NULL; i++) {
        /* `variables.get(name) or ...`: a missing or empty value moves on. */
        PyObject *value = PyDict_GetItemWithError(variables, state->names[keys[i]]);
        if (value == NULL && PyErr_Occurred()) {
            return -1;
        }
        if (value != NULL && !PyUnicode_CheckExact(value)) {
            return 0;  /* its truth, and what follows, are Python's to judge */
        }
        if (value != NULL && PyUnicode_GET_LENGTH(value) > 0) {
            target = value;
        }
    }
    if (target == NULL) {
        target = state->names[N_SLASH];
    }
    if (!PyUnicode_CheckExact(script_name)) {
        return 0;
    }
    Py_ssize_t end = PyUnicode_FindChar(target, '?', 0, PyUnicode_GET_LENGTH(target), 1);
    if (end == -2) {
        return -1;
    }
    if (end == -1) {
        end = PyUnicode_GET_LENGTH(target);
    }
    if (end == 0 || PyUnicode_READ_CHAR(target, 0) != '/') {
        return 0;  /* absolute-form target: http://host/path */
    }
    Py_ssize_t percent = PyUnicode_FindChar(target, '%', 0, end, 1);
    if (percent != -1) {
        return percent == -2 ? -1 : 0;  /* percent-decoding is Python's */
    }
    /* `path == script_name or path.startswith(script_name + "/")`: strip it. */
    Py_ssize_t start = 0, prefix = PyUnicode_GET_LENGTH(script_name);
    if (prefix > 0 && (end == prefix || (end > prefix && PyUnicode_READ_CHAR(target, prefix) == '/'))) {
        Py_ssize_t match = PyUnicode_Tailmatch(target, script_name, 0, end, -1);
        if (match < 0) {
            return -1;
        }
        start = match ? prefix : 0;
    }
    PyObject *path = PyUnicode_Substring(target, start, end);
    if (path == NULL) {
        return -1;
    }
    int failed = PyDict_SetItem(environ, state->names[N_SCRIPT_NAME], script_name) < 0
                 || PyDict_SetItem(environ, state->names[N_PATH_INFO], path) < 0;
    Py_DECREF(path);
    return failed ? -1 : 1;
}

/* `environ["SCRIPT_NAME"], environ["PATH_INFO"] = split_path(variables, script_name)`. */
static int
split_path_python(speedups_state *state, PyObject *environ, PyObject *variables,
                  PyObject *script_name)
{
    PyObject *pair = PyObject_CallFunctionObjArgs(state->split_path, variables, script_name, NULL);
    if (pair == NULL) {
        return -1;
    }
    if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_Format(PyExc_TypeError, "split_path() returned %.200R, not a pair", pair);
        Py_DECREF(pair);
        return -1;
    }
    int failed =
        PyDict_SetItem(environ, state->names[N_SCRIPT_NAME], PyTuple_GET_ITEM(pair, 0)) < 0
        || PyDict_SetItem(environ, state->names[N_PATH_INFO], PyTuple_GET_ITEM(pair, 1)) < 0;
    Py_DECREF(pair);
    return failed ? -1 : 0;
}

/* request.is_https: `variables.get("HTTPS") in ("on", "1")
 *                    or variables.get("REQUEST_SCHEME") == "https"`; -1 on error. */
static int
is_https(speedups_state *state, PyObject *variables)
{
    PyObject *https = PyDict_GetItemWithError(variables, state->names[N_HTTPS]);
    if (https == NULL && PyErr_Occurred()) {
        return -1;
    }
    if (https == NULL) {
        https = Py_None;
    }
    Py_INCREF(https);  /* a comparison may run Python code that changes variables */
    int found = PyObject_RichCompareBool(state->names[N_ON], https, Py_EQ);
    if (found == 0) {
        found = PyObject_RichCompareBool(state->names[N_ONE], https, Py_EQ);
    }
    Py_DECREF(https);
    if (found != 0) {
        return found;
    }
    PyObject *scheme = PyDict_GetItemWithError(variables, state->names[N_REQUEST_SCHEME]);
    if (scheme == NULL && PyErr_Occurred()) {
        return -1;
    }
    if (scheme == NULL) {
        scheme = Py_None;
    }
    Py_INCREF(scheme);
    PyObject *equal = PyObject_RichCompare(scheme, state->names[N_HTTPS_VALUE], Py_EQ);
    Py_DECREF(scheme);
    if (equal == NULL) {
        return -1;
    }
    found = PyObject_IsTrue(equal);
    Py_DECREF(equal);
    return found;
}

/* `del environ[name]` if name is in variables (it is then in environ too); -1 on error. */
static int
drop_if_sent(speedups_state *state, PyObject *environ, PyObject *variables, int name)
{
    int sent = PyDict_Contains(variables, state->names[name]);
    if (sent <= 0) {
        return sent;
    }
    return PyDict_DelItem(environ, state->names[name]);
}

/* `environ.setdefault("CONTENT_TYPE", environ.pop("HTTP_CONTENT_TYPE"))`. */
static int
move_content_type(speedups_state *state, PyObject *environ)
{
    PyObject *value = PyDict_GetItemWithError(environ, state->names[N_HTTP_TYPE]);
    if (value == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetObject(PyExc_KeyError, state->names[N_HTTP_TYPE]);
        }
        return -1;
    }
    Py_INCREF(value);
    int failed = PyDict_DelItem(environ, state->names[N_HTTP_TYPE]) < 0
                 || PyDict_SetDefault(environ, state->names[N_CONTENT_TYPE], value) == NULL;
    Py_DECREF(value);
    return failed ? -1 : 0;
}

/* Apache's Cookie lines joined with ", ": `environ["HTTP_COOKIE"] = merge_cookie(...)`. */
static int
merge_cookie(speedups_state *state, PyObject *environ, PyObject *variables)
{
    PyObject *cookie = PyDict_GetItemWithError(variables, state->names[N_COOKIE]);
    if (cookie == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    Py_INCREF(cookie);
    int joined = PySequence_Contains(cookie, state->names[N_COMMA_SPACE]);
    if (joined > 0) {
        PyObject *merged = PyObject_CallFunctionObjArgs(state->merge_cookie, cookie, variables,
                                                        NULL);
        joined = merged == NULL ? -1 : PyDict_SetItem(environ, state->names[N_COOKIE], merged);
        Py_XDECREF(merged);
    }
    Py_DECREF(cookie);
    return joined < 0 ? -1 : 0;
}

/* Everything after the copy, in the pure function's order (and so with its key order). */
static int
fill_environ(speedups_state *state, PyObject *environ, PyObject *variables, PyObject *body,
             PyObject *script_name)
{
    if (PyDict_Update(environ, variables) < 0
        || PyDict_SetItem(environ, state->names[N_WSGI_INPUT], body) < 0) {
        return -1;
    }
    int has_path = PyDict_Contains(variables, state->names[N_PATH_INFO]);
    if (has_path < 0) {
        return -1;
    }
    if (!has_path) {
        int done = split_path_fast(state, environ, variables, script_name);
        if (done < 0 || (done == 0 && split_path_python(state, environ, variables,
                                                        script_name) < 0)) {
            return -1;
        }
    }
    int https = is_https(state, variables);
    if (https < 0 || (https && PyDict_SetItem(environ, state->names[N_URL_SCHEME],
                                              state->names[N_HTTPS_VALUE]) < 0)) {
        return -1;
    }
    /* The body is exactly CONTENT_LENGTH bytes whatever the HTTP framing was, and
     * PEP 3333 keeps CONTENT_TYPE/LENGTH out of HTTP_*. */
    if (drop_if_sent(state, environ, variables, N_TRANSFER_ENCODING) < 0
        || drop_if_sent(state, environ, variables, N_HTTP_LENGTH) < 0) {
        return -1;
    }
    int has_type = PyDict_Contains(variables, state->names[N_HTTP_TYPE]);
    if (has_type < 0 || (has_type && move_content_type(state, environ) < 0)) {
        return -1;
    }
    return merge_cookie(state, environ, variables);
}

PyDoc_STRVAR(wsgi_environ_doc,
"wsgi_environ($module, base, variables, body, script_name, /)\n"
"--\n"
"\n"
"The WSGI environ of one request (the C accelerator).\n"
"\n"
"The same result as scgikit.apps.wsgi.environ_pure, which is called instead\n"
"when base or variables is not a dict; request.split_path and merge_cookie\n"
"do the paths and cookies this function does not handle itself.");

/* The environ of one request: C for plain dicts, environ_pure for anything else. */
static PyObject *
make_environ(speedups_state *state, PyObject *base, PyObject *variables, PyObject *body,
             PyObject *script_name)
{
    if (!PyDict_CheckExact(base) || !PyDict_CheckExact(variables)) {
        return PyObject_CallFunctionObjArgs(state->environ_pure, base, variables, body,
                                            script_name, NULL);
    }
    PyObject *environ = PyDict_Copy(base);
    if (environ != NULL && fill_environ(state, environ, variables, body, script_name) < 0) {
        Py_CLEAR(environ);
    }
    return environ;
}

static PyObject *
wsgi_environ(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    speedups_state *state = get_state(module);
    if (state->environ_pure == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "scgikit._speedups.setup_wsgi() was not called");
        return NULL;
    }
    if (nargs != 4) {  /* the pure function raises what Python raises for its arguments */
        return PyObject_Vectorcall(state->environ_pure, args, (size_t)nargs, NULL);
    }
    return make_environ(state, args[0], args[1], args[2], args[3]);
}

/* --- The ASGI request headers ------------------------------------------------------------- */

/* Whether the n bytes at p are the C string text. */
static int
ascii_is(const char *p, Py_ssize_t n, const char *text)
{
    return (size_t)n == strlen(text) && memcmp(p, text, (size_t)n) == 0;
}

/* Whether the C code can take a variable as the pure function would: an exact str name
 * of ASCII (str.lower() also lowers latin-1 letters such as "\xc0") and an exact str
 * value of latin-1 characters (the pure encode raises on any other). */
static int
plain_text(PyObject *text, int ascii)
{
    return PyUnicode_CheckExact(text)
           && (ascii ? PyUnicode_IS_ASCII(text) : PyUnicode_KIND(text) == PyUnicode_1BYTE_KIND);
}

/* `value == text` for a plain value. */
static int
value_is(PyObject *value, const char *text)
{
    return PyUnicode_IS_ASCII(value)
           && ascii_is((const char *)PyUnicode_DATA(value), PyUnicode_GET_LENGTH(value), text);
}

/* `", " in value` for a plain value (n latin-1 bytes at p). */
static int
has_comma_space(const char *p, Py_ssize_t n)
{
    const char *end = p + n, *comma;
    while ((comma = memchr(p, ',', (size_t)(end - p))) != NULL && comma + 1 < end) {
        if (comma[1] == ' ') {
            return 1;
        }
        p = comma + 1;
    }
    return 0;
}

/* `value.encode("latin-1")` for a plain value. */
static PyObject *
latin1_bytes(PyObject *value)
{
    return PyBytes_FromStringAndSize((const char *)PyUnicode_1BYTE_DATA(value),
                                     PyUnicode_GET_LENGTH(value));
}

/* `name[5:].replace("_", "-").lower().encode("latin-1")` for an ASCII name of n bytes
 * at p: b"accept-language" from "HTTP_ACCEPT_LANGUAGE". */
static PyObject *
header_name(const char *p, Py_ssize_t n)
{
    PyObject *name = PyBytes_FromStringAndSize(NULL, n - 5);
    if (name == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(name);
    for (Py_ssize_t i = 5; i < n; i++) {
        char c = p[i];
        *out++ = c == '_' ? '-' : (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    return name;
}

/* `headers.append((name, value))`, taking over both (NULL when making one failed). */
static int
append_pair(PyObject *headers, PyObject *name, PyObject *value)
{
    PyObject *pair = NULL;
    if (name != NULL && value != NULL) {
        pair = PyTuple_New(2);  /* may run a collection: the caller is done with dict items */
    }
    if (pair == NULL) {
        Py_XDECREF(name);
        Py_XDECREF(value);
        return -1;
    }
    PyTuple_SET_ITEM(pair, 0, name);
    PyTuple_SET_ITEM(pair, 1, value);
    int failed = PyList_Append(headers, pair);
    Py_DECREF(pair);
    return failed;
}

/* Whether an HTTP_ name is a request header: the body is exactly CONTENT_LENGTH bytes
 * whatever the HTTP framing was (SCGI), and the content type comes on its own. */
static int
is_header(const char *p, Py_ssize_t n)
{
    return !ascii_is(p, n, "HTTP_TRANSFER_ENCODING") && !ascii_is(p, n, "HTTP_CONTENT_LENGTH")
           && !ascii_is(p, n, "HTTP_CONTENT_TYPE");
}

/* The HTTP_* variables' pairs, in dict order: 1 when done, 0 for the pure function (a
 * variable that is not plain), -1 on error.  A Cookie value with ", " in it is left as it
 * is, and set in *cookie (a new reference) with its pair's index in *cookie_at, for
 * merge_cookie after the loop: no Python code runs between the dict's items. */
static int
add_http_headers(PyObject *headers, PyObject *variables, PyObject **cookie,
                 Py_ssize_t *cookie_at)
{
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    while (PyDict_Next(variables, &pos, &name, &value)) {
        if (!plain_text(name, 1) || !plain_text(value, 0)) {
            return 0;
        }
        const char *p = (const char *)PyUnicode_DATA(name);
        Py_ssize_t n = PyUnicode_GET_LENGTH(name);
        if (n < 5 || memcmp(p, "HTTP_", 5) != 0 || !is_header(p, n)) {
            continue;
        }
        if (*cookie == NULL && ascii_is(p, n, "HTTP_COOKIE")
            && has_comma_space((const char *)PyUnicode_1BYTE_DATA(value),
                               PyUnicode_GET_LENGTH(value))) {
            *cookie = Py_NewRef(value);
            *cookie_at = PyList_GET_SIZE(headers);
        }
        if (append_pair(headers, header_name(p, n), latin1_bytes(value)) < 0) {
            return -1;
        }
    }
    return 1;
}

/* The plain value of name, or NULL (also when missing); *odd is set when it is there but
 * not plain (a finalizer run by a collection changed the dict: the pure function's case). */
static PyObject *
plain_value(speedups_state *state, PyObject *variables, int name, int *odd)
{
    PyObject *value = PyDict_GetItemWithError(variables, state->names[name]);
    if (value != NULL && !plain_text(value, 0)) {
        *odd = 1;
        return NULL;
    }
    return value;
}

/* content-type and content-length after the headers, as the pure function adds them:
 * 1 when done, 0 for the pure function, -1 on error. */
static int
add_content_headers(speedups_state *state, PyObject *headers, PyObject *variables)
{
    int odd = 0;
    /* `variables.get("CONTENT_TYPE") or variables.get("HTTP_CONTENT_TYPE")` */
    PyObject *type = plain_value(state, variables, N_CONTENT_TYPE, &odd);
    if (!odd && (type == NULL || PyUnicode_GET_LENGTH(type) == 0) && !PyErr_Occurred()) {
        type = plain_value(state, variables, N_HTTP_TYPE, &odd);
    }
    if (PyErr_Occurred() || odd) {
        return odd ? 0 : -1;
    }
    if (type != NULL && PyUnicode_GET_LENGTH(type) > 0
        && append_pair(headers, Py_NewRef(state->content_type_name), latin1_bytes(type)) < 0) {
        return -1;
    }
    /* Looked up after that append (which may have run a collection). */
    PyObject *length = plain_value(state, variables, N_CONTENT_LENGTH, &odd);
    PyObject *method = odd ? NULL : plain_value(state, variables, N_REQUEST_METHOD, &odd);
    if (PyErr_Occurred() || odd) {
        return odd ? 0 : -1;
    }
    /* `length != "0" or variables.get("REQUEST_METHOD") in ("POST", "PUT", "PATCH")`,
     * with CONTENT_LENGTH "0" when missing. */
    int has_body = length != NULL && !value_is(length, "0");
    int may_have_body = method != NULL && (value_is(method, "POST") || value_is(method, "PUT")
                                           || value_is(method, "PATCH"));
    if (!has_body && !may_have_body) {
        return 1;
    }
    PyObject *value = length == NULL ? PyBytes_FromStringAndSize("0", 1) : latin1_bytes(length);
    return append_pair(headers, Py_NewRef(state->content_length_name), value) < 0 ? -1 : 1;
}

/* The Cookie pair at `at` made again with `merge_cookie(cookie, variables)`, encoded
 * as the pure function does (`.encode("latin-1")`, whatever merge_cookie returned). */
static int
merge_cookie_pair(speedups_state *state, PyObject *headers, Py_ssize_t at, PyObject *cookie,
                  PyObject *variables)
{
    PyObject *merged = PyObject_CallFunctionObjArgs(state->pairs_merge_cookie, cookie,
                                                    variables, NULL);
    if (merged == NULL) {
        return -1;
    }
    PyObject *value = PyObject_CallMethodOneArg(merged, state->names[N_ENCODE],
                                                state->names[N_LATIN_1]);
    Py_DECREF(merged);
    if (value == NULL) {
        return -1;
    }
    /* The list is still ours alone: the pair is there. */
    PyObject *name = Py_NewRef(PyTuple_GET_ITEM(PyList_GET_ITEM(headers, at), 0));
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(name);
        Py_DECREF(value);
        return -1;
    }
    PyTuple_SET_ITEM(pair, 0, name);
    PyTuple_SET_ITEM(pair, 1, value);
    return PyList_SetItem(headers, at, pair);  /* takes pair, drops the old one */
}

/* The pairs, or NULL: with an exception set (*fallback 0), or for the pure function
 * (*fallback 1). */
static PyObject *
build_header_pairs(speedups_state *state, PyObject *variables, int *fallback)
{
    PyObject *headers = PyList_New(0);
    if (headers == NULL) {
        return NULL;
    }
    PyObject *cookie = NULL;
    Py_ssize_t cookie_at = 0;
    int done = add_http_headers(headers, variables, &cookie, &cookie_at);
    if (done > 0) {
        done = add_content_headers(state, headers, variables);
    }
    if (done > 0 && cookie != NULL) {
        done = merge_cookie_pair(state, headers, cookie_at, cookie, variables) < 0 ? -1 : 1;
    }
    Py_XDECREF(cookie);
    if (done <= 0) {
        *fallback = done == 0;
        Py_CLEAR(headers);
    }
    return headers;
}

PyDoc_STRVAR(header_pairs_doc,
"header_pairs($module, /, variables)\n"
"--\n"
"\n"
"The request headers of an ASGI scope (the C accelerator).\n"
"\n"
"The same result as scgikit.apps.request.header_pairs_pure, which is called\n"
"instead for anything but a dict of str names of ASCII and str values of\n"
"latin-1; request.merge_cookie does a Cookie with \", \" in it.");

static PyObject *
header_pairs(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    speedups_state *state = get_state(module);
    if (state->header_pairs_pure == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "scgikit._speedups.setup_headers() was not called");
        return NULL;
    }
    if (nargs == 1 && kwnames == NULL && PyDict_CheckExact(args[0])) {
        int fallback = 0;
        PyObject *headers = build_header_pairs(state, args[0], &fallback);
        if (headers != NULL || !fallback) {
            return headers;
        }
    }
    return PyObject_Vectorcall(state->header_pairs_pure, args, (size_t)nargs, kwnames);
}

/* --- The ASGI http scope ------------------------------------------------------------------- */

/* The variables http_scope reads, each by its name's id. */
enum {
    V_REQUEST_URI, V_DOCUMENT_URI, V_QUERY_STRING, V_SERVER_PROTOCOL, V_REQUEST_METHOD, V_HTTPS,
    V_REQUEST_SCHEME, V_REMOTE_ADDR, V_REMOTE_PORT, V_SERVER_NAME, V_SERVER_ADDR, V_SERVER_PORT,
    V_COUNT
};
static const int scope_variables[V_COUNT] = {
    N_REQUEST_URI, N_DOCUMENT_URI, N_QUERY_STRING, N_SERVER_PROTOCOL, N_REQUEST_METHOD, N_HTTPS,
    N_REQUEST_SCHEME, N_REMOTE_ADDR, N_REMOTE_PORT, N_SERVER_NAME, N_SERVER_ADDR, N_SERVER_PORT,
};

/* The scope's keys, in the pure function's order. */
enum {
    K_TYPE, K_ASGI, K_HTTP_VERSION, K_METHOD, K_SCHEME, K_PATH, K_RAW_PATH, K_QUERY_STRING,
    K_ROOT_PATH, K_HEADERS, K_CLIENT, K_SERVER, K_STATE, K_EXTENSIONS, K_COUNT
};
static const int scope_keys[K_COUNT] = {
    N_S_TYPE, N_S_ASGI, N_S_HTTP_VERSION, N_S_METHOD, N_S_SCHEME, N_S_PATH, N_S_RAW_PATH,
    N_S_QUERY_STRING, N_S_ROOT_PATH, N_S_HEADERS, N_S_CLIENT, N_S_SERVER, N_S_STATE,
    N_S_EXTENSIONS,
};

/* Whether every name is an exact str of ASCII and every value an exact str of latin-1, as
 * header_pairs needs them to build the headers itself.  Then looking a name up compares
 * str with str only: no Python code runs. */
static int
all_plain(PyObject *variables)
{
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    while (PyDict_Next(variables, &pos, &name, &value)) {
        if (!plain_text(name, 1) || !plain_text(value, 0)) {
            return 0;
        }
    }
    return 1;
}

/* `int(text) if text and text.isdigit() else None` for a plain value (NULL: missing): the
 * number, -1 for None, or -2 for the pure function: a character beyond ASCII (str.isdigit()
 * takes "\xb2", which int() refuses), or more digits than are added up here (int() refuses
 * over sys.get_int_max_str_digits()).  Leading zeros are int()'s too: "007" is 7. */
static long long
port_number(PyObject *text)
{
    if (text == NULL || PyUnicode_GET_LENGTH(text) == 0) {
        return -1;
    }
    if (!PyUnicode_IS_ASCII(text)) {
        return -2;
    }
    const char *p = (const char *)PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    long long value = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }
    }
    if (n > MAX_FAST_DIGITS) {
        return -2;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        value = value * 10 + (p[i] - '0');
    }
    return value;
}

/* A new dict of n (key, value) items, in order: a copy of template (NULL: a new dict) with
 * the values set, taking them over (when making one failed, NULL with the others dropped). */
static PyObject *
dict_of(speedups_state *state, PyObject *template, const int *keys, PyObject **values, int n)
{
    PyObject *dict = NULL;
    int made = 1;
    for (int i = 0; i < n; i++) {
        made = made && values[i] != NULL;
    }
    if (made) {
        dict = template == NULL ? PyDict_New() : PyDict_Copy(template);
    }
    for (int i = 0; i < n; i++) {
        if (dict != NULL && PyDict_SetItem(dict, state->names[keys[i]], values[i]) < 0) {
            Py_CLEAR(dict);
        }
        Py_XDECREF(values[i]);
    }
    return dict;
}

/* The scope's values for a plain request, in v (the variables' values, our references):
 * 1 when done (the scope in *scope), 0 for the pure function, -1 on error. */
static int
fill_scope(speedups_state *state, PyObject *variables, PyObject *server, PyObject *lifespan,
           PyObject **v, PyObject **scope)
{
    /* `target = get("REQUEST_URI") or get("DOCUMENT_URI") or "/"`, partitioned at "?". */
    PyObject *target = state->names[N_SLASH];
    if (v[V_REQUEST_URI] != NULL && PyUnicode_GET_LENGTH(v[V_REQUEST_URI]) > 0) {
        target = v[V_REQUEST_URI];
    }
    else if (v[V_DOCUMENT_URI] != NULL && PyUnicode_GET_LENGTH(v[V_DOCUMENT_URI]) > 0) {
        target = v[V_DOCUMENT_URI];
    }
    const char *text = (const char *)PyUnicode_1BYTE_DATA(target);
    Py_ssize_t length = PyUnicode_GET_LENGTH(target);
    const char *mark = memchr(text, '?', (size_t)length);
    Py_ssize_t end = mark == NULL ? length : mark - text;
    if (end == 0 || text[0] != '/' || memchr(text, '%', (size_t)end) != NULL) {
        return 0;  /* absolute-form, or percent-encoded: raw_path and split_path's */
    }
    if (!PyUnicode_IS_ASCII(target)) {
        for (Py_ssize_t i = 0; i < end; i++) {
            if ((unsigned char)text[i] >= 0x80) {
                return 0;  /* split_path decodes it again, as UTF-8 */
            }
        }
    }
    /* The ports, by the pure rules where they are plain ASCII. */
    int has_client = v[V_REMOTE_ADDR] != NULL && PyUnicode_GET_LENGTH(v[V_REMOTE_ADDR]) > 0;
    long long client_port = has_client ? port_number(v[V_REMOTE_PORT]) : -1;
    long long server_port = port_number(v[V_SERVER_PORT]);
    if (client_port == -2 || server_port == -2) {
        return 0;
    }
    /* The headers first: the only step that runs Python code (merge_cookie) or hands on
     * (when a collection's finalizer made a variable not plain after all). */
    int fallback = 0;
    PyObject *items[K_COUNT] = {NULL};
    items[K_HEADERS] = build_header_pairs(state, variables, &fallback);
    if (items[K_HEADERS] == NULL) {
        return fallback ? 0 : -1;
    }
    items[K_TYPE] = Py_NewRef(state->names[N_HTTP_VALUE]);
    if ((items[K_ASGI] = PyDict_Copy(state->asgi_template)) == NULL) {
        goto error;
    }
    /* `_HTTP_VERSIONS.get(get("SERVER_PROTOCOL", ""), "1.1")`, the table and its value held
     * as our own: a dict given to setup_scope() could hold keys whose __eq__ is Python code
     * (which could even call setup_scope() again). */
    PyObject *protocol = v[V_SERVER_PROTOCOL] == NULL ? state->names[N_EMPTY]
                                                      : v[V_SERVER_PROTOCOL];
    PyObject *versions = Py_NewRef(state->http_versions);
    PyObject *version = PyDict_GetItemWithError(versions, protocol);
    if (version != NULL || !PyErr_Occurred()) {
        items[K_HTTP_VERSION] = Py_NewRef(version == NULL ? state->names[N_HTTP_1_1] : version);
    }
    Py_DECREF(versions);
    if (items[K_HTTP_VERSION] == NULL) {
        goto error;
    }
    PyObject *method = v[V_REQUEST_METHOD];
    items[K_METHOD] = Py_NewRef(method != NULL && PyUnicode_GET_LENGTH(method) > 0
                                ? method : state->names[N_GET]);
    /* is_https(): `get("HTTPS") in ("on", "1") or get("REQUEST_SCHEME") == "https"` */
    int https = (v[V_HTTPS] != NULL && (value_is(v[V_HTTPS], "on") || value_is(v[V_HTTPS], "1")))
                || (v[V_REQUEST_SCHEME] != NULL && value_is(v[V_REQUEST_SCHEME], "https"));
    items[K_SCHEME] = Py_NewRef(state->names[https ? N_HTTPS_VALUE : N_HTTP_VALUE]);
    if ((items[K_PATH] = PyUnicode_Substring(target, 0, end)) == NULL
        || (items[K_RAW_PATH] = PyBytes_FromStringAndSize(text, end)) == NULL) {
        goto error;
    }
    /* `query = given` when QUERY_STRING is there (even empty), else the target's. */
    if (v[V_QUERY_STRING] != NULL) {
        items[K_QUERY_STRING] = latin1_bytes(v[V_QUERY_STRING]);
    }
    else if (mark == NULL || end + 1 == length) {
        items[K_QUERY_STRING] = Py_NewRef(state->empty_bytes);
    }
    else {
        items[K_QUERY_STRING] = PyBytes_FromStringAndSize(mark + 1, length - end - 1);
    }
    if (items[K_QUERY_STRING] == NULL) {
        goto error;
    }
    items[K_ROOT_PATH] = Py_NewRef(state->names[N_EMPTY]);
    /* `(address, _port(get("REMOTE_PORT")) or 0) if address else None` */
    if (has_client) {
        PyObject *port = PyLong_FromLongLong(client_port < 0 ? 0 : client_port);
        items[K_CLIENT] = port == NULL ? NULL : PyTuple_Pack(2, v[V_REMOTE_ADDR], port);
        Py_XDECREF(port);
    }
    else {
        items[K_CLIENT] = Py_NewRef(Py_None);
    }
    if (items[K_CLIENT] == NULL) {
        goto error;
    }
    /* `(get("SERVER_NAME") or get("SERVER_ADDR") or server[0],
     *   int(port) if port and port.isdigit() else server[1])`; the tuple is the caller's. */
    PyObject *name = PyTuple_GET_ITEM(server, 0);
    if (v[V_SERVER_NAME] != NULL && PyUnicode_GET_LENGTH(v[V_SERVER_NAME]) > 0) {
        name = v[V_SERVER_NAME];
    }
    else if (v[V_SERVER_ADDR] != NULL && PyUnicode_GET_LENGTH(v[V_SERVER_ADDR]) > 0) {
        name = v[V_SERVER_ADDR];
    }
    PyObject *port = server_port < 0 ? Py_NewRef(PyTuple_GET_ITEM(server, 1))
                                     : PyLong_FromLongLong(server_port);
    items[K_SERVER] = port == NULL ? NULL : PyTuple_Pack(2, name, port);
    Py_XDECREF(port);
    if (items[K_SERVER] == NULL || (items[K_STATE] = PyDict_Copy(lifespan)) == NULL) {
        goto error;
    }
    /* `{"scgi": {"variables": variables}, "http.response.pathsend": {}}` */
    static const int scgi_keys[1] = {N_S_VARIABLES};
    static const int extension_keys[2] = {N_S_SCGI, N_S_PATHSEND};
    PyObject *scgi[1] = {Py_NewRef(variables)};
    PyObject *extensions[2] = {dict_of(state, NULL, scgi_keys, scgi, 1), PyDict_New()};
    items[K_EXTENSIONS] = dict_of(state, NULL, extension_keys, extensions, 2);
    /* Takes the items, even on error. */
    *scope = dict_of(state, state->scope_template, scope_keys, items, K_COUNT);
    return *scope == NULL ? -1 : 1;
error:
    for (int i = 0; i < K_COUNT; i++) {
        Py_XDECREF(items[i]);
    }
    return -1;
}

/* The scope, or NULL: with an exception set (*fallback 0), or for the pure function
 * (*fallback 1) when any argument or variable it reads is not of the common case. */
static PyObject *
build_scope(speedups_state *state, PyObject *variables, PyObject *script_name, PyObject *server,
            PyObject *lifespan, int *fallback)
{
    *fallback = 1;
    if (!PyDict_CheckExact(variables) || !PyUnicode_CheckExact(script_name)
        || PyUnicode_GET_LENGTH(script_name) != 0 || !PyDict_CheckExact(lifespan)
        || !PyTuple_CheckExact(server) || PyTuple_GET_SIZE(server) != 2
        || !PyUnicode_CheckExact(PyTuple_GET_ITEM(server, 0))
        || !PyLong_CheckExact(PyTuple_GET_ITEM(server, 1)) || !all_plain(variables)) {
        return NULL;
    }
    /* Looked up in a dict of str only (no Python code runs, nothing fails), and made our
     * own before anything that could run a collection. */
    if (PyDict_GetItemWithError(variables, state->names[N_PATH_INFO]) != NULL) {
        return NULL;  /* lighttpd's, taken at its word by split_path */
    }
    PyObject *v[V_COUNT];
    for (int i = 0; i < V_COUNT; i++) {
        v[i] = Py_XNewRef(PyDict_GetItemWithError(variables, state->names[scope_variables[i]]));
    }
    PyObject *scope = NULL;
    int done = PyErr_Occurred() ? -1 : fill_scope(state, variables, server, lifespan, v, &scope);
    for (int i = 0; i < V_COUNT; i++) {
        Py_XDECREF(v[i]);
    }
    *fallback = done == 0;
    return scope;
}

PyDoc_STRVAR(http_scope_doc,
"http_scope($module, variables, script_name, server, state, /)\n"
"--\n"
"\n"
"The ASGI http scope of one request (the C accelerator).\n"
"\n"
"The same result as scgikit.apps.asgi.http_scope_pure, which is called instead\n"
"for anything but plain dicts of str of latin-1, an empty script_name, a\n"
"(str, int) server and a path of ASCII without \"%\" that starts with \"/\".");

static PyObject *
http_scope(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    speedups_state *state = get_state(module);
    if (state->http_scope_pure == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "scgikit._speedups.setup_scope() was not called");
        return NULL;
    }
    if (nargs == 4 && state->header_pairs_pure != NULL) {
        int fallback = 0;
        PyObject *scope = build_scope(state, args[0], args[1], args[2], args[3], &fallback);
        if (scope != NULL || !fallback) {
            return scope;
        }
    }
    return PyObject_Vectorcall(state->http_scope_pure, args, (size_t)nargs, NULL);
}

/* --- The WSGI response exchange ------------------------------------------------------------- */

/* One request's response state, as apps.wsgi._Exchange (whose methods it calls for
 * the cases it does not handle itself: other call shapes, exc_info, chunks that are
 * not bytes or bytearray, a sock that is not a socket). */
typedef struct {
    PyObject_HEAD
    PyObject *sock;      /* the connection */
    PyObject *adapter;   /* the WSGIAdapter: its last_head is a previous response's head */
    PyObject *timeout;   /* per send call, once one cannot finish at once */
    PyObject *status;    /* the app's status; NULL or None before start_response */
    PyObject *head;      /* the encoded head not yet sent; NULL or None once sent */
    Py_ssize_t sent;     /* bytes sent so far, head included */
    char closing;        /* the connection closes once the answer is sent: its last bytes
                          * may wait in the kernel for the close (answer_whole) */
    char waited;         /* a send had to wait: the connection carries its send timeout, and
                          * the rest of the answer goes out with sends that wait */
    char wait_in_c;      /* ... and its descriptor is blocking: those sends are send_waiting's */
} Exchange;

/* Attributes are writable from Python: None and NULL (deleted) both mean "none". */
#define IS_SET(obj) ((obj) != NULL && (obj) != Py_None)

static speedups_state *
exchange_state(Exchange *self)
{
    speedups_state *state = (speedups_state *)PyType_GetModuleState(Py_TYPE(self));
    if (state->encode_head == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "scgikit._speedups.setup_wsgi() was not called");
        return NULL;
    }
    return state;
}

/* func(self, *args, **kwargs) for a vectorcall's arguments: the pure method on this object. */
static PyObject *
call_pure(PyObject *func, Exchange *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    Py_ssize_t count = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    PyObject **stack = PyMem_Malloc((size_t)(count + 1) * sizeof(PyObject *));
    if (stack == NULL) {
        return PyErr_NoMemory();
    }
    stack[0] = (PyObject *)self;
    if (count > 0) {
        memcpy(stack + 1, args, (size_t)count * sizeof(PyObject *));
    }
    PyObject *result = PyObject_Vectorcall(func, stack, (size_t)(nargs + 1), kwnames);
    PyMem_Free(stack);
    return result;
}

/* A call that never waits (MSG_DONTWAIT, accept on a non-blocking listener, close)
 * keeps the GIL: it takes a few microseconds, where letting another thread take the GIL
 * and taking it back costs two futex calls and two context switches each time a pool
 * thread is waiting for it (and a lock round even when none is).  A send of more than
 * this many bytes lets go of it all the same, for the time its copy takes. */
#define HOLD_GIL_BYTES (256 * 1024)

#ifndef MSG_MORE
#define MSG_MORE 0  /* where there is none, the last bytes go at once */
#endif

/* The bytes in iov, as far as the socket buffer takes them now: the count sent (0 when
 * it is full), or -1 with OSError (or a signal handler's exception) set.  The caller
 * holds the buffers and the socket; no Python object is touched without the GIL.
 * flags: MSG_MORE for the last bytes of an answer whose connection closes next. */
static Py_ssize_t
send_now(int fd, struct iovec *iov, int iovcnt, int flags)
{
    struct msghdr message;
    memset(&message, 0, sizeof(message));
    message.msg_iov = iov;
    message.msg_iovlen = (size_t)iovcnt;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        total += iov[i].iov_len;
    }
    for (;;) {
        Py_ssize_t sent;
        int error;
        if (total <= HOLD_GIL_BYTES) {
            sent = sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL | flags);
            error = errno;
        }
        else {
            Py_BEGIN_ALLOW_THREADS
            sent = sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL | flags);
            error = errno;
            Py_END_ALLOW_THREADS
        }
        if (sent >= 0) {
            return sent;
        }
        if (error == EAGAIN || error == EWOULDBLOCK) {
            return 0;
        }
        if (error != EINTR) {
            errno = error;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;  /* a signal handler raised: that exception goes up */
        }
    }
}

/* All of iov, with sends that wait, without the GIL: once a send of an answer had to
 * wait, its next chunks would only fill what the front end has just read, so each goes
 * out in one call that sleeps while the buffer is full (the socket blocking, its
 * SO_SNDTIMEO bounding each call).  The count sent, or -1 with the error set: the
 * timeout passing is TimeoutError, as sockets.sendall_within_timeout raises it. */
static Py_ssize_t
send_waiting(int fd, struct iovec *iov, int iovcnt, int flags)
{
    Py_ssize_t total = 0;
    while (iovcnt > 0) {
        struct msghdr message;
        memset(&message, 0, sizeof(message));
        message.msg_iov = iov;
        message.msg_iovlen = (size_t)iovcnt;
        Py_ssize_t sent;
        int error;
        Py_BEGIN_ALLOW_THREADS
        sent = sendmsg(fd, &message, MSG_NOSIGNAL | flags);
        error = errno;
        Py_END_ALLOW_THREADS
        if (sent < 0) {
            if (error == EINTR) {
                if (PyErr_CheckSignals() < 0) {
                    return -1;
                }
                continue;
            }
            if (error == EAGAIN || error == EWOULDBLOCK) {
                PyObject *timeout = PyObject_CallFunction(PyExc_TimeoutError, "is", ETIMEDOUT,
                                                          "send timed out");
                if (timeout != NULL) {
                    PyErr_SetObject(PyExc_TimeoutError, timeout);
                    Py_DECREF(timeout);
                }
                return -1;
            }
            errno = error;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        total += sent;
        while (iovcnt > 0 && (size_t)sent >= iov->iov_len) {
            sent -= (Py_ssize_t)iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + sent;
            iov->iov_len -= (size_t)sent;
        }
    }
    return total;
}

/* `except OSError as exc: raise ClientGone(str(exc)) from None`, on the error set. */
static void
raise_client_gone(speedups_state *state)
{
    if (!PyErr_ExceptionMatches(PyExc_OSError)) {
        return;
    }
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    PyObject *message = PyObject_Str(value);
    PyObject *gone = message == NULL ? NULL : PyObject_CallOneArg(state->client_gone, message);
    Py_XDECREF(message);
    if (gone == NULL) {
        Py_DECREF(value);
        return;
    }
    PyErr_SetObject((PyObject *)Py_TYPE(gone), gone);
    PyException_SetContext(gone, value);  /* steals value */
    PyException_SetCause(gone, NULL);     /* "from None" */
    Py_DECREF(gone);
}

/* The socket's descriptor when the C send can be used, -1 when the pure write must
 * do it (not a socket, or closed), -2 with an exception set. */
static int
socket_fd(speedups_state *state, PyObject *sock)
{
    if (sock == NULL || !PyObject_TypeCheck(sock, (PyTypeObject *)state->socket_type)) {
        return -1;
    }
    int fd = PyObject_AsFileDescriptor(sock);
    if (fd < 0) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError)) {
            return -2;
        }
        PyErr_Clear();  /* a closed socket's -1: the pure write says what happens */
    }
    return fd;
}

/* The pending head (if any) and data, data held as a buffer, in one sendmsg without
 * waiting (with flags); what does not fit goes to the Python send_rest, which waits up
 * to the timeout (and arms it).  After that first wait, the answer's next chunks go out
 * with send_waiting, where the descriptor is blocking (Python's send_rest otherwise).
 * 0, or -1 with the error set (OSError already turned into ClientGone). */
static int
send_head_and(speedups_state *state, Exchange *self, int fd, PyObject *data, int flags)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    /* Our own references: another thread may replace the attributes meanwhile. */
    PyObject *sock = Py_NewRef(self->sock);
    PyObject *head = IS_SET(self->head) ? Py_NewRef(self->head) : Py_NewRef(state->empty_bytes);
    Py_CLEAR(self->head);
    struct iovec iov[2];
    int count = 0;
    Py_ssize_t head_len = PyBytes_GET_SIZE(head), total = head_len + view.len;
    if (head_len > 0) {
        iov[count].iov_base = PyBytes_AS_STRING(head);
        iov[count++].iov_len = (size_t)head_len;
    }
    iov[count].iov_base = view.buf;
    iov[count++].iov_len = (size_t)view.len;
    Py_ssize_t sent = self->wait_in_c ? send_waiting(fd, iov, count, flags)
                                      : send_now(fd, iov, count, flags);
    PyBuffer_Release(&view);
    int failed = sent < 0;
    if (!failed && sent < total) {
        PyObject *timeout = self->timeout == NULL ? Py_None : self->timeout;
        PyObject *done = PyObject_CallFunction(state->send_rest, "OOOnO", sock, head, data, sent,
                                               timeout);
        failed = done == NULL;
        Py_XDECREF(done);
        if (!failed && !self->wait_in_c) {
            int mode = fcntl(fd, F_GETFL);
            self->waited = 1;
            self->wait_in_c = mode >= 0 && !(mode & O_NONBLOCK);
        }
    }
    Py_DECREF(sock);
    Py_DECREF(head);
    if (failed) {
        raise_client_gone(state);
        return -1;
    }
    self->sent += total;
    return 0;
}

/* write(data): 0, or -1 with the error set.  flags: as send_now's. */
static int
exchange_write_chunk(speedups_state *state, Exchange *self, PyObject *data, int flags)
{
    if (!IS_SET(self->head) && !self->sent) {
        PyErr_SetString(PyExc_AssertionError, "write() called before start_response()");
        return -1;
    }
    int fd = -1;
    if ((PyBytes_CheckExact(data) || PyByteArray_CheckExact(data))
        && (!IS_SET(self->head) || PyBytes_CheckExact(self->head))) {
        fd = socket_fd(state, self->sock);
        if (fd == -2) {
            return -1;
        }
    }
    if (fd >= 0) {
        return send_head_and(state, self, fd, data, flags);
    }
    PyObject *done = call_pure(state->pure_write, self, &data, 1, NULL);
    Py_XDECREF(done);
    return done == NULL ? -1 : 0;
}

static PyObject *
exchange_write(Exchange *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    speedups_state *state = exchange_state(self);
    if (state == NULL) {
        return NULL;
    }
    if (nargs != 1 || kwnames != NULL) {
        return call_pure(state->pure_write, self, args, nargs, kwnames);
    }
    if (exchange_write_chunk(state, self, args[0], 0) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
exchange_finish_response(speedups_state *state, Exchange *self, int flags)
{
    if (!IS_SET(self->head)) {
        return 0;
    }
    return exchange_write_chunk(state, self, state->empty_bytes, flags);
}

static PyObject *
exchange_finish(Exchange *self, PyObject *Py_UNUSED(ignored))
{
    speedups_state *state = exchange_state(self);
    if (state == NULL || exchange_finish_response(state, self, 0) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Whether chunk is to be written: 1, 0, or -1 on error. */
static int
wanted_chunk(PyObject *chunk)
{
    return PyBytes_CheckExact(chunk) ? PyBytes_GET_SIZE(chunk) > 0 : PyObject_IsTrue(chunk);
}

/* respond() for a list or tuple on a connection that closes next: its last chunk (or the
 * head alone, when none is left to take it) goes with MSG_MORE.  The kernel then holds
 * its last partial segment for the close, and over TCP the data and the FIN leave in one
 * segment, which the front end acknowledges once.  (A list has no close() to run in
 * between.) */
static int
respond_closing(speedups_state *state, Exchange *self, PyObject *result)
{
    Py_ssize_t index = 0;
    for (;;) {
        /* Read the size each time: the app may still hold the list and change it. */
        Py_ssize_t size = PyList_CheckExact(result) ? PyList_GET_SIZE(result)
                                                     : PyTuple_GET_SIZE(result);
        if (index >= size) {
            break;
        }
        PyObject *chunk = Py_NewRef(PyList_CheckExact(result) ? PyList_GET_ITEM(result, index)
                                                               : PyTuple_GET_ITEM(result, index));
        index++;
        int wanted = wanted_chunk(chunk);
        int failed = wanted < 0 || (wanted && exchange_write_chunk(
            state, self, chunk, index == size ? MSG_MORE : 0) < 0);
        Py_DECREF(chunk);
        if (failed) {
            return -1;
        }
    }
    return exchange_finish_response(state, self, MSG_MORE);
}

/* `for chunk in result: if chunk: self.write(chunk)`, then finish(). */
static PyObject *
exchange_respond(Exchange *self, PyObject *result)
{
    speedups_state *state = exchange_state(self);
    if (state == NULL) {
        return NULL;
    }
    if (self->closing && (PyList_CheckExact(result) || PyTuple_CheckExact(result))) {
        if (respond_closing(state, self, result) < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *chunks = PyObject_GetIter(result);
    if (chunks == NULL) {
        return NULL;
    }
    PyObject *chunk;
    int failed = 0;
    while (!failed && (chunk = PyIter_Next(chunks)) != NULL) {
        int wanted = wanted_chunk(chunk);
        failed = wanted < 0 || (wanted && exchange_write_chunk(state, self, chunk, 0) < 0);
        Py_DECREF(chunk);
    }
    Py_DECREF(chunks);
    if (failed || PyErr_Occurred() || exchange_finish_response(state, self, 0) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* `a == b` as an `if` sees it: 1, 0, or -1 on error. */
static int
equal(PyObject *a, PyObject *b)
{
    PyObject *result = PyObject_RichCompare(a, b, Py_EQ);
    if (result == NULL) {
        return -1;
    }
    int truth = PyObject_IsTrue(result);
    Py_DECREF(result);
    return truth;
}

/* The encoded head for (status, headers): the adapter's last one if they are the same
 * (most apps answer most requests with the same head), else encode_head's, which checks
 * them (InvalidResponse), stored as the adapter's last.  Sets self->head and status. */
static int
take_head(speedups_state *state, Exchange *self, PyObject *status, PyObject *headers,
          PyObject *last)
{
    int same = equal(status, PyTuple_GET_ITEM(last, 0));
    if (same > 0) {
        same = equal(headers, PyTuple_GET_ITEM(last, 1));
    }
    if (same < 0) {
        return -1;
    }
    if (same) {
        Py_XSETREF(self->head, Py_NewRef(PyTuple_GET_ITEM(last, 2)));
        Py_XSETREF(self->status, Py_NewRef(status));
        return 0;
    }
    PyObject *head = PyObject_CallFunctionObjArgs(state->encode_head, status, headers, NULL);
    if (head == NULL) {
        return -1;
    }
    Py_XSETREF(self->head, Py_NewRef(head));
    Py_XSETREF(self->status, Py_NewRef(status));
    PyObject *copy = PySequence_List(headers);
    PyObject *entry = copy == NULL ? NULL : PyTuple_Pack(3, status, copy, head);
    int failed = entry == NULL
                 || PyObject_SetAttr(self->adapter == NULL ? Py_None : self->adapter,
                                     state->names[N_LAST_HEAD], entry) < 0;
    Py_XDECREF(copy);
    Py_XDECREF(entry);
    Py_DECREF(head);
    return failed ? -1 : 0;
}

static PyObject *
exchange_start_response(Exchange *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames)
{
    speedups_state *state = exchange_state(self);
    if (state == NULL) {
        return NULL;
    }
    /* (status, headers), (status, headers, None) or exc_info=None: any other shape, and
     * a real exc_info, are the pure method's (the re-raise, the replaced head). */
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    int plain = (nargs == 2 && nkw == 0)
                || (nargs == 3 && nkw == 0 && args[2] == Py_None)
                || (nargs == 2 && nkw == 1 && is_keyword(PyTuple_GET_ITEM(kwnames, 0), "exc_info")
                    && args[2] == Py_None);
    if (!plain) {
        return call_pure(state->pure_start_response, self, args, nargs, kwnames);
    }
    if (IS_SET(self->status)) {
        PyErr_SetString(PyExc_AssertionError,
                        "start_response called a second time without exc_info");
        return NULL;
    }
    /* Read once: threads replace it whole, never change it. */
    PyObject *last = PyObject_GetAttr(self->adapter == NULL ? Py_None : self->adapter,
                                      state->names[N_LAST_HEAD]);
    if (last == NULL) {
        return NULL;
    }
    if (!PyTuple_CheckExact(last) || PyTuple_GET_SIZE(last) != 3) {
        Py_DECREF(last);
        return call_pure(state->pure_start_response, self, args, nargs, kwnames);
    }
    int failed = take_head(state, self, args[0], args[1], last);
    Py_DECREF(last);
    return failed ? NULL : PyObject_GetAttr((PyObject *)self, state->names[N_WRITE]);
}

static PyObject *
exchange_sendfile(Exchange *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    speedups_state *state = exchange_state(self);
    return state == NULL ? NULL : call_pure(state->pure_sendfile, self, args, nargs, kwnames);
}

static PyObject *
make_exchange(PyTypeObject *type, PyObject *sock, PyObject *adapter, PyObject *timeout)
{
    Exchange *self = (Exchange *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->sock = Py_NewRef(sock);
    self->adapter = Py_NewRef(adapter);
    self->timeout = Py_NewRef(timeout);
    return (PyObject *)self;
}

static PyObject *
exchange_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"sock", "adapter", "timeout", NULL};
    PyObject *sock, *adapter, *timeout;
    if (kwargs == NULL && PyTuple_GET_SIZE(args) == 3) {
        sock = PyTuple_GET_ITEM(args, 0);
        adapter = PyTuple_GET_ITEM(args, 1);
        timeout = PyTuple_GET_ITEM(args, 2);
    }
    else if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO:Exchange", keywords, &sock,
                                          &adapter, &timeout)) {
        return NULL;
    }
    return make_exchange(type, sock, adapter, timeout);
}

static int
exchange_traverse(Exchange *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->sock);
    Py_VISIT(self->adapter);
    Py_VISIT(self->timeout);
    Py_VISIT(self->status);
    Py_VISIT(self->head);
    return 0;
}

static int
exchange_clear(Exchange *self)
{
    Py_CLEAR(self->sock);
    Py_CLEAR(self->adapter);
    Py_CLEAR(self->timeout);
    Py_CLEAR(self->status);
    Py_CLEAR(self->head);
    return 0;
}

static void
exchange_dealloc(Exchange *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    exchange_clear(self);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyMethodDef exchange_methods[] = {
    {"start_response", (PyCFunction)(void (*)(void))exchange_start_response,
     METH_FASTCALL | METH_KEYWORDS, "start_response(status, headers, exc_info=None): PEP 3333."},
    {"write", (PyCFunction)(void (*)(void))exchange_write, METH_FASTCALL | METH_KEYWORDS,
     "write(data): send a body chunk, with the head before the first."},
    {"finish", (PyCFunction)exchange_finish, METH_NOARGS,
     "finish(): send the head if no body chunk took it."},
    {"respond", (PyCFunction)exchange_respond, METH_O,
     "respond(result): write each non-empty chunk of the app's result, then finish()."},
    {"sendfile", (PyCFunction)(void (*)(void))exchange_sendfile, METH_FASTCALL | METH_KEYWORDS,
     "sendfile(wrapper): the head, then the wrapped file with os.sendfile."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef exchange_members[] = {
    {"sock", T_OBJECT, offsetof(Exchange, sock), 0, NULL},
    {"adapter", T_OBJECT, offsetof(Exchange, adapter), 0, NULL},
    {"timeout", T_OBJECT, offsetof(Exchange, timeout), 0, NULL},
    {"status", T_OBJECT, offsetof(Exchange, status), 0, NULL},
    {"head", T_OBJECT, offsetof(Exchange, head), 0, NULL},
    {"sent", T_PYSSIZET, offsetof(Exchange, sent), 0, NULL},
    {"closing", T_BOOL, offsetof(Exchange, closing), 0, NULL},
    {"waited", T_BOOL, offsetof(Exchange, waited), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot exchange_slots[] = {
    {Py_tp_doc, (void *)"Exchange(sock, adapter, timeout): one request's response, as "
                "scgikit.apps.wsgi._Exchange (the C accelerator)."},
    {Py_tp_new, exchange_new},
    {Py_tp_dealloc, exchange_dealloc},
    {Py_tp_traverse, exchange_traverse},
    {Py_tp_clear, exchange_clear},
    {Py_tp_methods, exchange_methods},
    {Py_tp_members, exchange_members},
    {0, NULL},
};

static PyType_Spec exchange_spec = {
    .name = "scgikit._speedups.Exchange",
    .basicsize = sizeof(Exchange),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = exchange_slots,
};

/* --- answer_whole: the WSGI adapter's answer to a request whose body came whole --------- */

/* The exception being raised, taken out of the error indicator, with its traceback
 * (as `except Exception as exc` sees it); the indicator is then clear. */
static PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL && value != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

/* Raise exc again (the reference is stolen). */
static void
raise_again(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* getattr(obj, name, None) without making an AttributeError: 1 found, 0 not, -1 error. */
static int
optional_attr(PyObject *obj, PyObject *name, PyObject **found)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_GetOptionalAttr(obj, name, found);
#else
    return _PyObject_LookupAttr(obj, name, found);
#endif
}

/* The app's result answered, then its close() called whatever happened (a `finally`):
 * 0, or -1 with the exception set (close()'s, if it raised, its context the first). */
static int
answer_result(speedups_state *state, PyObject *exchange, PyObject *result)
{
    PyObject *done;
    if (Py_IS_TYPE(result, (PyTypeObject *)state->file_wrapper)) {
        done = PyObject_CallFunctionObjArgs(state->answer_file, exchange, result, NULL);
    }
    else {
        done = exchange_respond((Exchange *)exchange, result);
    }
    Py_XDECREF(done);
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) {
        return done == NULL ? -1 : 0;  /* no close() to call */
    }
    PyObject *pending = done == NULL ? take_exception() : NULL;
    PyObject *close = NULL;
    int found = optional_attr(result, state->names[N_CLOSE], &close);
    if (found > 0) {
        PyObject *closed = PyObject_CallNoArgs(close);
        Py_DECREF(close);
        found = closed == NULL ? -1 : 0;
        Py_XDECREF(closed);
    }
    if (found < 0) {  /* close() (or looking it up) raised: that exception goes on */
        if (pending != NULL) {
            PyObject *raised = take_exception();
            PyException_SetContext(raised, pending);  /* steals pending */
            raise_again(raised);
        }
        return -1;
    }
    if (pending != NULL) {
        raise_again(pending);
        return -1;
    }
    return 0;
}

/* The environ, the app's call and its answer; -1 with the exception set. */
static int
call_app(speedups_state *state, PyObject *adapter, PyObject *exchange, PyObject *variables,
         PyObject *body)
{
    PyObject *base = PyObject_GetAttr(adapter, state->names[N_BASE]);
    PyObject *script_name = base == NULL ? NULL
                            : PyObject_GetAttr(adapter, state->names[N_SCRIPT_NAME_ATTR]);
    if (script_name == NULL) {
        Py_XDECREF(base);
        return -1;
    }
    PyObject *environ = make_environ(state, base, variables, body, script_name);
    Py_DECREF(base);
    Py_DECREF(script_name);
    if (environ == NULL) {
        return -1;
    }
    PyObject *app = PyObject_GetAttr(adapter, state->names[N_APP]);
    PyObject *start_response = app == NULL ? NULL
                               : PyObject_GetAttr(exchange, state->names[N_START_RESPONSE]);
    PyObject *result = NULL;
    if (start_response != NULL) {
        PyObject *call[2] = {environ, start_response};
        result = PyObject_Vectorcall(app, call, 2, NULL);
    }
    Py_XDECREF(app);
    Py_XDECREF(start_response);
    Py_DECREF(environ);
    if (result == NULL) {
        return -1;
    }
    int answered = answer_result(state, exchange, result);
    Py_DECREF(result);
    return answered;
}

PyDoc_STRVAR(answer_whole_doc,
"answer_whole($module, adapter, sock, data, variables, length, start, /)\n"
"--\n"
"\n"
"WSGIAdapter.answer_whole (the C accelerator): answer a request whose body of length\n"
"bytes is all in data from start, as calling the adapter with that body as a file\n"
"does; returns (status, bytes sent).  An Exception from the app or its answer goes\n"
"to adapter.failed(exchange, variables, exc), whose result is returned.  The caller\n"
"closes sock next: the last bytes of a list or tuple result go with MSG_MORE.");

static PyObject *
answer_whole(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    speedups_state *state = get_state(module);
    if (state->buffered_body == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "scgikit._speedups.setup_wsgi() was not called");
        return NULL;
    }
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "answer_whole() takes 6 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *adapter = args[0], *sock = args[1], *data = args[2], *variables = args[3];
    Py_ssize_t length = PyLong_AsSsize_t(args[4]);
    Py_ssize_t start = length < 0 ? -1 : PyLong_AsSsize_t(args[5]);
    Py_ssize_t size = start < 0 ? -1 : PyObject_Length(data);
    if (size < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "answer_whole() needs lengths >= 0");
        }
        return NULL;
    }
    if (start > size || size - start < length) {
        PyErr_SetString(PyExc_ValueError, "answer_whole() needs the whole body in data");
        return NULL;
    }
    PyObject *prefix;
    if (length == 0) {
        prefix = Py_NewRef(state->empty_bytes);
    }
    else if (start == 0 && size == length) {
        prefix = Py_NewRef(data);
    }
    else {
        /* The body as bytes of its own: BytesIO shares a bytes object, and reading it
         * whole gives that object back, so the body is copied once.  (Given a view, it
         * copies it, then copies again on the read.) */
        Py_buffer buffer;
        if (PyObject_GetBuffer(data, &buffer, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        prefix = buffer.len - start < length ? NULL
            : PyBytes_FromStringAndSize((const char *)buffer.buf + start, length);
        PyBuffer_Release(&buffer);
        if (prefix == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "answer_whole() needs the whole body in data");
            }
            return NULL;
        }
    }
    PyObject *body = PyObject_CallOneArg(state->buffered_body, prefix);
    Py_DECREF(prefix);
    if (body == NULL) {
        return NULL;
    }
    PyObject *timeout = PyObject_GetAttr(adapter, state->names[N_TIMEOUT]);
    PyObject *exchange = timeout == NULL ? NULL
        : make_exchange((PyTypeObject *)state->exchange_type, sock, adapter, timeout);
    Py_XDECREF(timeout);
    if (exchange == NULL) {
        Py_DECREF(body);
        return NULL;
    }
    /* Nothing of the request is left unread: the caller closes the connection next. */
    ((Exchange *)exchange)->closing = 1;
    PyObject *answer = NULL;
    if (call_app(state, adapter, exchange, variables, body) == 0) {
        Exchange *done = (Exchange *)exchange;
        int truthy = IS_SET(done->status) ? PyObject_IsTrue(done->status) : 0;
        if (truthy >= 0) {
            PyObject *status = truthy ? done->status : state->names[N_STATUS_500];
            answer = Py_BuildValue("(On)", status, done->sent);
        }
    }
    else if (PyErr_ExceptionMatches(PyExc_Exception)) {
        PyObject *exc = take_exception();
        PyObject *call[4] = {adapter, exchange, variables, exc};
        answer = PyObject_VectorcallMethod(state->names[N_FAILED], call, 4, NULL);
        Py_DECREF(exc);
    }
    Py_DECREF(exchange);
    Py_DECREF(body);
    return answer;
}

PyDoc_STRVAR(setup_doc,
"setup($module, fallback, default_max_header_size, /)\n"
"--\n"
"\n"
"Give parse_head the pure function it hands unusual cases to, and its default limit.");

static PyObject *
setup(PyObject *module, PyObject *args)
{
    speedups_state *state = get_state(module);
    PyObject *fallback;
    Py_ssize_t default_max_size;
    if (!PyArg_ParseTuple(args, "On:setup", &fallback, &default_max_size)) {
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "setup() needs a callable fallback");
        return NULL;
    }
    if (default_max_size < 0) {
        PyErr_SetString(PyExc_ValueError, "setup() needs a default_max_header_size >= 0");
        return NULL;
    }
    Py_XSETREF(state->fallback, Py_NewRef(fallback));
    state->default_max_size = default_max_size;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(setup_wsgi_doc,
"setup_wsgi($module, /, *, environ_pure, split_path, merge_cookie, encode_head,\n"
"           send_rest, client_gone, pure_exchange, socket_type, buffered_body,\n"
"           file_wrapper, answer_file)\n"
"--\n"
"\n"
"Give wsgi_environ, Exchange and answer_whole the pure pieces of scgikit.apps.wsgi\n"
"they hand cases to.");

static PyObject *
setup_wsgi(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"environ_pure", "split_path", "merge_cookie", "encode_head",
                               "send_rest", "client_gone", "pure_exchange", "socket_type",
                               "buffered_body", "file_wrapper", "answer_file", NULL};
    speedups_state *state = get_state(module);
    PyObject *given[11];
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$OOOOOOOOOOO:setup_wsgi", keywords,
                                     &given[0], &given[1], &given[2], &given[3], &given[4],
                                     &given[5], &given[6], &given[7], &given[8], &given[9],
                                     &given[10])) {
        return NULL;
    }
    if (kwargs == NULL || PyDict_GET_SIZE(kwargs) != 11) {
        PyErr_SetString(PyExc_TypeError, "setup_wsgi() needs every piece, by keyword");
        return NULL;
    }
    for (int i = 0; i < 11; i++) {
        if (!PyCallable_Check(given[i])) {
            PyErr_Format(PyExc_TypeError, "setup_wsgi() needs callables, not %.200R", given[i]);
            return NULL;
        }
    }
    if (!PyType_Check(given[7]) || !PyType_Check(given[6]) || !PyType_Check(given[8])
        || !PyType_Check(given[9])) {
        PyErr_SetString(PyExc_TypeError, "setup_wsgi() needs classes for pure_exchange, "
                                         "socket_type, buffered_body and file_wrapper");
        return NULL;
    }
    /* _Exchange's methods, called with an Exchange as self: they only use its attributes. */
    PyObject *methods[3] = {NULL, NULL, NULL};
    const char *method_names[3] = {"start_response", "write", "sendfile"};
    for (int i = 0; i < 3; i++) {
        methods[i] = PyObject_GetAttrString(given[6], method_names[i]);
        if (methods[i] == NULL) {
            Py_XDECREF(methods[0]);
            Py_XDECREF(methods[1]);
            return NULL;
        }
    }
    Py_XSETREF(state->environ_pure, Py_NewRef(given[0]));
    Py_XSETREF(state->split_path, Py_NewRef(given[1]));
    Py_XSETREF(state->merge_cookie, Py_NewRef(given[2]));
    Py_XSETREF(state->encode_head, Py_NewRef(given[3]));
    Py_XSETREF(state->send_rest, Py_NewRef(given[4]));
    Py_XSETREF(state->client_gone, Py_NewRef(given[5]));
    Py_XSETREF(state->socket_type, Py_NewRef(given[7]));
    Py_XSETREF(state->buffered_body, Py_NewRef(given[8]));
    Py_XSETREF(state->file_wrapper, Py_NewRef(given[9]));
    Py_XSETREF(state->answer_file, Py_NewRef(given[10]));
    Py_XSETREF(state->pure_start_response, methods[0]);
    Py_XSETREF(state->pure_write, methods[1]);
    Py_XSETREF(state->pure_sendfile, methods[2]);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(setup_headers_doc,
"setup_headers($module, /, *, header_pairs_pure, merge_cookie)\n"
"--\n"
"\n"
"Give header_pairs the pure pieces of scgikit.apps.request it hands cases to.");

static PyObject *
setup_headers(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"header_pairs_pure", "merge_cookie", NULL};
    speedups_state *state = get_state(module);
    PyObject *pure = NULL, *merge = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$OO:setup_headers", keywords, &pure,
                                     &merge)) {
        return NULL;
    }
    if (pure == NULL || merge == NULL || !PyCallable_Check(pure) || !PyCallable_Check(merge)) {
        PyErr_SetString(PyExc_TypeError, "setup_headers() needs both callables, by keyword");
        return NULL;
    }
    Py_XSETREF(state->header_pairs_pure, Py_NewRef(pure));
    Py_XSETREF(state->pairs_merge_cookie, Py_NewRef(merge));
    Py_RETURN_NONE;
}

PyDoc_STRVAR(setup_scope_doc,
"setup_scope($module, /, *, http_scope_pure, http_versions)\n"
"--\n"
"\n"
"Give http_scope the pure builder of scgikit.apps.asgi it hands cases to, and the\n"
"SERVER_PROTOCOL table (a dict) that builder reads.");

static PyObject *
setup_scope(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"http_scope_pure", "http_versions", NULL};
    speedups_state *state = get_state(module);
    PyObject *pure = NULL, *versions = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$OO:setup_scope", keywords, &pure,
                                     &versions)) {
        return NULL;
    }
    if (pure == NULL || versions == NULL || !PyCallable_Check(pure)
        || !PyDict_CheckExact(versions)) {
        PyErr_SetString(PyExc_TypeError, "setup_scope() needs a callable http_scope_pure and "
                                         "a dict http_versions, by keyword");
        return NULL;
    }
    Py_XSETREF(state->http_scope_pure, Py_NewRef(pure));
    Py_XSETREF(state->http_versions, Py_NewRef(versions));
    Py_RETURN_NONE;
}

/* --- accept_fd ------------------------------------------------------------------------------ */

PyDoc_STRVAR(accept_fd_doc,
"accept_fd($module, listener, /)\n"
"--\n"
"\n"
"accept4() on the listening descriptor listener, with SOCK_CLOEXEC: the new\n"
"connection's descriptor, or the OSError accept() raises (BlockingIOError when none\n"
"is waiting).  Retried on EINTR unless a signal handler raises.");

/* A listening descriptor given as an int: -1 with an exception set where it is not one. */
static int
listener_fd(PyObject *listener)
{
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(listener, &overflow);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow || value < 0 || value > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "accept needs a listening descriptor");
        return -1;
    }
    return (int)value;
}

/* accept4(listener) with SOCK_CLOEXEC, again on EINTR once the signal handlers have run
 * (PEP 475): the new descriptor; -1 with errno set where accept failed; -2 with an
 * exception set where a handler raised. */
static int
accept_retrying(int listener)
{
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0 || errno != EINTR) {
            return fd;
        }
        if (PyErr_CheckSignals() < 0) {
            return -2;
        }
    }
}

static PyObject *
accept_fd(PyObject *module, PyObject *listener)
{
    int value = listener_fd(listener);
    if (value < 0) {
        return NULL;
    }
    int fd = accept_retrying(value);
    if (fd < 0) {
        return fd == -2 ? NULL : PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(fd);
}

/* --- accept_socket: the connection as a socket object, without socket()'s checks --------- */

/* CPython's socket object as Modules/socketmodule.h lays it out on POSIX (3.7 to 3.13).
 * socket_layout_matches() checks this against real sockets at import; where it does not
 * hold, the server uses accept_fd and socket() instead. */
typedef struct {
    PyObject_HEAD
    int sock_fd;
    int sock_family;
    int sock_type;
    int sock_proto;
    PyObject *(*errorhandler)(void);
    int64_t sock_timeout;
} socket_fields;

PyDoc_STRVAR(socket_layout_matches_doc,
"socket_layout_matches($module, sample, /)\n"
"--\n"
"\n"
"Whether accept_socket can make socket objects like sample (an open _socket.socket):\n"
"its type's size and fields where this module expects them.");

static PyObject *
socket_layout_matches(PyObject *module, PyObject *sample)
{
    PyTypeObject *type = Py_TYPE(sample);
    if (type->tp_basicsize != (Py_ssize_t)sizeof(socket_fields) || type->tp_itemsize != 0
        || type->tp_dictoffset != 0 || type->tp_weaklistoffset != 0) {
        Py_RETURN_FALSE;
    }
    static const char *names[3] = {"family", "type", "proto"};
    socket_fields *fields = (socket_fields *)sample;
    long expected[4] = {fields->sock_fd, fields->sock_family, fields->sock_type,
                        fields->sock_proto};
    for (int i = 0; i < 4; i++) {
        PyObject *value = i == 0 ? PyObject_CallMethod(sample, "fileno", NULL)
                                 : PyObject_GetAttrString(sample, names[i - 1]);
        if (value == NULL) {
            return NULL;
        }
        long got = PyLong_AsLong(value);
        Py_DECREF(value);
        if (got == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (got != expected[i]) {
            Py_RETURN_FALSE;
        }
    }
    if (fields->sock_fd < 0) {
        Py_RETURN_FALSE;
    }
    Py_XSETREF(get_state(module)->checked_socket_type, Py_NewRef((PyObject *)type));
    Py_RETURN_TRUE;
}

/* The socket's descriptor, when it is of the type socket_layout_matches() accepted:
 * -1 with TypeError set otherwise.  (A closed socket's is -1 with no error set.) */
static int
checked_socket_fd(PyObject *module, PyObject *sock, const char *name)
{
    if ((PyObject *)Py_TYPE(sock) != get_state(module)->checked_socket_type) {
        PyErr_Format(PyExc_TypeError, "%s() needs a socket of a type that "
                                      "socket_layout_matches() accepted", name);
        return -1;
    }
    return ((socket_fields *)sock)->sock_fd;
}

/* A new socket object of template's type with template's fields, the descriptor fd its
 * own (closed if the object cannot be made: NULL with an exception set then). */
static PyObject *
socket_like(PyObject *template, int fd)
{
    PyTypeObject *type = Py_TYPE(template);
    socket_fields *made = (socket_fields *)type->tp_alloc(type, 0);
    if (made == NULL) {
        close(fd);
        return NULL;
    }
    socket_fields *fields = (socket_fields *)template;
    made->sock_fd = fd;
    made->sock_family = fields->sock_family;
    made->sock_type = fields->sock_type;
    made->sock_proto = fields->sock_proto;
    made->errorhandler = fields->errorhandler;
    made->sock_timeout = fields->sock_timeout;
    return (PyObject *)made;
}

/* Close a socket object of the checked type as socket.close() does, keeping the GIL:
 * 0, or -1 with OSError set. */
static int
close_socket(PyObject *sock)
{
    int fd = ((socket_fields *)sock)->sock_fd;
    if (fd < 0) {
        return 0;  /* closed already, as socket.close() allows */
    }
    ((socket_fields *)sock)->sock_fd = -1;
    if (close(fd) < 0 && errno != ECONNRESET && errno != EINTR) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(accept_socket_doc,
"accept_socket($module, listener, template, /)\n"
"--\n"
"\n"
"accept_fd(listener) as a socket object: a new object of template's type with\n"
"template's family, type, protocol and timeout (template: a socket made for this, and\n"
"closed), the accepted descriptor its own; None when no connection is waiting (where\n"
"accept_fd raises BlockingIOError, whose message alone costs a strerror() and a\n"
"locale decoding: an accept loop meets it once per pass).  socket(family, type, 0, fd)\n"
"would check the descriptor with a getsockname() call, which one just accepted needs\n"
"no more than a socket.accept() result does.  Only where socket_layout_matches().");

static PyObject *
accept_socket(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "accept_socket() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (checked_socket_fd(module, args[1], "accept_socket") < 0 && PyErr_Occurred()) {
        return NULL;  /* the template is not of the checked type */
    }
    int listener = listener_fd(args[0]);
    if (listener < 0) {
        return NULL;
    }
    int fd = accept_retrying(listener);
    if (fd == -2) {
        return NULL;
    }
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            Py_RETURN_NONE;
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return socket_like(args[1], fd);
}

/* recv(fd, size, flags | MSG_DONTWAIT) as a new bytes object (b"" at the end), again
 * after a signal's handlers have run: NULL with OSError set where recv failed, or with
 * what a handler raised. */
static PyObject *
receive_bytes(int fd, Py_ssize_t size, int flags)
{
    PyObject *data = PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL) {
        return NULL;
    }
    ssize_t got;
    for (;;) {
        got = recv(fd, PyBytes_AS_STRING(data), (size_t)size, flags | MSG_DONTWAIT);
        if (got >= 0 || errno != EINTR) {
            break;
        }
        if (PyErr_CheckSignals() < 0) {
            Py_DECREF(data);
            return NULL;
        }
    }
    if (got < 0) {
        PyErr_SetFromErrno(PyExc_OSError);  /* before the free, which may change errno */
        Py_DECREF(data);
        return NULL;
    }
    if (got != size && _PyBytes_Resize(&data, got) < 0) {
        return NULL;
    }
    return data;
}

PyDoc_STRVAR(recv_now_doc,
"recv_now($module, sock, size, flags, /)\n"
"--\n"
"\n"
"sock.recv(size, flags | MSG_DONTWAIT): what has arrived, up to size bytes (b'' at the\n"
"end), or BlockingIOError when nothing has.  It never waits, so it keeps the GIL.\n"
"Only on sockets of the type socket_layout_matches() accepted.");

static PyObject *
recv_now(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "recv_now() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    int fd = checked_socket_fd(module, args[0], "recv_now");
    if (fd < 0 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffersize in recv_now");
        return NULL;
    }
    long flags = PyLong_AsLong(args[2]);
    if (flags == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (flags < INT_MIN || flags > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "recv_now() flags out of range");
        return NULL;
    }
    return receive_bytes(fd, size, (int)flags);
}

PyDoc_STRVAR(close_now_doc,
"close_now($module, sock, /)\n"
"--\n"
"\n"
"sock.close(), keeping the GIL (closing a socket without SO_LINGER never waits).\n"
"Only on sockets of the type socket_layout_matches() accepted.");

static PyObject *
close_now(PyObject *module, PyObject *sock)
{
    if (checked_socket_fd(module, sock, "close_now") < 0 && PyErr_Occurred()) {
        return NULL;
    }
    return close_socket(sock) < 0 ? NULL : Py_NewRef(Py_None);
}

/* --- serve_queue: the sync worker's accept loop ------------------------------------------ */

/* time.monotonic(), computed as CPython does from clock_gettime(CLOCK_MONOTONIC). */
static double
monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec) / 1e9;
}

/* bool(getattr(obj, name)): 1, 0, or -1 with an exception set. */
static int
attr_is_true(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        return -1;
    }
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

/* obj.<name> += 1 on a count: the new count, or -1 with an exception set. */
static Py_ssize_t
count_up(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        return -1;
    }
    Py_ssize_t count = PyLong_AsSsize_t(value);
    Py_DECREF(value);
    if (count < 0 || count == PY_SSIZE_T_MAX) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_ValueError, "a worker's count out of range: %zd", count);
        }
        return -1;
    }
    value = PyLong_FromSsize_t(++count);
    if (value == NULL) {
        return -1;
    }
    int set = PyObject_SetAttr(obj, name, value);
    Py_DECREF(value);
    return set < 0 ? -1 : count;
}

/* A connection given up on because of an exception: closed, the exception kept. */
static void
close_on_error(PyObject *sock)
{
    PyObject *pending = take_exception();
    if (close_socket(sock) < 0) {
        PyErr_Clear();
    }
    raise_again(pending);
}

/* What serve_queue's loop needs for each request. */
typedef struct {
    speedups_state *state;
    PyObject *worker, *answer, *record, *log_access, *model;
    double *slot;
    Py_ssize_t max_requests;
} serving;

/* One whole request (parsed: its head parsed) answered, counted, recorded, logged and
 * its connection closed, as the pure loop does it: 0, or -1 with an exception set. */
static int
serve_one(serving *how, PyObject *conn, PyObject *data, PyObject *parsed, double accepted)
{
    PyObject **names = how->state->names;
    PyObject *variables = PyTuple_GET_ITEM(parsed, 0);
    PyObject *length = PyTuple_GET_ITEM(parsed, 1), *start = PyTuple_GET_ITEM(parsed, 2);
    *how->slot = accepted;
    /* _count_start: the request that reaches --max-requests is the last one taken. */
    Py_ssize_t started = count_up(how->worker, names[N_STARTED]);
    int stopping = started < 0 ? -1
                   : started == how->max_requests ? attr_is_true(how->worker, names[N_STOPPING])
                   : 1;
    if (stopping == 0
        && (PyObject_SetAttr(how->worker, names[N_STOPPING], Py_True) < 0
            || PyObject_SetAttr(how->worker, names[N_DRAIN_QUEUE], Py_False) < 0)) {
        stopping = -1;
    }
    PyObject *answer = NULL;
    if (stopping >= 0) {
        PyObject *call[5] = {conn, data, variables, length, start};
        answer = PyObject_Vectorcall(how->answer, call, 5, NULL);
        *how->slot = 0.0;
        PyObject *pending = answer == NULL ? take_exception() : NULL;
        if (count_up(how->worker, names[N_HANDLED]) < 0) {  /* as in a `finally` */
            Py_CLEAR(answer);
            if (pending != NULL) {
                PyErr_Clear();
            }
        }
        if (pending != NULL) {
            raise_again(pending);
        }
    }
    else {
        *how->slot = 0.0;
    }
    if (answer != NULL && !(PyTuple_CheckExact(answer) && PyTuple_GET_SIZE(answer) == 2)) {
        PyErr_SetString(PyExc_TypeError, "answer_whole() must return (status, bytes sent)");
        Py_CLEAR(answer);
    }
    if (answer == NULL) {
        close_on_error(conn);
        return -1;
    }
    PyObject *status = PyTuple_GET_ITEM(answer, 0), *sent = PyTuple_GET_ITEM(answer, 1);
    int failed = 0;
    if (how->record != NULL || how->log_access != NULL) {
        PyObject *when = PyFloat_FromDouble(accepted);
        PyObject *done = NULL;
        if (when != NULL && how->record != NULL) {
            PyObject *call[4] = {status, sent, length, when};
            done = PyObject_Vectorcall(how->record, call, 4, NULL);
            failed = done == NULL;
            Py_XDECREF(done);
        }
        if (when != NULL && !failed && how->log_access != NULL) {
            PyObject *call[5] = {variables, status, sent, when, how->model};
            done = PyObject_Vectorcall(how->log_access, call, 5, NULL);
            failed = done == NULL;
            Py_XDECREF(done);
        }
        failed = failed || when == NULL;
        Py_XDECREF(when);
    }
    Py_DECREF(answer);
    if (failed) {
        close_on_error(conn);
        return -1;
    }
    return close_socket(conn);
}

/* (conn, what, accepted): a connection for the Python loop to go on with. */
static PyObject *
hand_over(PyObject *conn, PyObject *what, double accepted)
{
    PyObject *when = PyFloat_FromDouble(accepted);
    PyObject *left = when == NULL ? NULL : PyTuple_Pack(3, conn, what, when);
    Py_XDECREF(when);
    if (left == NULL) {
        close_on_error(conn);
    }
    return left;
}

/* One connection of a listen queue, received and parsed (next_connection's). */
typedef struct {
    PyObject *conn, *data;  /* new references */
    PyObject *parsed;       /* parse_head's result, a new reference, or NULL (it raised) */
    double accepted;
    Py_ssize_t got;         /* the bytes received */
    Py_ssize_t length;      /* the body's, or -1 where no head was parsed */
    Py_ssize_t start;       /* where the body begins, or -1 */
} taken;

static void
drop_taken(taken *next)
{
    Py_XDECREF(next->parsed);
    Py_DECREF(next->data);
    Py_DECREF(next->conn);
}

/* What a queue loop is given once: serve_queue's and take_queue's first arguments. */
typedef struct {
    PyObject *module, *worker, *template, *max_header;
    int listener, flags;
    Py_ssize_t size;
    Py_ssize_t limit;   /* the most body bytes of a request the loop handles itself */
    int failing;        /* worker.accept_failing_since is not None */
    int until_recycled; /* the loop also ends once worker.recycling is set */
} queue;

/* The loop's checks before each accept: 0 to go on, 1 to end (the worker stops taking), -1
 * with an exception set. */
static int
queue_ends(speedups_state *state, queue *q)
{
    if (PyErr_CheckSignals() < 0) {
        return -1;
    }
    int stopping = attr_is_true(q->worker, state->names[N_STOPPING]);
    if (stopping > 0) {
        stopping = attr_is_true(q->worker, state->names[N_DRAIN_QUEUE]);
        stopping = stopping < 0 ? -1 : !stopping;
    }
    if (stopping == 0 && q->until_recycled) {
        stopping = attr_is_true(q->worker, state->names[N_RECYCLING]);
    }
    return stopping;
}

/* The next connection of the queue, its first receive and its head parsed: 1 with *next
 * set; 0 with *left set where the loop ends (None: the queue is empty, or the worker stops
 * taking; the OSError of an accept that failed; (conn, OSError, accepted) where the first
 * receive failed); -1 with an exception set (no memory, or a signal handler raised). */
static int
next_connection(speedups_state *state, queue *q, taken *next, PyObject **left)
{
    int fd;
    for (;;) {
        int ends = queue_ends(state, q);
        if (ends != 0) {
            *left = ends > 0 ? Py_NewRef(Py_None) : NULL;
            return ends > 0 ? 0 : -1;
        }
        fd = accept4(q->listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0 || errno != EINTR) {
            break;  /* on EINTR the handlers run at the top, then accept again (PEP 475) */
        }
    }
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *left = Py_NewRef(Py_None);
        }
        else {
            PyErr_SetFromErrno(PyExc_OSError);
            *left = take_exception();
        }
        return 0;
    }
    next->accepted = monotonic_now();
    next->conn = socket_like(q->template, fd);
    if (next->conn == NULL) {
        return -1;
    }
    /* Python's loop sets accept_failing_since to None after an accept: only needed here
     * while it is not None. */
    if (q->failing
        && PyObject_SetAttr(q->worker, state->names[N_FAILING_SINCE], Py_None) < 0) {
        close_on_error(next->conn);
        Py_DECREF(next->conn);
        return -1;
    }
    q->failing = 0;
    next->data = receive_bytes(fd, q->size, q->flags);
    if (next->data == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_OSError)) {  /* no memory, or a handler raised */
            close_on_error(next->conn);
            Py_DECREF(next->conn);
            return -1;
        }
        PyObject *exc = take_exception();  /* the receive failed */
        *left = hand_over(next->conn, exc, next->accepted);
        Py_DECREF(exc);
        Py_DECREF(next->conn);
        return *left == NULL ? -1 : 0;
    }
    next->got = PyBytes_GET_SIZE(next->data);
    PyObject *head_args[2] = {next->data, q->max_header};
    next->parsed = parse_head(q->module, head_args, 2, NULL);
    if (next->parsed == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            close_on_error(next->conn);
            Py_DECREF(next->data);
            Py_DECREF(next->conn);
            return -1;
        }
        PyErr_Clear();  /* the Python loop meets it again, and answers it */
    }
    next->length = next->start = -1;
    if (next->parsed != NULL && PyTuple_CheckExact(next->parsed)
        && PyTuple_GET_SIZE(next->parsed) == 3) {
        Py_ssize_t length = PyLong_AsSsize_t(PyTuple_GET_ITEM(next->parsed, 1));
        Py_ssize_t start = length < 0 ? -1
                           : PyLong_AsSsize_t(PyTuple_GET_ITEM(next->parsed, 2));
        PyErr_Clear();  /* not a size here: the Python loop's to judge */
        if (start >= 0 && start <= next->got) {
            next->length = length;
            next->start = start;
        }
    }
    return 1;
}

/* A queue loop's nargs arguments (`expected` of them), of which the queue's own from args[0]
 * (the worker) to args[6] (limit): 0, or -1 with an exception set. */
static int
queue_of(PyObject *module, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t expected,
         const char *name, queue *q)
{
    speedups_state *state = get_state(module);
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, expected,
                     nargs);
        return -1;
    }
    if (checked_socket_fd(module, args[2], name) < 0 && PyErr_Occurred()) {
        return -1;  /* the template is not of the checked type */
    }
    long listener = PyLong_AsLong(args[1]);
    long flags = listener == -1 && PyErr_Occurred() ? -1 : PyLong_AsLong(args[3]);
    Py_ssize_t size = flags == -1 && PyErr_Occurred() ? -1 : PyLong_AsSsize_t(args[4]);
    Py_ssize_t limit = size == -1 && PyErr_Occurred() ? -1 : PyLong_AsSsize_t(args[6]);
    if (PyErr_Occurred()) {
        return -1;
    }
    if (listener < 0 || listener > INT_MAX || flags < INT_MIN || flags > INT_MAX || size < 1
        || limit < 0 || !PyLong_CheckExact(args[5])) {
        PyErr_Format(PyExc_ValueError, "%s() arguments out of range", name);
        return -1;
    }
    PyObject *since = PyObject_GetAttr(args[0], state->names[N_FAILING_SINCE]);
    if (since == NULL) {
        return -1;
    }
    *q = (queue){
        .module = module, .worker = args[0], .template = args[2], .max_header = args[5],
        .listener = (int)listener, .flags = (int)flags, .size = size, .limit = limit,
        .failing = !Py_IsNone(since),
    };
    Py_DECREF(since);
    return 0;
}

PyDoc_STRVAR(serve_queue_doc,
"serve_queue($module, worker, listener, template, flags, size, max_header_size, limit,\n"
"            max_requests, slots, slot, answer, record, log_access, model, /)\n"
"--\n"
"\n"
"Worker._serve_queue's loop (the sync model's hot path) in C: accept from the\n"
"descriptor listener (a socket made like accept_socket's, from template), receive up\n"
"to size bytes with flags, parse the head, and answer a request that came whole (its\n"
"body at most limit bytes) with answer(conn, data, variables, length, start) -> (status,\n"
"sent); count it into worker.started (the one that reaches max_requests, if not 0,\n"
"sets worker.stopping and clears worker.drain_queue) and worker.handled, keep\n"
"slots[slot] (a memoryview of doubles) at the time it was accepted while it runs, call\n"
"record(status, sent, length, accepted) and log_access(variables, status, sent,\n"
"accepted, model) where they are not None, and close it.  Signal handlers run between\n"
"requests; the loop ends when worker.stopping is set and worker.drain_queue is not.\n"
"\n"
"Returns None when the queue is empty or the loop ends; the OSError of an accept that\n"
"failed; (conn, data, accepted) for any other request (a partial, refused or\n"
"malformed one, or nothing sent), and (conn, OSError, accepted) where the first\n"
"receive failed (BlockingIOError: nothing has come yet).  Raises what the answer,\n"
"record or log_access raised, the connection closed.");

static PyObject *
serve_queue(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    speedups_state *state = get_state(module);
    queue q;
    if (queue_of(module, args, nargs, 14, "serve_queue", &q) < 0) {
        return NULL;
    }
    Py_ssize_t max_requests = PyLong_AsSsize_t(args[7]);
    Py_ssize_t slot = max_requests == -1 && PyErr_Occurred() ? -1 : PyLong_AsSsize_t(args[9]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (max_requests < 0) {
        PyErr_SetString(PyExc_ValueError, "serve_queue() arguments out of range");
        return NULL;
    }
    Py_buffer slots;
    if (PyObject_GetBuffer(args[8], &slots, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_ND) < 0) {
        return NULL;
    }
    const char *format = slots.format == NULL ? "B" : slots.format;
    if ((strcmp(format, "d") != 0 && strcmp(format, "@d") != 0)
        || slots.itemsize != (Py_ssize_t)sizeof(double) || slot < 0
        || slot >= slots.len / slots.itemsize) {
        PyBuffer_Release(&slots);
        PyErr_SetString(PyExc_ValueError, "serve_queue() needs slots[slot] of doubles");
        return NULL;
    }
    serving how = {
        .state = state, .worker = args[0], .answer = args[10],
        .record = Py_IsNone(args[11]) ? NULL : args[11],
        .log_access = Py_IsNone(args[12]) ? NULL : args[12], .model = args[13],
        .slot = (double *)slots.buf + slot, .max_requests = max_requests,
    };
    PyObject *left = NULL;
    taken next;
    while (next_connection(state, &q, &next, &left) > 0) {
        int whole = next.start >= 0 && next.got - next.start >= next.length
                    && next.length <= q.limit;
        int served = whole ? serve_one(&how, next.conn, next.data, next.parsed, next.accepted)
                           : 0;
        if (!whole) {
            left = hand_over(next.conn, next.data, next.accepted);
        }
        drop_taken(&next);
        if (!whole || served < 0) {
            break;
        }
    }
    PyBuffer_Release(&slots);
    return left;
}

PyDoc_STRVAR(take_queue_doc,
"take_queue($module, worker, listener, template, flags, size, max_header_size, limit,\n"
"           ready_size, start, /)\n"
"--\n"
"\n"
"The asyncio model's accept loop (AsyncioWorker._take_queue) in C, as serve_queue is\n"
"the sync model's: accept from the descriptor listener (a socket made like\n"
"accept_socket's, from template), receive up to size bytes with flags, parse the head,\n"
"and hand a request that is ready (its body at most limit bytes, and all received or\n"
"over ready_size) to start(conn, data, parsed, accepted, accepted).  Signal handlers\n"
"run between connections; the loop ends when worker.recycling is set, or\n"
"worker.stopping is and worker.drain_queue is not.\n"
"\n"
"Returns what serve_queue returns: None when the queue is empty or the loop ends; the\n"
"OSError of an accept that failed; (conn, data, accepted) for any other request, and\n"
"(conn, OSError, accepted) where the first receive failed.  Raises what start raised.");

static PyObject *
take_queue(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    speedups_state *state = get_state(module);
    queue q;
    if (queue_of(module, args, nargs, 9, "take_queue", &q) < 0) {
        return NULL;
    }
    q.until_recycled = 1;
    Py_ssize_t ready_size = PyLong_AsSsize_t(args[7]);
    if (ready_size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (ready_size < 0) {
        PyErr_SetString(PyExc_ValueError, "take_queue() arguments out of range");
        return NULL;
    }
    PyObject *left = NULL;
    taken next;
    while (next_connection(state, &q, &next, &left) > 0) {
        int ready = next.start >= 0 && next.length <= q.limit
                    && (next.got - next.start >= next.length || next.length > ready_size);
        PyObject *started = NULL;
        if (ready) {
            PyObject *when = PyFloat_FromDouble(next.accepted);
            if (when != NULL) {
                PyObject *call[5] = {next.conn, next.data, next.parsed, when, when};
                started = PyObject_Vectorcall(args[8], call, 5, NULL);
                Py_DECREF(when);
            }
            Py_XDECREF(started);
        }
        else {
            left = hand_over(next.conn, next.data, next.accepted);
        }
        drop_taken(&next);
        if (!ready || started == NULL) {
            break;
        }
    }
    return left;
}

static PyMethodDef speedups_methods[] = {
    {"parse_head", (PyCFunction)(void (*)(void))parse_head, METH_FASTCALL | METH_KEYWORDS,
     parse_head_doc},
    {"setup", setup, METH_VARARGS, setup_doc},
    {"wsgi_environ", (PyCFunction)(void (*)(void))wsgi_environ, METH_FASTCALL, wsgi_environ_doc},
    {"setup_wsgi", (PyCFunction)(void (*)(void))setup_wsgi, METH_VARARGS | METH_KEYWORDS,
     setup_wsgi_doc},
    {"header_pairs", (PyCFunction)(void (*)(void))header_pairs, METH_FASTCALL | METH_KEYWORDS,
     header_pairs_doc},
    {"setup_headers", (PyCFunction)(void (*)(void))setup_headers, METH_VARARGS | METH_KEYWORDS,
     setup_headers_doc},
    {"http_scope", (PyCFunction)(void (*)(void))http_scope, METH_FASTCALL, http_scope_doc},
    {"setup_scope", (PyCFunction)(void (*)(void))setup_scope, METH_VARARGS | METH_KEYWORDS,
     setup_scope_doc},
    {"accept_fd", accept_fd, METH_O, accept_fd_doc},
    {"answer_whole", (PyCFunction)(void (*)(void))answer_whole, METH_FASTCALL, answer_whole_doc},
    {"socket_layout_matches", socket_layout_matches, METH_O, socket_layout_matches_doc},
    {"accept_socket", (PyCFunction)(void (*)(void))accept_socket, METH_FASTCALL,
     accept_socket_doc},
    {"recv_now", (PyCFunction)(void (*)(void))recv_now, METH_FASTCALL, recv_now_doc},
    {"close_now", close_now, METH_O, close_now_doc},
    {"serve_queue", (PyCFunction)(void (*)(void))serve_queue, METH_FASTCALL, serve_queue_doc},
    {"take_queue", (PyCFunction)(void (*)(void))take_queue, METH_FASTCALL, take_queue_doc},
    {NULL, NULL, 0, NULL},
};

static int
speedups_exec(PyObject *module)
{
    speedups_state *state = get_state(module);
    for (int i = 0; i < N_COUNT; i++) {
        state->names[i] = PyUnicode_InternFromString(name_texts[i]);
        if (state->names[i] == NULL) {
            return -1;  /* the module is then freed, and speedups_clear drops the others */
        }
    }
    state->empty_bytes = PyBytes_FromStringAndSize(NULL, 0);
    state->content_type_name = PyBytes_FromString("content-type");
    state->content_length_name = PyBytes_FromString("content-length");
    state->exchange_type = PyType_FromModuleAndSpec(module, &exchange_spec, NULL);
    if (state->empty_bytes == NULL || state->content_type_name == NULL
        || state->content_length_name == NULL || state->exchange_type == NULL) {
        return -1;
    }
    state->asgi_template = PyDict_New();
    if (state->asgi_template == NULL
        || PyDict_SetItem(state->asgi_template, state->names[N_S_VERSION],
                          state->names[N_ASGI_3_0]) < 0
        || PyDict_SetItem(state->asgi_template, state->names[N_S_SPEC_VERSION],
                          state->names[N_SPEC_2_4]) < 0) {
        return -1;
    }
    state->scope_template = PyDict_New();
    for (int i = 0; i < K_COUNT; i++) {
        if (state->scope_template == NULL
            || PyDict_SetItem(state->scope_template, state->names[scope_keys[i]], Py_None) < 0) {
            return -1;
        }
    }
    return PyModule_AddObjectRef(module, "Exchange", state->exchange_type);
}

static int
speedups_traverse(PyObject *module, visitproc visit, void *arg)
{
    speedups_state *state = get_state(module);
    Py_VISIT(state->fallback);
    Py_VISIT(state->environ_pure);
    Py_VISIT(state->split_path);
    Py_VISIT(state->merge_cookie);
    Py_VISIT(state->encode_head);
    Py_VISIT(state->send_rest);
    Py_VISIT(state->client_gone);
    Py_VISIT(state->socket_type);
    Py_VISIT(state->pure_start_response);
    Py_VISIT(state->pure_write);
    Py_VISIT(state->pure_sendfile);
    Py_VISIT(state->buffered_body);
    Py_VISIT(state->file_wrapper);
    Py_VISIT(state->answer_file);
    Py_VISIT(state->checked_socket_type);
    Py_VISIT(state->header_pairs_pure);
    Py_VISIT(state->pairs_merge_cookie);
    Py_VISIT(state->http_scope_pure);
    Py_VISIT(state->http_versions);
    Py_VISIT(state->exchange_type);
    Py_VISIT(state->scope_template);
    Py_VISIT(state->asgi_template);
    return 0;
}

static int
speedups_clear(PyObject *module)
{
    speedups_state *state = get_state(module);
    Py_CLEAR(state->fallback);
    Py_CLEAR(state->environ_pure);
    Py_CLEAR(state->split_path);
    Py_CLEAR(state->merge_cookie);
    Py_CLEAR(state->encode_head);
    Py_CLEAR(state->send_rest);
    Py_CLEAR(state->client_gone);
    Py_CLEAR(state->socket_type);
    Py_CLEAR(state->pure_start_response);
    Py_CLEAR(state->pure_write);
    Py_CLEAR(state->pure_sendfile);
    Py_CLEAR(state->buffered_body);
    Py_CLEAR(state->file_wrapper);
    Py_CLEAR(state->answer_file);
    Py_CLEAR(state->checked_socket_type);
    Py_CLEAR(state->header_pairs_pure);
    Py_CLEAR(state->pairs_merge_cookie);
    Py_CLEAR(state->http_scope_pure);
    Py_CLEAR(state->http_versions);
    Py_CLEAR(state->exchange_type);
    Py_CLEAR(state->scope_template);
    Py_CLEAR(state->asgi_template);
    Py_CLEAR(state->empty_bytes);
    Py_CLEAR(state->content_type_name);
    Py_CLEAR(state->content_length_name);
    for (int i = 0; i < N_COUNT; i++) {
        Py_CLEAR(state->names[i]);
    }
    for (int i = 0; i < NAME_CACHE; i++) {
        Py_CLEAR(state->variables[i].name);
        Py_CLEAR(state->variables[i].value);
    }
    return 0;
}

static void
speedups_free(void *module)
{
    speedups_clear((PyObject *)module);
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, speedups_exec},
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "scgikit._speedups",
    .m_doc = "The SCGI request head parser in C: scgikit.protocol's optional accelerator.",
    .m_size = sizeof(speedups_state),
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
    .m_traverse = speedups_traverse,
    .m_clear = speedups_clear,
    .m_free = speedups_free,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
