/* scgikit._speedups, scgikit's optional C accelerator: what its files share.
 *
 * The accelerator is one extension module made of one file per concern, each the C
 * twin of a pure Python module that stays the reference:
 *
 *     parse.c     parse_head                       scgikit/protocol.py
 *     environ.c   wsgi_environ                     scgikit/apps/wsgi.py
 *     scope.c     header_pairs, http_scope         scgikit/apps/request.py, apps/asgi.py
 *     exchange.c  Exchange (the response's send)   scgikit/apps/wsgi.py
 *     answer.c    answer_whole                     scgikit/apps/wsgi.py
 *     sockets.c   accept, receive and close        scgikit/connection/sockets.py
 *     loops.c     WorkerState, QueueLoop           scgikit/workers/loops.py
 *     module.c    the module: its state, functions and types
 *
 * The rule everywhere: C does the common case itself and hands everything else,
 * with the caller's arguments untouched, to the pure code, so the two give the same
 * results and raise the same errors.  scgikit/accelerator.py decides whether it runs.
 *
 * What the accelerator shares with Python is declared here: the module's state (the
 * pure pieces each setup_*() call gives it, and the names it looks up), and the
 * WorkerState, the one object a worker and its accept loop both read and write (the
 * C twin of workers/loops.py's PureWorkerState, field for field), and the Exchange, a
 * WSGI response's state (apps/wsgi.py's _Exchange, attribute for attribute).
 *
 * Beyond those, the C code looks up by name only what the pure code's objects are given
 * by Python: a WSGIAdapter's app, base, script_name, timeout and last_head (a previous
 * response's head, shared with the pure exchange) and its failed() (answer.c, exchange.c);
 * an app result's close(); a listener's family and type, once, as its QueueLoop is made.
 */

#ifndef SCGIKIT_SPEEDUPS_H
#define SCGIKIT_SPEEDUPS_H

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

/* Functions one file of the module gives the others, invisible outside it. */
#if defined(__GNUC__)
#define SK_INTERNAL __attribute__((visibility("hidden")))
#else
#define SK_INTERNAL
#endif

/* At most this many decimal digits always fit a long long (10**18 - 1 < 2**63). */
#define MAX_FAST_DIGITS 18
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
    X(S_PATHSEND, "http.response.pathsend")
#define NAME_ENUM(id, text) N_##id,
enum { NAMES(NAME_ENUM) N_COUNT };

/* The module's state. */
typedef struct {
    PyObject *fallback;           /* protocol.parse_head_pure */
    Py_ssize_t default_max_size;  /* protocol.DEFAULT_MAX_HEADER_SIZE */
    /* From setup_wsgi(), all NULL before it: apps.wsgi's pure pieces, called for
     * whatever the C code leaves to them. */
    PyObject *environ_pure;       /* environ_pure(base, variables, body, script_name) */
    PyObject *split_path;         /* request.split_path(variables, script_name) */
    PyObject *merge_cookie;       /* request.merge_cookie(value, variables) */
    PyObject *new_heads;          /* new_heads(adapter, status, headers): a last_head entry
                                   * (status, headers, streaming, whole); InvalidResponse */
    PyObject *send_rest;          /* _send_rest(sock, head, data, sent, timeout) */
    PyObject *client_gone;        /* the ClientGone exception */
    PyObject *socket_type;        /* _socket.socket: what the C send may write to */
    PyObject *pure_start_response, *pure_write, *pure_sendfile;  /* _Exchange's */
    PyObject *buffered_body;      /* streams.BufferedBody, the file of a whole body */
    PyObject *file_wrapper;       /* FileWrapper: its results go to answer_file */
    PyObject *answer_file;        /* answer_file(exchange, wrapper) */
    /* The socket type socket_layout_matches() found laid out as sockets.c expects, or
     * NULL: the only sockets that sockets.c and loops.c make, read and close. */
    PyObject *checked_socket_type;
    /* From setup_headers(), NULL before it: apps.request's pure pieces. */
    PyObject *header_pairs_pure;  /* header_pairs_pure(variables) */
    PyObject *pairs_merge_cookie; /* request.merge_cookie(value, variables) */
    /* From setup_scope(), NULL before it: apps.asgi's pure builder and its version table. */
    PyObject *http_scope_pure;    /* http_scope_pure(variables, script_name, server, state) */
    PyObject *http_versions;      /* asgi._HTTP_VERSIONS, a dict */
    /* The module's types, made by the module's exec. */
    PyObject *exchange_type, *worker_state_type, *queue_loop_type;
    PyObject *empty_bytes;
    /* The scope's keys, in order, each with None (a copy is made at its size at once, and
     * its values replaced), and its "asgi" dict. */
    PyObject *scope_template, *asgi_template;
    PyObject *content_type_name, *content_length_name;  /* b"content-type", b"content-length" */
    PyObject *names[N_COUNT];
    struct { PyObject *name, *value; } variables[NAME_CACHE];  /* see NAME_CACHE */
} speedups_state;

