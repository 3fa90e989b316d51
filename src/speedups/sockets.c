/* accept_fd, accept_socket, recv_now and close_now: the server's sockets, made, read and
 * closed without the socket module's Python code.  connection/sockets.py uses them.
 *
 * accept_fd gives a listener's next connection as a bare descriptor: the workers make
 * the socket object themselves and, unless --allow-from needs it, never ask for the
 * peer's address, which socket._accept() makes into Python objects every time.
 * accept_socket goes one step further and makes that socket object, copying a closed
 * template's fields: socket(family, type, 0, fd) would check the new descriptor with
 * a getsockname() call.  recv_now and close_now keep the GIL (neither waits).
 *
 * This file is the only one that knows CPython's socket object layout (socket_fields);
 * socket_layout_matches() checks it on a real socket before the server uses any of the
 * functions that rely on it (accelerator.socket_speedups), and they refuse any socket
 * of another type.  loops.c makes, reads and closes its sockets through the sk_
 * functions here.
 */

#include "speedups.h"


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
int
sk_accept_retrying(int listener)
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

PyObject *
sk_accept_fd(PyObject *module, PyObject *listener)
{
    int value = listener_fd(listener);
    if (value < 0) {
        return NULL;
    }
    int fd = sk_accept_retrying(value);
    if (fd < 0) {
        return fd == -2 ? NULL : PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(fd);
}

/* --- accept_socket: the connection as a socket object, without socket()'s checks --------- */

/* CPython's socket object as Modules/socketmodule.h lays it out on POSIX (3.7 to 3.13):
 * from 3.12 on, a pointer to the _socket module's state follows the timeout (the type
 * became a heap type).  socket_layout_matches() checks this against real sockets at
 * import; where it does not hold, the server uses accept_fd and socket() instead. */
typedef struct {
    PyObject_HEAD
    int sock_fd;
    int sock_family;
    int sock_type;
    int sock_proto;
    PyObject *(*errorhandler)(void);
    int64_t sock_timeout;
#if PY_VERSION_HEX >= 0x030C0000
    void *state;  /* struct _socket_state *: the same for every socket of the module */
#endif
} socket_fields;


PyObject *
sk_socket_layout_matches(PyObject *module, PyObject *sample)
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
PyObject *
sk_socket_like(PyObject *template, int fd)
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
#if PY_VERSION_HEX >= 0x030C0000
    made->state = fields->state;
#endif
    return (PyObject *)made;
}

/* Close a socket object of the checked type as socket.close() does, keeping the GIL:
 * 0, or -1 with OSError set. */
int
sk_close_socket(PyObject *sock)
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


PyObject *
sk_accept_socket(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (wrong_nargs("accept_socket", nargs, 2)) {
        return NULL;
    }
    if (checked_socket_fd(module, args[1], "accept_socket") < 0 && PyErr_Occurred()) {
        return NULL;  /* the template is not of the checked type */
    }
    int listener = listener_fd(args[0]);
    if (listener < 0) {
        return NULL;
    }
    int fd = sk_accept_retrying(listener);
    if (fd == -2) {
        return NULL;
    }
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            Py_RETURN_NONE;
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return sk_socket_like(args[1], fd);
}

/* recv(fd, size, flags | MSG_DONTWAIT) as a new bytes object (b"" at the end), again
 * after a signal's handlers have run: NULL with OSError set where recv failed, or with
 * what a handler raised. */
PyObject *
sk_receive_bytes(int fd, Py_ssize_t size, int flags)
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


PyObject *
sk_recv_now(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (wrong_nargs("recv_now", nargs, 3)) {
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
    return sk_receive_bytes(fd, size, (int)flags);
}


PyObject *
sk_close_now(PyObject *module, PyObject *sock)
{
    if (checked_socket_fd(module, sock, "close_now") < 0 && PyErr_Occurred()) {
        return NULL;
    }
    return sk_close_socket(sock) < 0 ? NULL : Py_NewRef(Py_None);
}

/* The closed template of a listener's connections (a socket of the checked type with
 * the listener's family and type, as accept_socket takes it), and in *fd the listener's
 * descriptor: a new reference, or NULL with an exception set. */
PyObject *
sk_socket_template(PyObject *module, PyObject *listener, int *fd)
{
    PyObject *checked = get_state(module)->checked_socket_type;
    if (checked == NULL) {
        PyErr_SetString(PyExc_TypeError, "the socket type has not been checked: "
                                         "socket_layout_matches() accepted none");
        return NULL;
    }
    *fd = PyObject_AsFileDescriptor(listener);
    if (*fd < 0) {
        return NULL;
    }
    PyObject *family = PyObject_GetAttrString(listener, "family");
    PyObject *kind = family == NULL ? NULL : PyObject_GetAttrString(listener, "type");
    PyObject *made = kind == NULL ? NULL
        : PyObject_CallFunctionObjArgs(checked, family, kind, NULL);
    Py_XDECREF(family);
    Py_XDECREF(kind);
    if (made != NULL && Py_TYPE(made) != (PyTypeObject *)checked) {
        PyErr_SetString(PyExc_TypeError, "the checked socket type made another type");
        Py_CLEAR(made);
    }
    if (made != NULL && sk_close_socket(made) < 0) {
        Py_CLEAR(made);
    }
    return made;
}

