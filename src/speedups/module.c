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
    PyMethodDef *tables[] = {sk_parse_methods, sk_environ_methods, sk_scope_methods,
                             sk_exchange_methods, sk_socket_methods, sk_loops_methods};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        if (PyModule_AddFunctions(module, tables[i]) < 0) {
            return -1;
        }
    }
    if (sk_scope_exec(module, state) < 0 || sk_exchange_exec(module, state) < 0
        || sk_loops_exec(module, state) < 0) {
        return -1;
    }
    return 0;
}

/* Every object the state holds, once each: what traverse visits and clear drops. */
#define STATE_OBJECTS(X) \
    X(fallback) X(environ_pure) X(split_path) X(merge_cookie) X(encode_head) X(send_rest) \
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
