"""Unpickle numpy arrays from an untrusted file: numbers and their containers,
nothing else.

``np.save(dict)`` writes a *pickle*: a little program that rebuilds the
objects by calling functions named in the file.  Two kinds of harm hide in
such a program:

1. **Calling the wrong function** (``os.system``, ``eval``).  A pickle calls
   only functions it first *names*; every name goes through ``find_class``,
   which here answers from a fixed table of numpy functions.  Anything else
   is refused before it could run.

2. **Calling the right function with forged arguments.**  numpy rebuilds an
   array from raw bytes plus a dtype that says how to read them.  If that
   dtype says "object", numpy reads the bytes as *addresses of Python
   objects* and follows them: a 200-byte file then crashes the process, or
   worse.  A dtype can claim to hold objects openly (``dtype('O')``), inside
   a structured dtype (a field of type object), or secretly: a dtype's
   pickled state (``__setstate__``) sets its internal flags, so a forged state
   can turn off the very flag that makes numpy refuse raw bytes for objects.

So this unpickler also checks the *arguments* of every numpy call and every
``__setstate__`` (the pickle's BUILD instruction) before numpy sees them:

* a dtype may only be one of the plain numeric types (bool, int, uint,
  float) or the plain object type, built from its short name (``'f4'``,
  ``'O8'``), and its state must be the one numpy itself writes for it;
* raw bytes may only be read with a plain numeric dtype, and only if their
  length matches the shape exactly;
* an object array (the container ``np.save`` wraps a dict or list in) is
  only filled from a *list* of objects the unpickler already built, never
  from bytes;
* only an array that the file created empty (``_reconstruct``) may be
  filled, and only once.

The table of functions was found by disassembling what ``np.save`` writes
(``python -m pickletools``): arrays are rebuilt by
``_reconstruct(ndarray, (0,), b'b')`` and BUILD, dtypes by ``dtype('f4',
False, True)`` and BUILD, protocol 5 uses ``_frombuffer`` and numpy scalars
``scalar``.  dict, list, str and bytes need no function: pickle has
instructions for them.

It uses the pure-Python unpickler of the standard library
(``pickle._Unpickler``) because only there can a subclass check the BUILD
instruction; a weights file holds a few hundred instructions, so this costs
little even for a large file: the arrays themselves are copied by numpy.
"""

import pickle
import re
import reprlib

import numpy as np

try:                                    # numpy >= 2 keeps its core here ...
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:                     # ... numpy 1.x here
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

# The dtype names that numpy's pickles use: 'b1' (bool), 'i8', 'u1', 'f4'
# and so on for numbers, 'O8' ('O4' on 32-bit Python) for objects.  The byte
# order is not part of the name: it travels in the dtype's state.
_NUMERIC_NAME = re.compile(r'(b1|[iu][1248]|f[248])\Z')
_OBJECT_NAME = re.compile(r'O[48]?\Z')

# Error messages quote values from the file: briefly, whatever their size.
_short = reprlib.Repr()
_short.maxtuple = _short.maxlist = 10
_short.maxstring = _short.maxother = 60


