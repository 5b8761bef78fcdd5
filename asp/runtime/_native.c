/*
 * asp._native: the lean call path from Python into a generated kernel.
 *
 * Generated kernels are plain C with one ABI,
 *     int entry(void **ptrs, const int64_t *dims, const double *f, const int64_t *i);
 * so they compile without Python.h.  An Entry object holds one kernel's
 * function pointer and the guards of the signature it was specialized for.
 * Calling it checks every guard in C (type, dtype, ndim, baked shape, shape
 * groups, contiguity, alignment, writability, aliasing), allocates missing
 * outputs, and calls the kernel with the GIL released.  A guard that does not
 * hold returns the `miss` sentinel, never an exception: the Python side then
 * takes the slow path, which validates with clear messages or specializes again.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if NPY_ABI_VERSION < 0x02000000  /* built against NumPy 1.x headers */
#define PyDataType_ELSIZE(d) ((d)->elsize)
#endif

/* -- Reusing large outputs -----------------------------------------------------------------
 * A loop like `y = kernel(x)` allocates a fresh output each call, and the kernel then
 * pays for the operating system zeroing every new page: for a streaming kernel that is
 * as much time as the computation.  Outputs of at least CACHE_MIN bytes are therefore
 * allocated through this NumPy memory handler, whose free() keeps a few blocks for the
 * next allocation of the same size.  The arrays own their data as usual.  CACHE_MIN is
 * glibc's default mmap threshold: a 256^2 float64 output (512 KiB) from malloc paid for
 * fresh pages every call (a 16 us heat step cost 59 us as u = K(u)).  All calls happen
 * with the GIL held (allocation here, deallocation of arrays), so no lock. */
#define CACHE_SLOTS 8  /* blocks of 128 KiB and more compete for them: room for a few sizes */
#define CACHE_MIN ((size_t)1 << 17)
#define CACHE_MAX_TOTAL ((size_t)1 << 30)
static struct { void *p; size_t n; unsigned long stamp; } cache[CACHE_SLOTS];
static size_t cache_total = 0;
static unsigned long cache_clock = 0;

/* -- Where an output starts in its page ------------------------------------------------
 * A streaming kernel whose output starts at, or just past, its input's offset in a 4 KiB
 * page makes its loads wait on its pending stores (4K aliasing; the stencil specializer's
 * aliasing.py then sends each line through a ring in L1, about 10 % slower), and two
 * blocks from malloc start at one offset.  So an output allocated for a call starts half
 * a page from its first input's offset (`want_offset`, set by new_output for the
 * allocation it makes).  Each block has a page more than asked; a header just before the
 * data keeps the block's start and size. */
#define PAGE ((size_t)4096)
#define SLACK (PAGE + 128)
typedef struct { void *raw; size_t n; } block_header;
static long want_offset = -1;  /* the data's offset in its page for the next block, or -1 */

static void *place(void *raw, size_t n)
{
    uintptr_t p = ((uintptr_t)raw + sizeof(block_header) + 63) & ~(uintptr_t)63;
    if (want_offset >= 0) p += ((uintptr_t)want_offset - p) & (PAGE - 1);
    ((block_header *)p)[-1].raw = raw;
    ((block_header *)p)[-1].n = n;
    return (void *)p;
}

/* The block of this size freed last: the one most likely still in cache (in a loop
 * `u = K(u)` the output freed a step ago, not one left from an earlier loop). */
static void *big_malloc(void *ctx, size_t n)
{
    int i, best = -1;
    void *raw;
    (void)ctx;
    for (i = 0; i < CACHE_SLOTS; i++)
        if (cache[i].p != NULL && cache[i].n == n
            && (best < 0 || cache[i].stamp > cache[best].stamp))
            best = i;
    if (best >= 0) {
        raw = cache[best].p;
        cache[best].p = NULL;
        cache_total -= n;
        return place(raw, n);
    }
    if (n > SIZE_MAX - SLACK) return NULL;
    raw = malloc(n + SLACK);
    if (raw == NULL) return NULL;
#ifdef MADV_HUGEPAGE
    if (n >= ((size_t)4 << 20)) {  /* as NumPy does for large arrays */
        uintptr_t a = ((uintptr_t)raw + 4095) & ~(uintptr_t)4095;
        uintptr_t e = ((uintptr_t)raw + n + SLACK) & ~(uintptr_t)4095;
        if (e > a) madvise((void *)a, e - a, MADV_HUGEPAGE);
    }
#endif
    return place(raw, n);
}

