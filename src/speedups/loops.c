/* WorkerState and QueueLoop: a worker's accept loop, the common case in C.
 * workers/loops.py's PureWorkerState and PureQueueLoop are their twins and the
 * reference; workers/loops.py says what the loop does and hands back.
 *
 * WorkerState is the state a worker shares with its loop (speedups.h declares it):
 * Python reads and writes its fields as attributes, the loop as a struct's.
 * count_start() is the one rule for --max-requests.
 *
 * QueueLoop is made once per listener, its arguments given by keyword, and
 *
 *   serve() (the sync model): accept from the listener (a socket made like
 *   accept_socket's, sockets.c), receive up to recv_size bytes, parse the head
 *   (parse.c), and answer a request whose body came whole (readiness() says WHOLE)
 *   with answer(conn, data, variables, length, start) -> (status, sent); count it
 *   (count_start, handled), keep slots[slot] (a buffer of doubles: the heartbeat) at
 *   the time it was accepted while it runs, call record(status, sent, length, accepted,
 *   variables) and log_access(variables, status, sent, accepted, model) where they are
 *   given, and close it;
 *
 *   take() (the asyncio model): the same accept, receive and parse, and a request that
 *   is ready (WHOLE or STREAM) goes to start(conn, data, parsed, accepted, accepted);
 *
 * request after request until the queue is empty.  Signal handlers run between
 * requests (PyErr_CheckSignals), and the loop reads the state's stopping,
 * drain_queue and full before each accept.  Anything else is handed back to the Python loop,
 * with what came, the connection still open: see workers/loops.py.
 */

#include "speedups.h"

/* --- WorkerState ------------------------------------------------------------------------- */

/* The request that reaches max_requests is the last one taken: 1 for that one (the
 * state then stops taking, without draining the queue), else 0. */
static int
count_start(WorkerState *state)
{
    state->started++;
    if (state->started == state->max_requests && !state->stopping) {
        state->stopping = 1;
        state->drain_queue = 0;
        return 1;
    }
    return 0;
}

static PyObject *
worker_state_count_start(WorkerState *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(count_start(self));
}

static PyObject *
worker_state_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"max_requests", NULL};
    Py_ssize_t max_requests = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|n:WorkerState", keywords, &max_requests)) {
        return NULL;
    }
    if (max_requests < 0) {
        PyErr_SetString(PyExc_ValueError, "WorkerState() needs max_requests >= 0");
        return NULL;
    }
    WorkerState *self = (WorkerState *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->max_requests = max_requests;
    }
    return (PyObject *)self;
}