static inline speedups_state *
get_state(PyObject *module)
{
    return (speedups_state *)PyModule_GetState(module);
}

/* A worker's state, shared with its accept loop: workers/loops.py's PureWorkerState
 * in C.  Python reads and writes the fields as attributes of the same names; the loop
 * reads and writes them here. */
typedef struct {
    PyObject_HEAD
    char stopping;              /* no more accepts (but see drain_queue); end what we hold */
    char drain_queue;           /* a full stop: serve what is in the listen queue first */
    char full;                  /* at --max-concurrency: no accepts until a request ends */
    Py_ssize_t started;         /* requests given to the app: --max-requests counts these */
    Py_ssize_t handled;         /* requests whose app has returned */
    Py_ssize_t max_requests;    /* 0: no limit */
    double accept_failing_since;  /* time.monotonic() of the first of failing accepts, or
                                   * 0.0: none failing (None in Python) */
} WorkerState;

/* One request's response state (exchange.c): apps.wsgi._Exchange's twin, whose methods it
 * calls for
 * the cases it does not handle itself (other call shapes, exc_info, chunks that are not
 * bytes or bytearray, a sock that is not a socket).  Python reads and writes its fields as
 * attributes of the same names. */
typedef struct {
    PyObject_HEAD
    PyObject *sock;      /* the connection */
    PyObject *adapter;   /* the WSGIAdapter: its last_head is a previous response's head */
    PyObject *timeout;   /* per send call, once one cannot finish at once */
    PyObject *status;    /* the app's status; NULL or None before start_response */
    PyObject *head;      /* the encoded head not yet sent; NULL or None once sent */
    PyObject *whole_head;  /* the head to send instead if the result is known whole (a list
                            * or tuple: without X-Accel-Buffering, apps/streaming.py) */
    Py_ssize_t sent;     /* bytes sent so far, head included */
    char closing;        /* the connection closes once the answer is sent: its last bytes
                          * may wait in the kernel for the close (answer_whole) */
    char waited;         /* a send had to wait: the connection carries its send timeout, and
                          * the rest of the answer goes out with sends that wait */
    char wait_in_c;      /* ... and its descriptor is blocking: those sends are send_waiting's */
} Exchange;

/* Attributes are writable from Python: None and NULL (deleted) both mean "none". */
#define IS_SET(obj) ((obj) != NULL && (obj) != Py_None)

/* What readiness() says of a request: the numbers of connection/intake.py's. */
enum { READY_WAIT = 0, READY_WHOLE = 1, READY_STREAM = 2, READY_TOO_LARGE = 3 };

/* The readiness rule of connection/intake.py's readiness(), which it mirrors. */
static inline int
readiness(Py_ssize_t length, Py_ssize_t received, Py_ssize_t buffer_size, Py_ssize_t limit)
{
    if (length > limit) {
        return READY_TOO_LARGE;
    }
    if (received >= length) {
        return READY_WHOLE;
    }
    return length > buffer_size ? READY_STREAM : READY_WAIT;
}

/* The module's state, once the setup_*() call named `setup` has given it `piece`; else NULL,
 * with RuntimeError set. */
#define SET_UP(module, piece, setup) set_up(get_state(module), get_state(module)->piece, setup)

static inline speedups_state *
set_up(speedups_state *state, PyObject *piece, const char *setup)
{
    if (piece == NULL) {
        PyErr_Format(PyExc_RuntimeError, "scgikit._speedups.%s() was not called", setup);
        return NULL;
    }
    return state;
}

/* Whether a vectorcall keyword (an item of kwnames) is `name`. */
static inline int
is_keyword(PyObject *kwname, const char *name)
{
    return PyUnicode_Check(kwname) && PyUnicode_CompareWithASCIIString(kwname, name) == 0;
}

/* 0 where a function given nargs positional arguments takes `expected` of them; else 1,
 * with the TypeError Python raises. */
static inline int
wrong_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t expected)
{
    if (nargs == expected) {
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, expected, nargs);
    return 1;
}

/* A GC type's objects, each visited by traverse and dropped by clear: its fields are
 * listed once, as X(field), and these make the two functions' bodies. */
#define SK_VISIT(field) Py_VISIT(self->field);
#define SK_CLEAR(field) Py_CLEAR(self->field);