static void *big_calloc(void *ctx, size_t nelem, size_t elsize)
{
    void *p;
    if (elsize != 0 && nelem > SIZE_MAX / elsize) return NULL;
    p = big_malloc(ctx, nelem * elsize);
    if (p != NULL) memset(p, 0, nelem * elsize);
    return p;
}

static void big_free(void *ctx, void *ptr, size_t n);

static void *big_realloc(void *ctx, void *ptr, size_t n)
{
    void *p;
    size_t old;
    long want = want_offset;
    if (ptr == NULL) return big_malloc(ctx, n);
    old = ((block_header *)ptr)[-1].n;
    want_offset = -1;
    p = big_malloc(ctx, n);
    want_offset = want;
    if (p == NULL) return NULL;
    memcpy(p, ptr, old < n ? old : n);
    big_free(ctx, ptr, old);
    return p;
}

/* Keep the block; to make room (a slot, and the byte cap), free the blocks kept
 * longest: when a loop moves to another grid size, its blocks replace the old size's
 * instead of every new output paying for fresh pages while stale blocks sit here. */
static void big_free(void *ctx, void *ptr, size_t n)
{
    int i, empty, oldest;
    void *raw;
    (void)ctx;
    if (ptr == NULL) return;
    raw = ((block_header *)ptr)[-1].raw;
    n = ((block_header *)ptr)[-1].n;
    if (n >= CACHE_MIN && n <= CACHE_MAX_TOTAL) {
        for (;;) {
            empty = oldest = -1;
            for (i = 0; i < CACHE_SLOTS; i++) {
                if (cache[i].p == NULL) empty = i;
                else if (oldest < 0 || cache[i].stamp < cache[oldest].stamp) oldest = i;
            }
            if (empty >= 0 && cache_total + n <= CACHE_MAX_TOTAL) {
                cache[empty].p = raw;
                cache[empty].n = n;
                cache[empty].stamp = ++cache_clock;
                cache_total += n;
                return;
            }
            if (oldest < 0) break;
            free(cache[oldest].p);
            cache_total -= cache[oldest].n;
            cache[oldest].p = NULL;
        }
    }
    free(raw);
}

static PyDataMem_Handler big_handler = {
    "asp_reuse_outputs", 1, {NULL, big_malloc, big_calloc, big_realloc, big_free},
};
static PyObject *big_handler_capsule = NULL;

static PyObject *release_cached(PyObject *self, PyObject *unused)
{
    int i;
    size_t freed = cache_total;
    (void)self; (void)unused;
    for (i = 0; i < CACHE_SLOTS; i++) {
        if (cache[i].p != NULL) free(cache[i].p);
        cache[i].p = NULL;
    }
    cache_total = 0;
    return PyLong_FromSize_t(freed);
}

static PyObject *cached_bytes(PyObject *self, PyObject *unused)
{
    (void)self; (void)unused;
    return PyLong_FromSize_t(cache_total);
}

/* A new C-contiguous array; large ones through the reusing handler, their data half a
 * page from `near`'s offset in its page when `near` is not NULL (an input's data). */
static PyArrayObject *new_output(int ndim, npy_intp *shape, int typenum, const void *near)
{
    PyArray_Descr *descr = PyArray_DescrFromType(typenum);
    npy_intp k, n;
    PyObject *old, *prev, *a;
    if (descr == NULL) return NULL;
    n = PyDataType_ELSIZE(descr);
    Py_DECREF(descr);
    for (k = 0; k < ndim; k++) n *= shape[k];
    if ((size_t)n < CACHE_MIN || big_handler_capsule == NULL)
        return (PyArrayObject *)PyArray_SimpleNew(ndim, shape, typenum);
    old = PyDataMem_SetHandler(big_handler_capsule);
    if (old == NULL) return NULL;
    want_offset = near == NULL ? -1
                  : (long)((((uintptr_t)near + PAGE / 2) & (PAGE - 1)) & ~(uintptr_t)63);
    a = PyArray_SimpleNew(ndim, shape, typenum);
    want_offset = -1;
    prev = PyDataMem_SetHandler(old);
    Py_DECREF(old);
    Py_XDECREF(prev);
    return (PyArrayObject *)a;
}

typedef int (*asp_kernel_fn)(void **, const int64_t *, const double *, const int64_t *);

enum { ARG_ARRAY = 0, ARG_FLOAT = 1, ARG_INT = 2 };
/* F_PYBOOL: an int argument that is a Python bool (weak, typed as a bool), not an int. */
enum { F_WRITE = 1, F_ALLOC = 2, F_NOALIAS = 4, F_SCALAR = 8, F_PYBOOL = 16 };