static void
worker_state_dealloc(WorkerState *self)
{
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* accept_failing_since: None while accepts work, else when they began to fail. */
static PyObject *
failing_since_get(WorkerState *self, void *Py_UNUSED(closure))
{
    if (self->accept_failing_since == 0.0) {
        Py_RETURN_NONE;
    }
    return PyFloat_FromDouble(self->accept_failing_since);
}

static int
failing_since_set(WorkerState *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL || Py_IsNone(value)) {
        self->accept_failing_since = 0.0;
        return 0;
    }
    double since = PyFloat_AsDouble(value);
    if (since == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (since <= 0.0) {
        PyErr_SetString(PyExc_ValueError, "accept_failing_since is a time.monotonic() or None");
        return -1;
    }
    self->accept_failing_since = since;
    return 0;
}

static PyMemberDef worker_state_members[] = {
    {"stopping", T_BOOL, offsetof(WorkerState, stopping), 0,
     "no more accepts (but see drain_queue); end what we hold"},
    {"drain_queue", T_BOOL, offsetof(WorkerState, drain_queue), 0,
     "a full stop: serve what is in the listen queue first"},
    {"full", T_BOOL, offsetof(WorkerState, full), 0,
     "at --max-concurrency: no accepts until a request ends"},
    {"started", T_PYSSIZET, offsetof(WorkerState, started), 0,
     "requests given to the app: --max-requests counts these"},
    {"handled", T_PYSSIZET, offsetof(WorkerState, handled), 0, "requests whose app has returned"},
    {"max_requests", T_PYSSIZET, offsetof(WorkerState, max_requests), 0, "0: no limit"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef worker_state_getset[] = {
    {"accept_failing_since", (getter)failing_since_get, (setter)failing_since_set,
     "the time.monotonic() of the first of failing accepts, or None", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef worker_state_methods[] = {
    {"count_start", (PyCFunction)worker_state_count_start, METH_NOARGS,
     "A request goes to the app; True if it is the one that reaches --max-requests."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot worker_state_slots[] = {
    {Py_tp_doc, "What a worker shares with its accept loop (WorkerState(max_requests=0))."},
    {Py_tp_new, worker_state_new},
    {Py_tp_dealloc, worker_state_dealloc},
    {Py_tp_members, worker_state_members},
    {Py_tp_getset, worker_state_getset},
    {Py_tp_methods, worker_state_methods},
    {0, NULL},
};

static PyType_Spec worker_state_spec = {
    .name = "scgikit._speedups.WorkerState",
    .basicsize = sizeof(WorkerState),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = worker_state_slots,
};

/* --- QueueLoop ----------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    WorkerState *state;
    PyObject *template;    /* a closed socket of the listener's family and type */
    PyObject *max_header;  /* max_header_size, as parse_head takes it */
    PyObject *slots;       /* the heartbeat's doubles, or NULL */
    PyObject *answer, *record, *log_access, *model, *start;  /* each NULL where not given */
    int listener;
    Py_ssize_t recv_size, body_limit, buffer_size, slot;
} QueueLoop;

/* A connection given up on because of an exception: closed, the exception kept. */
static void
close_on_error(PyObject *sock)
{
    PyObject *pending = sk_take_exception();
    if (sk_close_socket(sock) < 0) {
        PyErr_Clear();
    }
    sk_raise_again(pending);
}

/* time.monotonic(), computed as CPython does from clock_gettime(CLOCK_MONOTONIC). */
static double
monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec) / 1e9;
}

/* (conn, what, accepted): a connection for the Python loop to go on with. */
static PyObject *
hand_back(PyObject *conn, PyObject *what, double accepted)
{
    PyObject *when = PyFloat_FromDouble(accepted);
    PyObject *left = when == NULL ? NULL : PyTuple_Pack(3, conn, what, when);
    Py_XDECREF(when);
    if (left == NULL) {
        close_on_error(conn);
    }
    return left;
}

/* One connection of a listen queue, received and parsed. */
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

/* The head's CONTENT_LENGTH and start in next, where parse_head gave a head whose body
 * starts within what was received; else -1 for both (the Python loop's to judge). */
static void
read_head(taken *next)
{
    next->length = next->start = -1;
    if (next->parsed == NULL || !PyTuple_CheckExact(next->parsed)
        || PyTuple_GET_SIZE(next->parsed) != 3) {
        return;
    }
    Py_ssize_t length = PyLong_AsSsize_t(PyTuple_GET_ITEM(next->parsed, 1));
    Py_ssize_t start = length < 0 ? -1 : PyLong_AsSsize_t(PyTuple_GET_ITEM(next->parsed, 2));
    PyErr_Clear();
    if (start >= 0 && start <= next->got) {
        next->length = length;
        next->start = start;
    }
}

/* The next connection of the queue, its first receive and its head parsed: 1 with *next
 * set; 0 with *left set where the loop ends (None: the queue is empty, or the worker stops
 * taking; the OSError of an accept that failed; (conn, OSError, accepted) where the first
 * receive failed); -1 with an exception set (no memory, or a signal handler raised). */
static int
next_connection(PyObject *module, QueueLoop *loop, taken *next, PyObject **left)
{
    WorkerState *state = loop->state;
    int fd;
    for (;;) {
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
        if ((state->stopping && !state->drain_queue) || state->full) {
            *left = Py_NewRef(Py_None);
            return 0;
        }
        fd = accept4(loop->listener, NULL, NULL, SOCK_CLOEXEC);
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
            *left = sk_take_exception();
        }
        return 0;
    }
    next->accepted = monotonic_now();
    next->conn = sk_socket_like(loop->template, fd);
    if (next->conn == NULL) {
        return -1;
    }
    state->accept_failing_since = 0.0;
    next->data = sk_receive_bytes(fd, loop->recv_size, 0);
    if (next->data == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_OSError)) {  /* no memory, or a handler raised */
            close_on_error(next->conn);
            Py_DECREF(next->conn);
            return -1;
        }
        PyObject *exc = sk_take_exception();  /* the receive failed */
        *left = hand_back(next->conn, exc, next->accepted);
        Py_DECREF(exc);
        Py_DECREF(next->conn);
        return *left == NULL ? -1 : 0;
    }
    next->got = PyBytes_GET_SIZE(next->data);
    PyObject *head_args[2] = {next->data, loop->max_header};
    next->parsed = sk_parse_head(get_state(module), head_args, 2, NULL);
    if (next->parsed == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            close_on_error(next->conn);
            drop_taken(next);
            return -1;
        }
        PyErr_Clear();  /* the Python loop meets it again, and answers it */
    }
    read_head(next);
    return 1;
}

