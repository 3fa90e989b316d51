/* wsgi_environ, the WSGI environ of one request: apps.wsgi.environ_pure's C twin.
 *
 * scgikit.apps.wsgi uses it where the accelerator runs.  C does the common case
 * (plain dicts; a path with no "%" that starts with "/") and calls the pure pieces
 * setup_wsgi() gave it for the rest (split_path, merge_cookie), and environ_pure for
 * any other call shape.  answer_whole (exchange.c) builds its environ here.
 */

#include "speedups.h"

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
    if (prefix > 0
        && (end == prefix || (end > prefix && PyUnicode_READ_CHAR(target, prefix) == '/'))) {
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


/* The environ of one request: C for plain dicts, environ_pure for anything else. */
PyObject *
sk_make_environ(speedups_state *state, PyObject *base, PyObject *variables, PyObject *body,
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

PyObject *
sk_wsgi_environ(speedups_state *state, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {  /* the pure function raises what Python raises for its arguments */
        return PyObject_Vectorcall(state->environ_pure, args, (size_t)nargs, NULL);
    }
    return sk_make_environ(state, args[0], args[1], args[2], args[3]);
}