#define MAX_ARGS 32
#define MAX_DIMS 8

typedef struct {
    int kind, typenum, ndim, flags, group; /* a scalar's typenum: -1 a Python number */
    npy_intp shape[MAX_DIMS]; /* -1: any extent */
} argspec;

/* The NumPy type number of a NumPy scalar (np.float32(1), np.int16(3)), else -1. */
static int scalar_typenum(PyObject *obj)
{
    PyArray_Descr *d;
    int t;
    if (!PyArray_IsScalar(obj, Number) && !PyArray_IsScalar(obj, Bool)) return -1;
    d = PyArray_DescrFromScalar(obj);
    if (d == NULL) { PyErr_Clear(); return -1; }
    t = d->type_num;
    Py_DECREF(d);
    return t;
}

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    asp_kernel_fn fn;
    int nargs, ret;
    npy_intp size_lo, size_hi; /* element count of one array must lie in [lo, hi) ... */
    int size_arg;              /* ... of argument size_arg (< 0: the first array) */
    argspec spec[MAX_ARGS];
    PyObject *miss;      /* returned when a guard does not hold */
    PyObject *errors;    /* tuple of (exception type, message) for kernel codes 1.. */
    PyObject *keepalive; /* whatever keeps the shared object loaded */
    PyObject *assume;    /* NULL, or a tuple of (namespace, name, value): the module-level
                            names the code baked in, each still bound to what it was */
    PyObject *next;      /* NULL, or the entry a call goes on to when a guard misses here
                            (the hot entries of other size buckets) */
    int64_t sample_every; /* > 0: every sample_every-th call misses on purpose, so the
                             runtime can time the tuned winner on a real call */
    int64_t calls;
} Entry;