/* The request's answer counted, recorded and logged, where they are given: 0, or -1
 * with an exception set. */
static int
record_answer(QueueLoop *loop, PyObject *variables, PyObject *length, PyObject *answer,
              double accepted)
{
    if (loop->record == NULL && loop->log_access == NULL) {
        return 0;
    }
    PyObject *status = PyTuple_GET_ITEM(answer, 0), *sent = PyTuple_GET_ITEM(answer, 1);
    PyObject *when = PyFloat_FromDouble(accepted);
    int failed = when == NULL;
    if (!failed && loop->record != NULL) {
        PyObject *call[5] = {status, sent, length, when, variables};
        PyObject *done = PyObject_Vectorcall(loop->record, call, 5, NULL);
        failed = done == NULL;
        Py_XDECREF(done);
    }
    if (!failed && loop->log_access != NULL) {
        PyObject *call[5] = {variables, status, sent, when, loop->model};
        PyObject *done = PyObject_Vectorcall(loop->log_access, call, 5, NULL);
        failed = done == NULL;
        Py_XDECREF(done);
    }
    Py_XDECREF(when);
    return failed ? -1 : 0;
}

/* One whole request answered, counted, recorded, logged and its connection closed, as
 * the pure loop does it: 0, or -1 with an exception set. */
static int
serve_one(QueueLoop *loop, double *slot, taken *next)
{
    PyObject *variables = PyTuple_GET_ITEM(next->parsed, 0);
    PyObject *length = PyTuple_GET_ITEM(next->parsed, 1);
    PyObject *start = PyTuple_GET_ITEM(next->parsed, 2);
    *slot = next->accepted;
    count_start(loop->state);
    PyObject *call[5] = {next->conn, next->data, variables, length, start};
    PyObject *answer = PyObject_Vectorcall(loop->answer, call, 5, NULL);
    *slot = 0.0;
    loop->state->handled++;  /* as in a `finally` */
    if (answer != NULL && !(PyTuple_CheckExact(answer) && PyTuple_GET_SIZE(answer) == 2)) {
        PyErr_SetString(PyExc_TypeError, "answer_whole() must return (status, bytes sent)");
        Py_CLEAR(answer);
    }
    int failed = answer == NULL
                 || record_answer(loop, variables, length, answer, next->accepted) < 0;
    Py_XDECREF(answer);
    if (failed) {
        close_on_error(next->conn);
        return -1;
    }
    return sk_close_socket(next->conn);
}

/* The heartbeat slot, held as a buffer for a pass of serve(): 0, or -1 with an
 * exception set. */
static int
hold_slot(QueueLoop *loop, Py_buffer *view, double **slot)
{
    if (PyObject_GetBuffer(loop->slots, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_ND) < 0) {
        return -1;
    }
    const char *format = view->format == NULL ? "B" : view->format;
    if ((strcmp(format, "d") != 0 && strcmp(format, "@d") != 0)
        || view->itemsize != (Py_ssize_t)sizeof(double)
        || loop->slot >= view->len / view->itemsize) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "QueueLoop needs slots[slot] of doubles");
        return -1;
    }
    *slot = (double *)view->buf + loop->slot;
    return 0;
}

PyDoc_STRVAR(serve_doc,
"serve($self, /)\n"
"--\n"
"\n"
"Answer each request of the listen queue whose body came whole; returns what the loop\n"
"hands back (workers/loops.py).  Raises what answer, record or log_access raised, the\n"
"connection closed.");

static PyObject *
queue_loop_serve(QueueLoop *loop, PyObject *Py_UNUSED(ignored))
{
    if (loop->answer == NULL || loop->slots == NULL) {
        PyErr_SetString(PyExc_TypeError, "serve() needs a QueueLoop made with answer= and "
                                         "slots=");
        return NULL;
    }
    PyObject *module = PyType_GetModule(Py_TYPE(loop));
    Py_buffer view;
    double *slot;
    if (module == NULL || hold_slot(loop, &view, &slot) < 0) {
        return NULL;
    }
    PyObject *left = NULL;
    taken next;
    while (next_connection(module, loop, &next, &left) > 0) {
        int whole = next.start >= 0 && readiness(next.length, next.got - next.start, 0,
                                                 loop->body_limit) == READY_WHOLE;
        int served = whole ? serve_one(loop, slot, &next) : 0;
        if (!whole) {
            left = hand_back(next.conn, next.data, next.accepted);
        }
        drop_taken(&next);
        if (!whole || served < 0) {
            break;
        }
    }
    PyBuffer_Release(&view);
    return left;
}

