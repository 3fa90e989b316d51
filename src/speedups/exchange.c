/* Exchange, the WSGI response exchange: apps.wsgi._Exchange's C twin.
 *
 * Exchange is one request's response state, as apps.wsgi._Exchange: start_response,
 * write and the loop over the app's result.  C does the common case (bytes and
 * bytearray chunks on a real socket; start_response without exc_info) and calls the
 * pure pieces setup_wsgi() gave it for the rest (new_heads, _send_rest, and
 * _Exchange's own methods with an Exchange as self).
 *
 * Safety: a send holds its chunk as a buffer, the head and the socket object as
 * references of its own (another thread may replace the exchange's attributes while
 * the GIL is released), and releases them on every path; with the GIL released it
 * touches only those C buffers and the descriptor, no Python object.  Exchange is a GC
 * type: it visits and clears all it holds.
 */

#include "speedups.h"

static speedups_state *
exchange_state(Exchange *self)
{
    speedups_state *state = (speedups_state *)PyType_GetModuleState(Py_TYPE(self));
    return set_up(state, state->new_heads, "setup_wsgi");
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
PyObject *
sk_exchange_respond(Exchange *self, PyObject *result)
{
    speedups_state *state = exchange_state(self);
    if (state == NULL) {
        return NULL;
    }
    int whole = PyList_CheckExact(result) || PyTuple_CheckExact(result);
    if (whole && IS_SET(self->head) && IS_SET(self->whole_head)) {
        /* Known whole: the head without X-Accel-Buffering (wsgi.known_whole). */
        Py_XSETREF(self->head, Py_NewRef(self->whole_head));
    }
    if (self->closing && whole) {
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

/* The encoded heads for (status, headers): the adapter's last ones if they are the same
 * (most apps answer most requests with the same head), else new_heads', which checks
 * them (InvalidResponse) and stores them as the adapter's last.  last and what new_heads
 * gives are (status, headers, streaming, whole): self->head becomes the streaming one,
 * self->whole_head the one for a result known whole.  Sets them and self->status. */
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
    PyObject *entry = Py_NewRef(last);
    if (!same) {
        Py_SETREF(entry, PyObject_CallFunctionObjArgs(
            state->new_heads, self->adapter == NULL ? Py_None : self->adapter, status, headers,
            NULL));
        if (entry == NULL) {
            return -1;
        }
        if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 4) {
            Py_DECREF(entry);
            PyErr_SetString(PyExc_TypeError, "new_heads() must return a tuple of 4");
            return -1;
        }
    }
    Py_XSETREF(self->head, Py_NewRef(PyTuple_GET_ITEM(entry, 2)));
    Py_XSETREF(self->whole_head, Py_NewRef(PyTuple_GET_ITEM(entry, 3)));
    Py_XSETREF(self->status, Py_NewRef(status));
    Py_DECREF(entry);
    return 0;
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
    if (!PyTuple_CheckExact(last) || PyTuple_GET_SIZE(last) != 4) {
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

PyObject *
sk_make_exchange(PyTypeObject *type, PyObject *sock, PyObject *adapter, PyObject *timeout)
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
    return sk_make_exchange(type, sock, adapter, timeout);
}

#define EXCHANGE_OBJECTS(X) X(sock) X(adapter) X(timeout) X(status) X(head) X(whole_head)

static PyMethodDef exchange_methods[] = {
    {"start_response", (PyCFunction)(void (*)(void))exchange_start_response,
     METH_FASTCALL | METH_KEYWORDS, "start_response(status, headers, exc_info=None): PEP 3333."},
    {"write", (PyCFunction)(void (*)(void))exchange_write, METH_FASTCALL | METH_KEYWORDS,
     "write(data): send a body chunk, with the head before the first."},
    {"finish", (PyCFunction)exchange_finish, METH_NOARGS,
     "finish(): send the head if no body chunk took it."},
    {"respond", (PyCFunction)sk_exchange_respond, METH_O,
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
    {"whole_head", T_OBJECT, offsetof(Exchange, whole_head), 0, NULL},
    {"sent", T_PYSSIZET, offsetof(Exchange, sent), 0, NULL},
    {"closing", T_BOOL, offsetof(Exchange, closing), 0, NULL},
    {"waited", T_BOOL, offsetof(Exchange, waited), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

SK_GC_TYPE(Exchange, exchange, EXCHANGE_OBJECTS,
           "Exchange(sock, adapter, timeout): one request's response, as "
           "scgikit.apps.wsgi._Exchange (the C accelerator).");

/* The Exchange type, made once. */
int
sk_exchange_exec(PyObject *module, speedups_state *state)
{
    state->exchange_type = PyType_FromModuleAndSpec(module, &exchange_spec, NULL);
    if (state->exchange_type == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "Exchange", state->exchange_type);
}