static void Entry_dealloc(Entry *self)
{
    Py_XDECREF(self->miss);
    Py_XDECREF(self->errors);
    Py_XDECREF(self->keepalive);
    Py_XDECREF(self->assume);
    Py_XDECREF(self->next);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Whether an array of a subclass is one a kernel cannot compute on faithfully, so the guard
   misses and the slow path refuses it by name (asp.runtime.abi.refuse_special_array): a
   numpy.ma.MaskedArray (a kernel would compute on its data as if nothing were masked), or
   a subclass with arithmetic of its own (__array_ufunc__ or __array_function__ other than
   ndarray's: arrays with units, whose u + v converts units or refuses).  numpy.ma is found
   in sys.modules, never imported: there is no masked array before numpy.ma has been. */
static PyObject *masked_type = NULL;  /* numpy.ma.MaskedArray, once numpy.ma is loaded */
static PyObject *masked_name = NULL;  /* "numpy.ma" */
static PyObject *ufunc_name = NULL, *function_name = NULL;  /* the protocols' names */
static PyObject *plain_ufunc = NULL, *plain_function = NULL;  /* ndarray's own */

static int is_masked(PyObject *obj)
{
    if (masked_type == NULL) {
        PyObject *ma = PyImport_GetModule(masked_name);  /* never imports it */
        if (ma == NULL) {
            PyErr_Clear();
            return 0;
        }
        masked_type = PyObject_GetAttrString(ma, "MaskedArray");
        Py_DECREF(ma);
        if (masked_type == NULL || !PyType_Check(masked_type)) {
            Py_CLEAR(masked_type);
            PyErr_Clear();
            return 0;
        }
    }
    return PyObject_TypeCheck(obj, (PyTypeObject *)masked_type);
}

/* 1 if the type's attribute `name` is not ndarray's `plain` (or cannot be read). */
static int differs(PyObject *type, PyObject *name, PyObject *plain)
{
    PyObject *f = PyObject_GetAttr(type, name);
    int own = f != plain;
    if (f == NULL) PyErr_Clear();
    Py_XDECREF(f);
    return own;
}

static int is_special(PyObject *obj)
{
    PyObject *type = (PyObject *)Py_TYPE(obj);
    return is_masked(obj) || differs(type, ufunc_name, plain_ufunc) ||
           differs(type, function_name, plain_function);
}

static PyObject *Entry_call(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Entry *self = (Entry *)op;
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    void *ptrs[MAX_ARGS];
    int64_t dims[MAX_ARGS * MAX_DIMS];
    double fs[MAX_ARGS];
    int64_t is[MAX_ARGS];
    PyArrayObject *arrs[MAX_ARGS];
    const npy_intp *gshape[MAX_ARGS];
    PyObject *allocated[MAX_ARGS];
    int nalloc = 0, nf = 0, ni = 0, np_ = 0, nd = 0, i, j;
    const void *near = NULL;
    PyObject *result;

    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        PyErr_SetString(PyExc_TypeError, "asp kernel entries take positional arguments only");
        return NULL;
    }
    if (n != self->nargs) {
        PyErr_Format(PyExc_TypeError, "asp kernel entry expects %d arguments, got %zd",
                     self->nargs, n);
        return NULL;
    }
    for (i = 0; i < MAX_ARGS; i++) gshape[i] = NULL;

    /* The names the kernel read when it was specialized still mean what they meant
     * (a module constant rebound since must not keep giving the old result).  A name
     * that was unbound is expected to be the miss sentinel. */
    if (self->assume != NULL) {
        Py_ssize_t k, na = PyTuple_GET_SIZE(self->assume);
        for (k = 0; k < na; k++) {
            PyObject *g = PyTuple_GET_ITEM(self->assume, k);
            PyObject *ns = PyTuple_GET_ITEM(g, 0), *now;
            if (PyDict_Check(ns)) {
                now = PyDict_GetItemWithError(ns, PyTuple_GET_ITEM(g, 1));
                if (now == NULL && PyErr_Occurred()) return NULL;
            } else if (PyFunction_Check(ns)) {
                /* a function the code was compiled from: its code and defaults, which
                 * can be replaced in place (0, 1, 2: see assuming) */
                long which = PyLong_AsLong(PyTuple_GET_ITEM(g, 1));
                now = which == 0 ? PyFunction_GET_CODE(ns)
                    : which == 1 ? PyFunction_GET_DEFAULTS(ns) : PyFunction_GET_KW_DEFAULTS(ns);
            } else {
                now = PyCell_GET(ns);
            }
            if ((now == NULL ? self->miss : now) != PyTuple_GET_ITEM(g, 2)) goto miss;
        }
    }

    /* First pass: check the guards of every given argument. */
    for (i = 0; i < n; i++) {
        const argspec *s = &self->spec[i];
        PyObject *obj = args[i];
        arrs[i] = NULL;
        if (s->kind == ARG_ARRAY) {
            PyArrayObject *a;
            int fl;
            if (obj == Py_None && (s->flags & F_ALLOC)) continue;
            if (!PyArray_Check(obj)) goto miss;
            if (Py_TYPE(obj) != &PyArray_Type && is_special(obj)) goto miss;
            a = (PyArrayObject *)obj;
            fl = PyArray_FLAGS(a);
            if (PyArray_TYPE(a) != s->typenum || PyArray_NDIM(a) != s->ndim) goto miss;
            if (!PyArray_ISNOTSWAPPED(a)) goto miss;  /* '>f8' has NPY_DOUBLE's number too */
            if ((fl & (NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED)) !=
                (NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED)) goto miss;
            if ((s->flags & F_WRITE) && !(fl & NPY_ARRAY_WRITEABLE)) goto miss;
            for (j = 0; j < s->ndim; j++)
                if (s->shape[j] >= 0 && PyArray_DIM(a, j) != s->shape[j]) goto miss;
            if (s->group >= 0) {
                const npy_intp *ref = gshape[s->group];
                if (ref == NULL) gshape[s->group] = PyArray_DIMS(a);
                else for (j = 0; j < s->ndim; j++) if (ref[j] != PyArray_DIM(a, j)) goto miss;
            }
            arrs[i] = a;
        } else if (s->typenum >= 0) {
            /* A NumPy scalar, typed by NumPy's rules as its dtype (strong): only that. */
            if (scalar_typenum(obj) != s->typenum) goto miss;
        } else if (s->kind == ARG_FLOAT) {
            /* A Python float (weak); np.float64, a float subclass, is strong: not here. */
            if (!PyFloat_CheckExact(obj)) goto miss;
        } else {
            /* A Python int, or a Python bool where the spec says so: never one for the
             * other (True + np.True_ is a bool, 1 + np.True_ an int64). */
            if (!PyLong_Check(obj) || !PyBool_Check(obj) != !(s->flags & F_PYBOOL)) goto miss;
        }
    }

    /* A tuned entry serves only the problem sizes it was tuned for. */
    if (self->size_lo > 0 || self->size_hi >= 0) {
        npy_intp size = -1;
        if (self->size_arg >= 0 && self->size_arg < n) {
            if (arrs[self->size_arg] != NULL) size = PyArray_SIZE(arrs[self->size_arg]);
        } else {
            for (i = 0; i < n && size < 0; i++)
                if (arrs[i] != NULL) size = PyArray_SIZE(arrs[i]);
        }
        if (size < self->size_lo || (self->size_hi >= 0 && size >= self->size_hi)) goto miss;
    }

    /* A call this entry would serve: one in sample_every goes back to be timed (a call
     * that misses a guard here is not counted: it belongs to another entry). */
    if (self->sample_every > 0 && ++self->calls >= self->sample_every) {
        self->calls = 0;
        goto miss;
    }

    /* Outputs the kernel must not share memory with (e.g. a stencil's output). */
    for (i = 0; i < n; i++) {
        if (arrs[i] == NULL || !(self->spec[i].flags & F_NOALIAS)) continue;
        {
            char *lo = PyArray_BYTES(arrs[i]);
            char *hi = lo + PyArray_NBYTES(arrs[i]);
            for (j = 0; j < n; j++) {
                char *lo2, *hi2;
                if (j == i || arrs[j] == NULL) continue;
                lo2 = PyArray_BYTES(arrs[j]);
                hi2 = lo2 + PyArray_NBYTES(arrs[j]);
                if (lo < hi2 && lo2 < hi) goto miss;
            }
        }
    }

    /* Second pass: allocate missing outputs (half a page from the first array given:
     * see place()), gather pointers, extents, scalars. */
    for (i = 0; i < n && near == NULL; i++)
        if (self->spec[i].kind == ARG_ARRAY && arrs[i] != NULL) near = PyArray_DATA(arrs[i]);
    for (i = 0; i < n; i++) {
        const argspec *s = &self->spec[i];
        if (s->kind == ARG_ARRAY) {
            PyArrayObject *a = arrs[i];
            if (a == NULL) {
                const npy_intp *shape = s->group >= 0 ? gshape[s->group] : NULL;
                npy_intp tmp[MAX_DIMS];
                if (shape == NULL) {
                    for (j = 0; j < s->ndim; j++) {
                        if (s->shape[j] < 0) goto miss;
                        tmp[j] = s->shape[j];
                    }
                    shape = tmp;
                }
                a = new_output(s->ndim, (npy_intp *)shape, s->typenum, near);
                if (a == NULL) goto fail;
                allocated[nalloc++] = (PyObject *)a;
                arrs[i] = a;
            }
            ptrs[np_++] = PyArray_DATA(a);
            for (j = 0; j < s->ndim; j++) dims[nd++] = (int64_t)PyArray_DIM(a, j);
        } else if (s->kind == ARG_FLOAT) {
            double v = PyFloat_CheckExact(args[i]) ? PyFloat_AS_DOUBLE(args[i])
                                                   : PyFloat_AsDouble(args[i]);
            if (v == -1.0 && PyErr_Occurred()) { PyErr_Clear(); goto miss; }
            fs[nf++] = v;
        } else if (s->typenum == NPY_BOOL) {  /* np.bool_ has no __index__ */
            int v = PyObject_IsTrue(args[i]);
            if (v < 0) goto fail;
            is[ni++] = v;
        } else {
            int overflow = 0;
            long long v = PyLong_AsLongLongAndOverflow(args[i], &overflow);
            if (overflow) goto miss;
            is[ni++] = (int64_t)v;
        }
    }

    {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = self->fn(ptrs, dims, fs, is);
        Py_END_ALLOW_THREADS
        if (rc != 0) {
            if (rc > 0 && rc <= PyTuple_GET_SIZE(self->errors)) {
                PyObject *e = PyTuple_GET_ITEM(self->errors, rc - 1);
                PyErr_SetObject(PyTuple_GET_ITEM(e, 0), PyTuple_GET_ITEM(e, 1));
            } else {
                PyErr_Format(PyExc_RuntimeError, "asp kernel returned error code %d", rc);
            }
            goto fail;
        }
    }

    if (self->ret < 0) {
        result = Py_None;
        Py_INCREF(result);
    } else if (arrs[self->ret] != NULL && (self->spec[self->ret].flags & F_SCALAR)) {
        /* A scalar result (a reduction): the first element, as a NumPy scalar. */
        PyArrayObject *a = arrs[self->ret];
        result = PyArray_Scalar(PyArray_DATA(a), PyArray_DESCR(a), (PyObject *)a);
        if (result == NULL) goto fail;
    } else {
        result = arrs[self->ret] ? (PyObject *)arrs[self->ret] : Py_None;
        Py_INCREF(result);
    }
    for (i = 0; i < nalloc; i++) Py_DECREF(allocated[i]);
    return result;

miss:
    for (i = 0; i < nalloc; i++) Py_DECREF(allocated[i]);
    if (self->next != NULL) return PyObject_Vectorcall(self->next, args, nargsf, kwnames);
    Py_INCREF(self->miss);
    return self->miss;
fail:
    for (i = 0; i < nalloc; i++) Py_DECREF(allocated[i]);
    return NULL;
}

/* Entry(fnptr, specs, ret, miss, errors, keepalive)
 * specs: sequence of (kind, typenum, ndim, flags, group, shape) with shape a tuple
 * of ndim ints (-1 for any extent). */
static PyObject *Entry_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    unsigned long long fnptr;
    PyObject *specs, *miss, *errors, *keepalive;
    int ret;
    Entry *self;
    Py_ssize_t i, n;

    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "Entry takes positional arguments only");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "KOiOO!O", &fnptr, &specs, &ret, &miss,
                          &PyTuple_Type, &errors, &keepalive))
        return NULL;
    if (fnptr == 0) {
        PyErr_SetString(PyExc_ValueError, "Entry: null function pointer");
        return NULL;
    }
    specs = PySequence_Fast(specs, "Entry: specs must be a sequence");
    if (specs == NULL) return NULL;
    n = PySequence_Fast_GET_SIZE(specs);
    if (n > MAX_ARGS) {
        Py_DECREF(specs);
        PyErr_Format(PyExc_ValueError, "Entry: at most %d arguments", MAX_ARGS);
        return NULL;
    }
    if (ret >= n) {
        Py_DECREF(specs);
        PyErr_SetString(PyExc_ValueError, "Entry: ret out of range");
        return NULL;
    }
    self = (Entry *)type->tp_alloc(type, 0);
    if (self == NULL) { Py_DECREF(specs); return NULL; }
    for (i = 0; i < n; i++) {
        argspec *s = &self->spec[i];
        PyObject *shape;
        Py_ssize_t j;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(specs, i), "iiiiiO!", &s->kind, &s->typenum,
                              &s->ndim, &s->flags, &s->group, &PyTuple_Type, &shape))
            goto bad;
        if (s->kind < ARG_ARRAY || s->kind > ARG_INT || s->ndim < 0 || s->ndim > MAX_DIMS ||
            s->group >= MAX_ARGS || PyTuple_GET_SIZE(shape) != (s->kind == ARG_ARRAY ? s->ndim : 0)) {
            PyErr_Format(PyExc_ValueError, "Entry: malformed spec for argument %zd", i);
            goto bad;
        }
        for (j = 0; j < s->ndim; j++) {
            s->shape[j] = (npy_intp)PyLong_AsSsize_t(PyTuple_GET_ITEM(shape, j));
            if (s->shape[j] == -1 && PyErr_Occurred()) goto bad;
        }
    }
    Py_DECREF(specs);
    self->fn = (asp_kernel_fn)(uintptr_t)fnptr;
    self->nargs = (int)n;
    self->ret = ret;
    Py_INCREF(miss); self->miss = miss;
    Py_INCREF(errors); self->errors = errors;
    Py_INCREF(keepalive); self->keepalive = keepalive;
    self->vectorcall = Entry_call;
    self->size_lo = 0;
    self->size_hi = -1;
    self->size_arg = -1;
    self->assume = NULL;
    self->next = NULL;
    self->sample_every = 0;
    self->calls = 0;
    return (PyObject *)self;