class RefusedPickle(pickle.UnpicklingError):
    """The pickle asks for something a file of numeric arrays never needs.
    ``reason`` says what, in words for the user."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def load(file, encoding='latin1'):
    """Unpickle one object from the binary ``file``, allowing only numeric
    numpy arrays, object arrays filled with such objects, and the dicts,
    lists, tuples, strings and numbers that pickle builds by itself.

    ``encoding='latin1'`` reads the byte strings of Python 2 pickles (the
    original ``bvlc_alexnet.npy`` was written by Python 2).  Raises
    :class:`RefusedPickle` for anything else; a damaged pickle raises what
    the standard unpickler raises (``UnpicklingError``, ``EOFError``, ...).
    """
    return _SafeUnpickler(file, encoding=encoding).load()


# --------------------------------------------------------------------------
# Checking dtypes
# --------------------------------------------------------------------------

def _is_plain_object(dtype):
    """The object dtype exactly as numpy makes it (no fields, real flags)."""
    return (dtype.kind == 'O' and dtype.names is None
            and dtype.subdtype is None
            and dtype.flags == np.dtype(object).flags)


def _check_numeric(dtype, use):
    """Refuse any dtype but a plain number before it reads raw bytes.

    ``hasobject`` alone would not do: it is computed from the flags, which
    a forged state can clear; so the kind, size, fields and flags are all
    compared with numpy's own dtype of that kind and size.
    """
    name = f'{dtype.kind}{dtype.itemsize}' if isinstance(
        dtype, np.dtype) else ''
    plain = (_NUMERIC_NAME.match(name)
             and dtype.names is None and dtype.subdtype is None
             and not dtype.hasobject
             and dtype.flags == np.dtype(name).flags)
    if not plain:
        raise RefusedPickle(
            f'it asks numpy to read raw bytes as {_describe(dtype)} ({use}); '
            f'only plain numbers (bool, int, float) may come from raw bytes, '
            f'or numpy could be made to follow addresses chosen by the file')


def _describe(value):
    """A short, safe description of a dtype (or of something else)."""
    if isinstance(value, np.dtype):
        return f'dtype {value.kind}{value.itemsize} (fields: {value.names})'
    return f'a {type(value).__name__}'


def _checked_dtype_state(dtype, state):
    """Accept a dtype's BUILD state only if it is the state numpy writes for
    this dtype in some byte order: no fields, no sub-arrays, no flags of
    its own (the flags are what say "this holds objects")."""
    if not isinstance(state, tuple) or len(state) not in (8, 9):
        raise RefusedPickle(f'a dtype state {_describe(state)} of an '
                            f'unknown form')
    byteorder = state[1]
    if byteorder not in ('<', '>', '|', '='):
        raise RefusedPickle(
            f'a dtype with byte order {_short.repr(byteorder)}')
    canonical = dtype.newbyteorder(byteorder).__reduce__()[2]
    metadata_ok = len(state) == 8 or state[8] is None
    if state[0] not in (3, 4) or state[1:8] != canonical[1:8] \
            or not metadata_ok:
        raise RefusedPickle(
            f'a forged dtype state {_short.repr(state)} for '
            f'{_describe(dtype)}; numpy writes {canonical!r}')
    return state


def _count(shape):
    """Elements in ``shape``, which must be a tuple of non-negative ints."""
    if not isinstance(shape, tuple) or not all(
            type(d) is int and d >= 0 for d in shape):
        raise RefusedPickle(f'an array shape {_short.repr(shape)}')
    total = 1
    for dim in shape:
        total *= dim
    return total


def _nbytes(data):
    """Length in bytes of raw array data: bytes, a latin-1 str (Python 2
    pickles read with encoding='latin1'), or a bytearray (protocol 5)."""
    if isinstance(data, (bytes, bytearray, str)):
        return len(data)
    if isinstance(data, getattr(pickle, 'PickleBuffer', ())):  # Python 3.8+
        return memoryview(data).nbytes
    raise RefusedPickle(f'array data in {_describe(data)}, not in bytes')


# --------------------------------------------------------------------------
# The unpickler
# --------------------------------------------------------------------------

class _SafeUnpickler(pickle._Unpickler):
    """``find_class`` answers from a table of checking stand-ins for numpy's
    functions, and BUILD (``__setstate__``) is checked for dtypes and arrays
    and refused for everything else."""

    def __init__(self, file, **options):
        super().__init__(file, **options)
        # Arrays made by _reconstruct that are still waiting for their BUILD;
        # keyed by id, holding the array so that the id stays unique.
        self._unfilled = {}
        numpy_functions = {
            '.multiarray': {'_reconstruct': self._reconstruct,
                            'scalar': self._scalar},
            # protocol 5 rebuilds arrays with frombuffer(...).reshape(...)
            '.numeric': {'_frombuffer': self._frombuffer},
        }
        # Each name maps straight to a stand-in, so the unpickler never
        # imports a module named by the file.  numpy 1.x files say
        # 'numpy.core', numpy 2 files 'numpy._core'.
        self._globals = {('numpy', 'ndarray'): _ndarray_marker,
                         ('numpy', 'dtype'): _make_dtype,
                         ('_codecs', 'encode'): _latin1_encode}
        for core in ('numpy.core', 'numpy._core'):
            for module, functions in numpy_functions.items():
                for name, function in functions.items():
                    self._globals[(core + module, name)] = function

    def find_class(self, module, name):
        try:
            return self._globals[(module, name)]
        except (KeyError, TypeError):
            raise RefusedPickle(
                f'its pickle asks for {module}.{name!s:.100}, which a '
                f'weights file never needs') from None

    # -- the numpy functions, with their arguments checked ----------------

    def _reconstruct(self, cls, shape, typecode):
        """``_reconstruct(ndarray, (0,), b'b')``: an empty array that BUILD
        then fills.  Only that exact empty start is allowed."""
        if cls is not _ndarray_marker or typecode not in (b'b', 'b') \
                or _count(shape) != 0:
            raise RefusedPickle(
                f'_reconstruct({_describe(cls)}, {_short.repr(shape)}, '
                f'{_short.repr(typecode)}), which np.save never writes')
        array = _multiarray._reconstruct(np.ndarray, (0,), b'b')
        self._unfilled[id(array)] = array
        return array

    def _frombuffer(self, buffer, dtype, shape, order):
        _check_numeric(dtype, 'frombuffer')
        if order not in ('C', 'F') or \
                _nbytes(buffer) != _count(shape) * dtype.itemsize:
            raise RefusedPickle(f'frombuffer with {_nbytes(buffer)} bytes '
                                f'for shape {_short.repr(shape)} of {dtype}')
        return _numeric._frombuffer(buffer, dtype, shape, order)

    @staticmethod
    def _scalar(dtype, data=None):
        _check_numeric(dtype, 'a scalar')
        if _nbytes(data) != dtype.itemsize:
            raise RefusedPickle(f'a {dtype} scalar from {_nbytes(data)} bytes')
        return _multiarray.scalar(dtype, data)

    # -- BUILD --------------------------------------------------------------

    def load_build(self):
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, np.dtype):
            target.__setstate__(_checked_dtype_state(target, state))
        elif isinstance(target, np.ndarray):
            if self._unfilled.pop(id(target), None) is not target:
                raise RefusedPickle('it refills an array it did not create '
                                    'empty, or refills one twice')
            target.__setstate__(_checked_array_state(state))
        else:
            raise RefusedPickle(f'it sets the state of {_describe(target)}; '
                                f'only dtypes and arrays have one')

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build


def _checked_array_state(state):
    """An array's BUILD state: ``(version, shape, dtype, fortran, data)``
    (old numpy: without the version).  Numbers come from bytes of exactly
    the right length; objects only from a list of already built objects."""
    if isinstance(state, tuple) and len(state) == 4:
        state = (1,) + state
    if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
        raise RefusedPickle(f'an array state {_describe(state)} of an '
                            f'unknown form')
    _, shape, dtype, _, data = state
    count = _count(shape)
    if isinstance(dtype, np.dtype) and _is_plain_object(dtype):
        if not isinstance(data, list) or len(data) != count:
            raise RefusedPickle(
                f'an object array of {count} items filled from '
                f'{_describe(data)}; an object array must be filled from a '
                f'list of objects, never from raw bytes')
        return state
    _check_numeric(dtype, 'an array')
    if _nbytes(data) != count * dtype.itemsize:
        raise RefusedPickle(f'an array of shape {_short.repr(shape)} and '
                            f'{dtype} from {_nbytes(data)} bytes')
    return state


def _ndarray_marker(*args, **kwargs):
    """Stands for ``numpy.ndarray``, which a pickle names only as the first
    argument of ``_reconstruct``.  Calling it would make an array over bytes
    of the file's choosing, with strides and offsets of its choosing."""
    raise RefusedPickle('it calls numpy.ndarray on its own buffer, which '
                        'np.save never writes')


