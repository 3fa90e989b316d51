/* parse_head, the SCGI request head parser: protocol.parse_head's C twin.
 *
 * scgikit.protocol uses it where the accelerator runs, else the pure function
 * protocol.parse_head_pure.  Both give the same results because this one only handles
 * the well-formed case itself:
 *
 *     <digits>":"CONTENT_LENGTH NUL <digits> NUL <name> NUL <value> NUL ... ","
 *
 * with every name distinct and non-empty and SCGI=1 among them, and returns None
 * where the head is still partial.  Anything else (any error, a repeated name,
 * arguments other than bytes/bytearray and an int, lengths too long for a C
 * integer) is handed, with the caller's arguments untouched, to the pure function,
 * which raises the ProtocolError (message, status) it always raises.
 *
 * Safety: the head data is held through the buffer protocol for the whole call (a
 * bytearray cannot be resized under us), and every scan is bounded by the buffer's
 * length (memchr with an explicit limit).
 */

#include "speedups.h"

/* The netstring length's ':' must be within the first 21 bytes, as the pure function looks. */
#define COLON_WINDOW 21

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


PyObject *
sk_parse_head(speedups_state *state, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *data = NULL, *max_obj = NULL;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
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