bad:
    Py_DECREF(specs);
    Py_DECREF(self);
    return NULL;
}

static PyTypeObject EntryType;

/* A new reference to a copy of self sharing its kernel, guards and references. */
static Entry *entry_copy(Entry *self)
{
    Entry *copy = (Entry *)EntryType.tp_alloc(&EntryType, 0);
    if (copy == NULL) return NULL;
    memcpy((char *)copy + sizeof(PyObject), (char *)self + sizeof(PyObject),
           sizeof(Entry) - sizeof(PyObject));
    Py_XINCREF(copy->miss);
    Py_XINCREF(copy->errors);
    Py_XINCREF(copy->keepalive);
    Py_XINCREF(copy->assume);
    Py_XINCREF(copy->next);
    return copy;
}

/* entry.restricted(lo, hi[, arg]): the same kernel and guards, serving only calls whose
 * array argument ``arg`` (default: the first array) has an element count in [lo, hi)
 * (hi < 0: no upper bound). */
static PyObject *Entry_restricted(PyObject *op, PyObject *args)
{
    Entry *self = (Entry *)op, *copy;
    Py_ssize_t lo, hi;
    int arg = -1;
    if (!PyArg_ParseTuple(args, "nn|i", &lo, &hi, &arg)) return NULL;
    if (arg >= self->nargs) {
        PyErr_Format(PyExc_ValueError, "restricted(): arg=%d, but the entry takes %d arguments",
                     arg, self->nargs);
        return NULL;
    }
    copy = entry_copy(self);
    if (copy == NULL) return NULL;
    copy->size_lo = lo;
    copy->size_hi = hi;
    copy->size_arg = arg;
    return (PyObject *)copy;
}