/* module.c: a GC heap type's dealloc (untrack, clear, free, drop the type). */
SK_INTERNAL void sk_gc_dealloc(PyObject *self, inquiry clear);

/* A GC heap type of the struct Type, whose object fields OBJECTS(X) lists: its traverse,
 * clear and dealloc, and its spec (prefix_spec), whose slots are those, prefix_new,
 * prefix_methods, prefix_members and the type's doc. */
#define SK_GC_TYPE(Type, prefix, OBJECTS, doc) \
    static int prefix##_traverse(Type *self, visitproc visit, void *arg) \
    { Py_VISIT(Py_TYPE(self)); OBJECTS(SK_VISIT) return 0; } \
    static int prefix##_clear(Type *self) { OBJECTS(SK_CLEAR) return 0; } \
    static void prefix##_dealloc(Type *self) \
    { sk_gc_dealloc((PyObject *)self, (inquiry)prefix##_clear); } \
    static PyType_Slot prefix##_slots[] = { \
        {Py_tp_doc, (void *)(doc)}, {Py_tp_new, prefix##_new}, \
        {Py_tp_dealloc, prefix##_dealloc}, {Py_tp_traverse, prefix##_traverse}, \
        {Py_tp_clear, prefix##_clear}, {Py_tp_methods, prefix##_methods}, \
        {Py_tp_members, prefix##_members}, {0, NULL}}; \
    static PyType_Spec prefix##_spec = { \
        .name = "scgikit._speedups." #Type, .basicsize = sizeof(Type), \
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE, \
        .slots = prefix##_slots}

/* module.c: exceptions kept and raised again; an attribute that may be missing. */
SK_INTERNAL PyObject *sk_take_exception(void);
SK_INTERNAL void sk_raise_again(PyObject *exc);
SK_INTERNAL int sk_optional_attr(PyObject *obj, PyObject *name, PyObject **found);

/* parse.c */

/* environ.c */
SK_INTERNAL PyObject *sk_make_environ(speedups_state *state, PyObject *base,
                                      PyObject *variables, PyObject *body,
                                      PyObject *script_name);

/* scope.c */
SK_INTERNAL int sk_scope_exec(PyObject *module, speedups_state *state);

/* exchange.c */
SK_INTERNAL int sk_exchange_exec(PyObject *module, speedups_state *state);
SK_INTERNAL PyObject *sk_make_exchange(PyTypeObject *type, PyObject *sock, PyObject *adapter,
                                       PyObject *timeout);
SK_INTERNAL PyObject *sk_exchange_respond(Exchange *self, PyObject *result);

/* sockets.c: connections as socket objects of the checked type (see sockets.c). */
SK_INTERNAL int sk_accept_retrying(int listener);
SK_INTERNAL PyObject *sk_socket_like(PyObject *template, int fd);
SK_INTERNAL PyObject *sk_socket_template(PyObject *module, PyObject *listener, int *fd);
SK_INTERNAL int sk_close_socket(PyObject *sock);
SK_INTERNAL PyObject *sk_receive_bytes(int fd, Py_ssize_t size, int flags);

/* loops.c */
SK_INTERNAL int sk_loops_exec(PyObject *module, speedups_state *state);

/* The functions of the module, each in the file of its concern (module.c lists them with
 * their signatures and docs, and gives those that take a state the module's, once the
 * setup_*() call they need was made). */
/* parse.c */
SK_INTERNAL PyObject *sk_parse_head(speedups_state *state, PyObject *const *args,
                                    Py_ssize_t nargs, PyObject *kwnames);
/* environ.c */
SK_INTERNAL PyObject *sk_wsgi_environ(speedups_state *state, PyObject *const *args,
                                      Py_ssize_t nargs);
/* scope.c */
SK_INTERNAL PyObject *sk_header_pairs(speedups_state *state, PyObject *const *args,
                                      Py_ssize_t nargs, PyObject *kwnames);
SK_INTERNAL PyObject *sk_http_scope(speedups_state *state, PyObject *const *args, Py_ssize_t nargs);
/* answer.c */
SK_INTERNAL PyObject *sk_answer_whole(speedups_state *state, PyObject *const *args,
                                      Py_ssize_t nargs);
/* sockets.c */
SK_INTERNAL PyObject *sk_accept_fd(PyObject *module, PyObject *arg);
SK_INTERNAL PyObject *sk_socket_layout_matches(PyObject *module, PyObject *arg);
SK_INTERNAL PyObject *sk_accept_socket(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
SK_INTERNAL PyObject *sk_recv_now(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
SK_INTERNAL PyObject *sk_close_now(PyObject *module, PyObject *arg);
/* loops.c */
SK_INTERNAL PyObject *sk_readiness(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
