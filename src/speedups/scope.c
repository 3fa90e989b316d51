/* header_pairs and http_scope, the ASGI scope of one request: apps.request's and
 * apps.asgi's C twins.
 *
 * header_pairs, the scope's request headers: C does a plain dict of exact str whose
 * names are all ASCII and whose values are all latin-1; anything else goes to
 * request.header_pairs_pure (which raises what it always raises, a UnicodeEncodeError
 * for a character above 255), and a Cookie with ", " in it to request.merge_cookie,
 * both given by setup_headers().
 *
 * http_scope, the whole http scope: C does the common case: a plain dict of variables
 * (every name an exact str of ASCII, every value an exact str of latin-1, as
 * header_pairs takes them; no PATH_INFO), an exact empty str script_name, a plain dict
 * state, an exact tuple (str, int) server, and a target (REQUEST_URI or DOCUMENT_URI or
 * "/") whose path before any "?" is ASCII, starts with "/" and holds no "%".  It adds up
 * ports of up to 18 ASCII digits itself; a port with a character beyond ASCII
 * (str.isdigit() takes "\xb2", which int() refuses), a longer one, and everything else
 * go, with the caller's arguments, to asgi.http_scope_pure, given with asgi's
 * SERVER_PROTOCOL table by setup_scope().  Its headers are header_pairs' (without
 * setup_headers(), every call goes to the pure function).
 *
 * Safety: header_pairs is done with each borrowed dict item before it makes the tuple
 * that could run a collection (whose finalizers could change the dict), checks again
 * what it looks up after one, and calls merge_cookie only after the loop.  http_scope
 * checks every name and value before it looks any up (in a dict of exact str only no
 * lookup runs Python code), and holds what it read as its own before it makes anything.
 */

#include "speedups.h"

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

/* The tuple (name, value), taking over both (NULL when making one failed): a new
 * reference, or NULL with both dropped.  Making it may run a collection: callers are done
 * with the dict items they borrowed. */
static PyObject *
make_pair(PyObject *name, PyObject *value)
{
    PyObject *pair = name != NULL && value != NULL ? PyTuple_New(2) : NULL;
    if (pair == NULL) {
        Py_XDECREF(name);
        Py_XDECREF(value);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, name);
    PyTuple_SET_ITEM(pair, 1, value);
    return pair;
}

/* `headers.append((name, value))`, taking over both (NULL when making one failed). */
static int
append_pair(PyObject *headers, PyObject *name, PyObject *value)
{
    PyObject *pair = make_pair(name, value);
    int failed = pair == NULL ? -1 : PyList_Append(headers, pair);
    Py_XDECREF(pair);
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
    PyObject *pair = make_pair(name, value);
    return pair == NULL ? -1 : PyList_SetItem(headers, at, pair);  /* drops the old one */
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


PyObject *
sk_header_pairs(speedups_state *state, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
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


PyObject *
sk_http_scope(speedups_state *state, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 4 && state->header_pairs_pure != NULL) {
        int fallback = 0;
        PyObject *scope = build_scope(state, args[0], args[1], args[2], args[3], &fallback);
        if (scope != NULL || !fallback) {
            return scope;
        }
    }
    return PyObject_Vectorcall(state->http_scope_pure, args, (size_t)nargs, NULL);
}






/* The scope's templates, made once: its keys in order, and its "asgi" dict. */
int
sk_scope_exec(PyObject *module, speedups_state *state)
{
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
    return 0;
}

