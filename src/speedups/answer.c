/* answer_whole, the WSGI adapter's answer to a request whose body came whole: the C twin of
 * apps.wsgi.WSGIAdapter.answer_whole.
 *
 * A request whose body came whole (most do) is answered without a Python frame of ours:
 * the body file (streams.BufferedBody), the environ (environ.c), the app's call, its
 * answer through the C Exchange (exchange.c; a FileWrapper result goes to
 * wsgi.answer_file) and the result's close(), as the pure adapter's `finally` does.  An
 * Exception goes to adapter.failed(exchange, variables, exc) with its traceback, which
 * logs it and answers 500; anything else (SystemExit, KeyboardInterrupt) goes on.
 */

#include "speedups.h"

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
        done = sk_exchange_respond((Exchange *)exchange, result);
    }
    Py_XDECREF(done);
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) {
        return done == NULL ? -1 : 0;  /* no close() to call */
    }
    PyObject *pending = done == NULL ? sk_take_exception() : NULL;
    PyObject *close = NULL;
    int found = sk_optional_attr(result, state->names[N_CLOSE], &close);
    if (found > 0) {
        PyObject *closed = PyObject_CallNoArgs(close);
        Py_DECREF(close);
        found = closed == NULL ? -1 : 0;
        Py_XDECREF(closed);
    }
    if (found < 0) {  /* close() (or looking it up) raised: that exception goes on */
        if (pending != NULL) {
            PyObject *raised = sk_take_exception();
            PyException_SetContext(raised, pending);  /* steals pending */
            sk_raise_again(raised);
        }
        return -1;
    }
    if (pending != NULL) {
        sk_raise_again(pending);
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
    PyObject *environ = sk_make_environ(state, base, variables, body, script_name);
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


PyObject *
sk_answer_whole(speedups_state *state, PyObject *const *args, Py_ssize_t nargs)
{
    if (wrong_nargs("answer_whole", nargs, 6)) {
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
        : sk_make_exchange((PyTypeObject *)state->exchange_type, sock, adapter, timeout);
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
        PyObject *exc = sk_take_exception();
        PyObject *call[4] = {adapter, exchange, variables, exc};
        answer = PyObject_VectorcallMethod(state->names[N_FAILED], call, 4, NULL);
        Py_DECREF(exc);
    }
    Py_DECREF(exchange);
    Py_DECREF(body);
    return answer;
}