/* Whether take() and take_one() start a request: its body came whole, or it streams. */
static int
is_ready(QueueLoop *loop, taken *next)
{
    int state = next->start < 0 ? READY_WAIT
        : readiness(next->length, next->got - next->start, loop->buffer_size,
                    loop->body_limit);
    return state == READY_WHOLE || state == READY_STREAM;
}

PyDoc_STRVAR(take_doc,
"take($self, /)\n"
"--\n"
"\n"
"Start each ready request of the listen queue; returns what the loop hands back\n"
"(workers/loops.py).  Raises what start raised.");

static PyObject *
queue_loop_take(QueueLoop *loop, PyObject *Py_UNUSED(ignored))
{
    if (loop->start == NULL) {
        PyErr_SetString(PyExc_TypeError, "take() needs a QueueLoop made with start=");
        return NULL;
    }
    PyObject *module = PyType_GetModule(Py_TYPE(loop));
    if (module == NULL) {
        return NULL;
    }
    PyObject *left = NULL;
    taken next;
    while (next_connection(module, loop, &next, &left) > 0) {
        int ready = is_ready(loop, &next);
        PyObject *started = NULL;
        if (ready) {
            PyObject *when = PyFloat_FromDouble(next.accepted);
            if (when != NULL) {
                PyObject *call[5] = {next.conn, next.data, next.parsed, when, when};
                started = PyObject_Vectorcall(loop->start, call, 5, NULL);
                Py_DECREF(when);
            }
            Py_XDECREF(started);
        }
        else {
            left = hand_back(next.conn, next.data, next.accepted);
        }
        drop_taken(&next);
        if (!ready || started == NULL) {
            break;
        }
    }
    return left;
}

PyDoc_STRVAR(take_one_doc,
"take_one($self, /)\n"
"--\n"
"\n"
"The next connection of the listen queue: (conn, data, parsed, accepted) where its\n"
"request is ready, else what the loop hands back (workers/loops.py).");

static PyObject *
queue_loop_take_one(QueueLoop *loop, PyObject *Py_UNUSED(ignored))
{
    PyObject *module = PyType_GetModule(Py_TYPE(loop));
    if (module == NULL) {
        return NULL;
    }
    PyObject *left = NULL;
    taken next;
    int got = next_connection(module, loop, &next, &left);
    if (got <= 0) {
        return got < 0 ? NULL : left;
    }
    PyObject *result;
    if (is_ready(loop, &next)) {
        PyObject *when = PyFloat_FromDouble(next.accepted);
        result = when == NULL ? NULL
            : PyTuple_Pack(4, next.conn, next.data, next.parsed, when);
        Py_XDECREF(when);
        if (result == NULL) {
            close_on_error(next.conn);
        }
    }
    else {
        result = hand_back(next.conn, next.data, next.accepted);
    }
    drop_taken(&next);
    return result;
}

/* A keyword argument that may be None (kept as NULL) or must be callable. */
static int
optional_callable(PyObject *given, PyObject **kept, const char *name)
{
    if (given == NULL || Py_IsNone(given)) {
        return 0;
    }
    if (!PyCallable_Check(given)) {
        PyErr_Format(PyExc_TypeError, "QueueLoop's %s must be callable or None", name);
        return -1;
    }
    *kept = Py_NewRef(given);
    return 0;
}