/* entry.assuming(guards): the same kernel, serving calls only while every (namespace,
 * name, value) of guards holds: namespace (a dict, or a cell) maps name to value
 * (identity), or lacks it and value is the miss sentinel; or namespace is a function
 * and name 0, 1 or 2 selects its __code__, __defaults__ or __kwdefaults__ (the miss
 * sentinel for None). */
static PyObject *Entry_assuming(PyObject *op, PyObject *guards)
{
    Entry *self = (Entry *)op, *copy;
    Py_ssize_t k;
    if (!PyTuple_Check(guards)) {
        PyErr_SetString(PyExc_TypeError, "assuming(): guards must be a tuple");
        return NULL;
    }
    for (k = 0; k < PyTuple_GET_SIZE(guards); k++) {
        PyObject *g = PyTuple_GET_ITEM(guards, k);
        PyObject *ns;
        if (!PyTuple_Check(g) || PyTuple_GET_SIZE(g) != 3) goto bad;
        ns = PyTuple_GET_ITEM(g, 0);
        if (PyFunction_Check(ns)) {
            PyObject *which = PyTuple_GET_ITEM(g, 1);
            long w = PyLong_Check(which) ? PyLong_AsLong(which) : -1;
            if (w < 0 || w > 2) {
                PyErr_Clear();
                goto bad;
            }
        } else if (!(PyDict_Check(ns) || PyCell_Check(ns))) {
            goto bad;
        }
    }
    goto good;
bad:
    PyErr_SetString(PyExc_TypeError, "assuming(): each guard is (dict or cell, name, value) "
                    "or (function, 0-2, value)");
    return NULL;
good:
    copy = entry_copy(self);
    if (copy == NULL) return NULL;
    Py_XDECREF(copy->assume);
    Py_INCREF(guards);
    copy->assume = PyTuple_GET_SIZE(guards) ? guards : NULL;
    if (copy->assume == NULL) Py_DECREF(guards);
    return (PyObject *)copy;
}