def _make_dtype(name, align=False, copy=True):
    """Stand-in for ``numpy.dtype(name, align, copy)``: only the short names
    of numbers and of the plain object type.  Always a fresh copy, so the
    BUILD that follows can never change numpy's shared float32 (etc.)."""
    if isinstance(name, bytes):
        name = name.decode('latin1')
    if not isinstance(name, str) or not (
            _NUMERIC_NAME.match(name) or _OBJECT_NAME.match(name)):
        raise RefusedPickle(
            f'a dtype {_short.repr(name)}; a weights file holds only numbers '
            f'(bool, int, uint, float) and plain object containers')
    return np.dtype(name, False, True)


def _latin1_encode(text, encoding='latin1'):
    """Stand-in for ``_codecs.encode``.

    Python 3 pickles with protocol 0-2 have no opcode for ``bytes``, so they
    store an array's raw data as ``_codecs.encode(text, 'latin1')``.  The real
    ``codecs.encode`` accepts any codec name; we accept only latin-1, the one
    a pickle of bytes uses.
    """
    if not isinstance(text, str) or not isinstance(encoding, str) or \
            encoding.replace('-', '').replace('_', '').lower() != 'latin1':
        raise pickle.UnpicklingError(f'_codecs.encode of {_describe(text)} '
                                     f'with {_short.repr(encoding)}')
    return text.encode('latin1')