static PyObject *
queue_loop_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"state", "listener", "recv_size", "max_header_size",
                               "body_limit", "buffer_size", "slots", "slot", "answer",
                               "record", "log_access", "model", "start", NULL};
    PyObject *state = NULL, *listener = NULL, *max_header = NULL, *slots = NULL;
    PyObject *answer = NULL, *record = NULL, *log_access = NULL, *model = NULL, *start = NULL;
    Py_ssize_t recv_size = -1, body_limit = -1, buffer_size = 0, slot = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$OOnOnnOnOOOUO:QueueLoop", keywords,
                                     &state, &listener, &recv_size, &max_header, &body_limit,
                                     &buffer_size, &slots, &slot, &answer, &record,
                                     &log_access, &model, &start)) {
        return NULL;
    }
    if (state == NULL || listener == NULL || max_header == NULL || recv_size == -1
        || body_limit == -1) {
        PyErr_SetString(PyExc_TypeError, "QueueLoop() needs state, listener, recv_size, "
                                         "max_header_size and body_limit, by keyword");
        return NULL;
    }
    if (!PyLong_CheckExact(max_header)) {
        PyErr_SetString(PyExc_TypeError, "QueueLoop's max_header_size must be an int");
        return NULL;
    }
    speedups_state *module_state = (speedups_state *)PyType_GetModuleState(type);
    if (module_state == NULL || set_up(module_state, module_state->fallback, "setup") == NULL) {
        return NULL;  /* the loop parses heads with parse_head */
    }
    if (!Py_IS_TYPE(state, (PyTypeObject *)module_state->worker_state_type)) {
        PyErr_SetString(PyExc_TypeError, "QueueLoop's state must be a WorkerState");
        return NULL;
    }
    if (recv_size < 1 || body_limit < 0 || buffer_size < 0 || slot < 0) {
        PyErr_SetString(PyExc_ValueError, "QueueLoop's sizes and slot out of range");
        return NULL;
    }
    QueueLoop *loop = (QueueLoop *)type->tp_alloc(type, 0);
    if (loop == NULL) {
        return NULL;
    }
    loop->state = (WorkerState *)Py_NewRef(state);
    loop->max_header = Py_NewRef(max_header);
    loop->recv_size = recv_size;
    loop->body_limit = body_limit;
    loop->buffer_size = buffer_size;
    loop->slot = slot;
    loop->slots = slots == NULL || Py_IsNone(slots) ? NULL : Py_NewRef(slots);
    loop->model = Py_NewRef(model != NULL ? model : module_state->names[N_EMPTY]);
    PyObject *module = PyType_GetModule(type);
    loop->template = module == NULL ? NULL
        : sk_socket_template(module, listener, &loop->listener);
    if (loop->template == NULL || optional_callable(answer, &loop->answer, "answer") < 0
        || optional_callable(record, &loop->record, "record") < 0
        || optional_callable(log_access, &loop->log_access, "log_access") < 0
        || optional_callable(start, &loop->start, "start") < 0) {
        Py_DECREF(loop);
        return NULL;
    }
    return (PyObject *)loop;
}

#define QUEUE_LOOP_OBJECTS(X) \
    X(state) X(template) X(max_header) X(slots) X(answer) X(record) X(log_access) X(model) \
    X(start)

static PyMethodDef queue_loop_methods[] = {
    {"serve", (PyCFunction)queue_loop_serve, METH_NOARGS, serve_doc},
    {"take", (PyCFunction)queue_loop_take, METH_NOARGS, take_doc},
    {"take_one", (PyCFunction)queue_loop_take_one, METH_NOARGS, take_one_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef queue_loop_members[] = {
    {"state", T_OBJECT, offsetof(QueueLoop, state), READONLY, "the worker's WorkerState"},
    {NULL, 0, 0, 0, NULL},
};

SK_GC_TYPE(QueueLoop, queue_loop, QUEUE_LOOP_OBJECTS,
           "A listen queue's accept loop: QueueLoop(*, state, listener, recv_size,\n"
           "max_header_size, body_limit, buffer_size=0, slots=None, slot=0, answer=None,\n"
           "record=None, log_access=None, model='', start=None).");

/* --- readiness, for the test that compares it with the Python rule ------------------------ */


PyObject *
sk_readiness(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (wrong_nargs("readiness", nargs, 4)) {
        return NULL;
    }
    Py_ssize_t values[4];
    for (int i = 0; i < 4; i++) {
        values[i] = PyLong_AsSsize_t(args[i]);
        if (values[i] == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    return PyLong_FromLong(readiness(values[0], values[1], values[2], values[3]));
}

/* The two types, made once. */
int
sk_loops_exec(PyObject *module, speedups_state *state)
{
    state->worker_state_type = PyType_FromModuleAndSpec(module, &worker_state_spec, NULL);
    state->queue_loop_type = state->worker_state_type == NULL ? NULL
        : PyType_FromModuleAndSpec(module, &queue_loop_spec, NULL);
    if (state->queue_loop_type == NULL
        || PyModule_AddObjectRef(module, "WorkerState", state->worker_state_type) < 0
        || PyModule_AddObjectRef(module, "QueueLoop", state->queue_loop_type) < 0) {
        return -1;
    }
    return 0;
}