/* entry.chained(next): a copy that, when one of its guards misses, passes the call on to
 * next (an entry, or None for the miss sentinel). */
static PyObject *Entry_chained(PyObject *op, PyObject *next)
{
    Entry *self = (Entry *)op, *copy;
    if (next != Py_None && !PyObject_TypeCheck(next, &EntryType)) {
        PyErr_SetString(PyExc_TypeError, "chained(): next must be an Entry or None");
        return NULL;
    }
    copy = entry_copy(self);
    if (copy == NULL) return NULL;
    Py_XDECREF(copy->next);
    copy->next = next == Py_None ? NULL : next;
    Py_XINCREF(copy->next);
    return (PyObject *)copy;
}

/* entry.sampled(n): a copy of which every n-th call misses (n <= 0: none). */
static PyObject *Entry_sampled(PyObject *op, PyObject *arg)
{
    Entry *self = (Entry *)op, *copy;
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    copy = entry_copy(self);
    if (copy == NULL) return NULL;
    copy->sample_every = n > 0 ? (int64_t)n : 0;
    copy->calls = 0;
    return (PyObject *)copy;
}

static PyMethodDef Entry_methods[] = {
    {"sampled", Entry_sampled, METH_O,
     "sampled(n): a copy of which every n-th call returns the miss sentinel, so the "
     "caller can time a real call of the tuned winner."},
    {"chained", Entry_chained, METH_O,
     "chained(next): a copy that passes a call whose guards miss on to next (or None)."},
    {"assuming", Entry_assuming, METH_O,
     "assuming(guards): a copy that serves calls only while each (namespace, name, value) "
     "of guards holds (the value is the miss sentinel for an unbound name)."},
    {"restricted", Entry_restricted, METH_VARARGS,
     "restricted(lo, hi[, arg]): a copy that only serves calls whose array argument arg "
     "(default: the first array) has an element count in [lo, hi)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EntryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "asp._native.Entry",
    .tp_basicsize = sizeof(Entry),
    .tp_dealloc = (destructor)Entry_dealloc,
    .tp_vectorcall_offset = offsetof(Entry, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A compiled kernel with its guards; calling it returns the miss sentinel "
              "when a guard does not hold.",
    .tp_new = Entry_new,
    .tp_methods = Entry_methods,
};

/* empty(shape, dtype[, near]): an uninitialised C-contiguous array, large ones through the
 * reusing handler (for outputs allocated in Python, e.g. a stencil's __call__), half a
 * page from the array `near`'s data. */
static PyObject *native_empty(PyObject *self, PyObject *args)
{
    PyObject *shape_obj, *seq, *near_obj = Py_None;
    const void *near = NULL;
    PyArray_Descr *descr = NULL;
    npy_intp shape[MAX_DIMS];
    Py_ssize_t k, ndim;
    int typenum;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO&|O", &shape_obj, PyArray_DescrConverter, &descr, &near_obj))
        return NULL;
    if (near_obj != Py_None) {
        if (!PyArray_Check(near_obj)) {
            Py_DECREF(descr);
            PyErr_SetString(PyExc_TypeError, "empty: near must be a NumPy array or None");
            return NULL;
        }
        near = PyArray_DATA((PyArrayObject *)near_obj);
    }
    typenum = descr->type_num;
    Py_DECREF(descr);
    if (!PyTypeNum_ISNUMBER(typenum) && typenum != NPY_BOOL) {
        PyErr_SetString(PyExc_TypeError, "empty: expected a numeric dtype");
        return NULL;
    }
    seq = PySequence_Fast(shape_obj, "empty: shape must be a sequence of ints");
    if (seq == NULL) return NULL;
    ndim = PySequence_Fast_GET_SIZE(seq);
    if (ndim > MAX_DIMS) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "empty: too many dimensions");
        return NULL;
    }
    for (k = 0; k < ndim; k++) {
        shape[k] = PyNumber_AsSsize_t(PySequence_Fast_GET_ITEM(seq, k), PyExc_OverflowError);
        if (shape[k] < 0) {
            Py_DECREF(seq);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "empty: negative dimension");
            return NULL;
        }
    }
    Py_DECREF(seq);
    return (PyObject *)new_output((int)ndim, shape, typenum, near);
}

