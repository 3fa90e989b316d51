/* The module scgikit._speedups: its state, its functions and types, from each file.
 *
 * speedups.h says what each file holds and what they share.  The module keeps
 * per-module state (the pure pieces each setup_*() gives it, the interned names,
 * the types), which it visits and clears as a GC object does.
 */

#include "speedups.h"

#define NAME_TEXT(id, text) text,
static const char *const name_texts[N_COUNT] = { NAMES(NAME_TEXT) };

/* The exception being raised, taken out of the error indicator, with its traceback
 * (as `except Exception as exc` sees it); the indicator is then clear. */
PyObject *
sk_take_exception(void)
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
void
sk_raise_again(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* getattr(obj, name, None) without making an AttributeError: 1 found, 0 not, -1 error. */
int
sk_optional_attr(PyObject *obj, PyObject *name, PyObject **found)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_GetOptionalAttr(obj, name, found);
#else
    return _PyObject_LookupAttr(obj, name, found);
#endif
}

void
sk_gc_dealloc(PyObject *self, inquiry clear)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    clear(self);
    type->tp_free(self);
    Py_DECREF(type);
}

/* The functions that need what a setup_*() call gives: each called with the module's state
 * once that call was made, else RuntimeError (the C code has nothing to hand cases to). */
#define AFTER_SETUP(name, piece, setup) \
    static PyObject * \
    name(PyObject *module, PyObject *const *args, Py_ssize_t nargs) \
    { \
        speedups_state *state = SET_UP(module, piece, setup); \
        return state == NULL ? NULL : sk_##name(state, args, nargs); \
    }
#define AFTER_SETUP_KW(name, piece, setup) \
    static PyObject * \
    name(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) \
    { \
        speedups_state *state = SET_UP(module, piece, setup); \
        return state == NULL ? NULL : sk_##name(state, args, nargs, kwnames); \
    }

AFTER_SETUP_KW(parse_head, fallback, "setup")
AFTER_SETUP(wsgi_environ, environ_pure, "setup_wsgi")
AFTER_SETUP_KW(header_pairs, header_pairs_pure, "setup_headers")
AFTER_SETUP(http_scope, http_scope_pure, "setup_scope")
AFTER_SETUP(answer_whole, buffered_body, "setup_wsgi")

/* --- what Python gives the C code: the pure pieces it hands cases to ---------------------- */

/* Two pieces of a setup_*() call, by keyword, kept in *first and *second: None, or NULL with
 * TypeError set (saying `error`) where one is missing or not what it must be: a callable
 * first, and a callable second (a dict, with `dict_second`). */
static PyObject *
keep_pieces(PyObject *args, PyObject *kwargs, const char *format, char **keywords,
            PyObject **first, PyObject **second, int dict_second, const char *error)
{
    PyObject *given[2] = {NULL, NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, format, keywords, &given[0], &given[1])) {
        return NULL;
    }
    if (given[0] == NULL || given[1] == NULL || !PyCallable_Check(given[0])
        || !(dict_second ? PyDict_CheckExact(given[1]) : PyCallable_Check(given[1]))) {
        PyErr_SetString(PyExc_TypeError, error);
        return NULL;
    }
    Py_XSETREF(*first, Py_NewRef(given[0]));
    Py_XSETREF(*second, Py_NewRef(given[1]));
    Py_RETURN_NONE;
}

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

static PyObject *
setup_headers(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"header_pairs_pure", "merge_cookie", NULL};
    speedups_state *state = get_state(module);
    return keep_pieces(args, kwargs, "|$OO:setup_headers", keywords, &state->header_pairs_pure,
                       &state->pairs_merge_cookie, 0,
                       "setup_headers() needs both callables, by keyword");
}

static PyObject *
setup_scope(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"http_scope_pure", "http_versions", NULL};
    speedups_state *state = get_state(module);
    return keep_pieces(args, kwargs, "|$OO:setup_scope", keywords, &state->http_scope_pure,
                       &state->http_versions, 1,
                       "setup_scope() needs a callable http_scope_pure and a dict "
                       "http_versions, by keyword");
}