static PyMethodDef native_methods[] = {
    {"empty", native_empty, METH_VARARGS,
     "empty(shape, dtype[, near]): an uninitialised array; outputs of REUSE_MIN bytes or "
     "more reuse freed blocks, their data half a page from the array near's."},
    {"release_cached", release_cached, METH_NOARGS,
     "Free the output blocks kept for reuse; returns how many bytes were freed."},
    {"cached_bytes", cached_bytes, METH_NOARGS, "Bytes of output blocks kept for reuse."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "asp._native", "asp's lean call path into generated kernels.", -1,
    native_methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    PyObject *m;
    import_array();
    if (PyType_Ready(&EntryType) < 0) return NULL;
    m = PyModule_Create(&native_module);
    if (m == NULL) return NULL;
    big_handler_capsule = PyCapsule_New(&big_handler, "mem_handler", NULL);
    if (big_handler_capsule == NULL) return NULL;
    masked_name = PyUnicode_InternFromString("numpy.ma");
    if (masked_name == NULL) return NULL;
    ufunc_name = PyUnicode_InternFromString("__array_ufunc__");
    function_name = PyUnicode_InternFromString("__array_function__");
    if (ufunc_name == NULL || function_name == NULL) return NULL;
    plain_ufunc = PyObject_GetAttr((PyObject *)&PyArray_Type, ufunc_name);
    plain_function = PyObject_GetAttr((PyObject *)&PyArray_Type, function_name);
    if (plain_ufunc == NULL || plain_function == NULL) return NULL;
    Py_INCREF(&EntryType);
    if (PyModule_AddObject(m, "Entry", (PyObject *)&EntryType) < 0) {
        Py_DECREF(&EntryType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "REUSE_MIN", (long)CACHE_MIN);
    PyModule_AddIntConstant(m, "REUSE_SLOTS", CACHE_SLOTS);
    PyModule_AddIntConstant(m, "ARG_ARRAY", ARG_ARRAY);
    PyModule_AddIntConstant(m, "ARG_FLOAT", ARG_FLOAT);
    PyModule_AddIntConstant(m, "ARG_INT", ARG_INT);
    PyModule_AddIntConstant(m, "F_WRITE", F_WRITE);
    PyModule_AddIntConstant(m, "F_ALLOC", F_ALLOC);
    PyModule_AddIntConstant(m, "F_NOALIAS", F_NOALIAS);
    PyModule_AddIntConstant(m, "F_PYBOOL", F_PYBOOL);
    PyModule_AddIntConstant(m, "MAX_ARGS", MAX_ARGS);
    PyModule_AddIntConstant(m, "MAX_DIMS", MAX_DIMS);
    return m;
}