static PyObject *
setup_wsgi(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"environ_pure", "split_path", "merge_cookie", "new_heads",
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
    Py_XSETREF(state->new_heads, Py_NewRef(given[3]));
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

/* Every function of the module, by concern: its name, its C function, its calling
 * convention, and its signature and doc (the first lines of each doc). */

PyDoc_STRVAR(parse_head_doc,
"parse_head($module, /, data, max_header_size=65536)\n"
"--\n"
"\n"
"Parse the header netstring at the start of data (the C accelerator).\n"
"\n"
"The same results as scgikit.protocol.parse_head_pure, to which every\n"
"unusual case (errors included) is handed.");

PyDoc_STRVAR(setup_doc,
"setup($module, fallback, default_max_header_size, /)\n"
"--\n"
"\n"
"Give parse_head the pure function it hands unusual cases to, and its default limit.");

PyDoc_STRVAR(wsgi_environ_doc,
"wsgi_environ($module, base, variables, body, script_name, /)\n"
"--\n"
"\n"
"The WSGI environ of one request (the C accelerator).\n"
"\n"
"The same result as scgikit.apps.wsgi.environ_pure, which is called instead\n"
"when base or variables is not a dict; request.split_path and merge_cookie\n"
"do the paths and cookies this function does not handle itself.");

PyDoc_STRVAR(header_pairs_doc,
"header_pairs($module, /, variables)\n"
"--\n"
"\n"
"The request headers of an ASGI scope (the C accelerator).\n"
"\n"
"The same result as scgikit.apps.request.header_pairs_pure, which is called\n"
"instead for anything but a dict of str names of ASCII and str values of\n"
"latin-1; request.merge_cookie does a Cookie with \", \" in it.");

PyDoc_STRVAR(setup_headers_doc,
"setup_headers($module, /, *, header_pairs_pure, merge_cookie)\n"
"--\n"
"\n"
"Give header_pairs the pure pieces of scgikit.apps.request it hands cases to.");

PyDoc_STRVAR(http_scope_doc,
"http_scope($module, variables, script_name, server, state, /)\n"
"--\n"
"\n"
"The ASGI http scope of one request (the C accelerator).\n"
"\n"
"The same result as scgikit.apps.asgi.http_scope_pure, which is called instead\n"
"for anything but plain dicts of str of latin-1, an empty script_name, a\n"
"(str, int) server and a path of ASCII without \"%\" that starts with \"/\".");

PyDoc_STRVAR(setup_scope_doc,
"setup_scope($module, /, *, http_scope_pure, http_versions)\n"
"--\n"
"\n"
"Give http_scope the pure builder of scgikit.apps.asgi it hands cases to, and the\n"
"SERVER_PROTOCOL table (a dict) that builder reads.");

PyDoc_STRVAR(setup_wsgi_doc,
"setup_wsgi($module, /, *, environ_pure, split_path, merge_cookie, new_heads,\n"
"           send_rest, client_gone, pure_exchange, socket_type, buffered_body,\n"
"           file_wrapper, answer_file)\n"
"--\n"
"\n"
"Give wsgi_environ, Exchange and answer_whole the pure pieces of scgikit.apps.wsgi\n"
"they hand cases to.");

PyDoc_STRVAR(answer_whole_doc,
"answer_whole($module, adapter, sock, data, variables, length, start, /)\n"
"--\n"
"\n"
"WSGIAdapter.answer_whole (the C accelerator): answer a request whose body of length\n"
"bytes is all in data from start, as calling the adapter with that body as a file\n"
"does; returns (status, bytes sent).  An Exception from the app or its answer goes\n"
"to adapter.failed(exchange, variables, exc), whose result is returned.  The caller\n"
"closes sock next: the last bytes of a list or tuple result go with MSG_MORE.");

PyDoc_STRVAR(accept_fd_doc,
"accept_fd($module, listener, /)\n"
"--\n"
"\n"
"accept4() on the listening descriptor listener, with SOCK_CLOEXEC: the new\n"
"connection's descriptor, or the OSError accept() raises (BlockingIOError when none\n"
"is waiting).  Retried on EINTR unless a signal handler raises.");

PyDoc_STRVAR(socket_layout_matches_doc,
"socket_layout_matches($module, sample, /)\n"
"--\n"
"\n"
"Whether accept_socket can make socket objects like sample (an open _socket.socket):\n"
"its type's size and fields where this module expects them.");

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

PyDoc_STRVAR(recv_now_doc,
"recv_now($module, sock, size, flags, /)\n"
"--\n"
"\n"
"sock.recv(size, flags | MSG_DONTWAIT): what has arrived, up to size bytes (b'' at the\n"
"end), or BlockingIOError when nothing has.  It never waits, so it keeps the GIL.\n"
"Only on sockets of the type socket_layout_matches() accepted.");

PyDoc_STRVAR(close_now_doc,
"close_now($module, sock, /)\n"
"--\n"
"\n"
"sock.close(), keeping the GIL (closing a socket without SO_LINGER never waits).\n"
"Only on sockets of the type socket_layout_matches() accepted.");

PyDoc_STRVAR(readiness_doc,
"readiness($module, length, received, buffer_size, limit, /)\n"
"--\n"
"\n"
"The readiness rule the loops apply (connection/intake.py's readiness): 3 past limit,\n"
"else 1 once received >= length, else 2 for a length past buffer_size, else 0.");

#ifdef __GLIBC__
#include <malloc.h>

PyDoc_STRVAR(mallopt_doc,
"mallopt($module, param, value, /)\n"
"--\n"
"\n"
"glibc's mallopt(): True where it took the setting (master/heap.py).");

static PyObject *
sk_mallopt(PyObject *Py_UNUSED(module), PyObject *args)
{
    int param, value;
    if (!PyArg_ParseTuple(args, "ii:mallopt", &param, &value)) {
        return NULL;
    }
    return PyBool_FromLong(mallopt(param, value));
}
#endif

static PyMethodDef speedups_methods[] = {
    {"parse_head", (PyCFunction)(void (*)(void))parse_head,
     METH_FASTCALL | METH_KEYWORDS, parse_head_doc},
    {"setup", setup, METH_VARARGS, setup_doc},
    {"wsgi_environ", (PyCFunction)(void (*)(void))wsgi_environ, METH_FASTCALL, wsgi_environ_doc},
    {"header_pairs", (PyCFunction)(void (*)(void))header_pairs,
     METH_FASTCALL | METH_KEYWORDS, header_pairs_doc},
    {"setup_headers", (PyCFunction)(void (*)(void))setup_headers,
     METH_VARARGS | METH_KEYWORDS, setup_headers_doc},
    {"http_scope", (PyCFunction)(void (*)(void))http_scope, METH_FASTCALL, http_scope_doc},
    {"setup_scope", (PyCFunction)(void (*)(void))setup_scope,
     METH_VARARGS | METH_KEYWORDS, setup_scope_doc},
    {"setup_wsgi", (PyCFunction)(void (*)(void))setup_wsgi,
     METH_VARARGS | METH_KEYWORDS, setup_wsgi_doc},
    {"answer_whole", (PyCFunction)(void (*)(void))answer_whole, METH_FASTCALL, answer_whole_doc},
    {"accept_fd", sk_accept_fd, METH_O, accept_fd_doc},
    {"socket_layout_matches", sk_socket_layout_matches, METH_O, socket_layout_matches_doc},
    {"accept_socket", (PyCFunction)(void (*)(void))sk_accept_socket,
     METH_FASTCALL, accept_socket_doc},
    {"recv_now", (PyCFunction)(void (*)(void))sk_recv_now, METH_FASTCALL, recv_now_doc},
    {"close_now", sk_close_now, METH_O, close_now_doc},
    {"readiness", (PyCFunction)(void (*)(void))sk_readiness, METH_FASTCALL, readiness_doc},
#ifdef __GLIBC__
    {"mallopt", sk_mallopt, METH_VARARGS, mallopt_doc},  /* glibc's alone */
#endif
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
    if (state->empty_bytes == NULL || state->content_type_name == NULL
        || state->content_length_name == NULL) {
        return -1;
    }
    if (PyModule_AddFunctions(module, speedups_methods) < 0) {
        return -1;
    }
    if (sk_scope_exec(module, state) < 0 || sk_exchange_exec(module, state) < 0
        || sk_loops_exec(module, state) < 0) {
        return -1;
    }
    return 0;
}

/* Every object the state holds, once each: what traverse visits and clear drops. */
#define STATE_OBJECTS(X) \
    X(fallback) X(environ_pure) X(split_path) X(merge_cookie) X(new_heads) X(send_rest) \
    X(client_gone) X(socket_type) X(pure_start_response) X(pure_write) X(pure_sendfile) \
    X(buffered_body) X(file_wrapper) X(answer_file) X(checked_socket_type) \
    X(header_pairs_pure) X(pairs_merge_cookie) X(http_scope_pure) X(http_versions) \
    X(exchange_type) X(worker_state_type) X(queue_loop_type) X(scope_template) \
    X(asgi_template) X(empty_bytes) X(content_type_name) X(content_length_name)

static int
speedups_traverse(PyObject *module, visitproc visit, void *arg)
{
    speedups_state *state = get_state(module);
#define VISIT(field) Py_VISIT(state->field);
    STATE_OBJECTS(VISIT)
#undef VISIT
    return 0;
}

static int
speedups_clear(PyObject *module)
{
    speedups_state *state = get_state(module);
#define CLEAR(field) Py_CLEAR(state->field);
    STATE_OBJECTS(CLEAR)
#undef CLEAR
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
    .m_doc = "scgikit's optional C accelerator: the common case of its hot paths in C.",
    .m_size = sizeof(speedups_state),
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
