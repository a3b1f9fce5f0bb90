"""Read the files a trained model is kept in, and check them.

    read_checkpoint_layers()  AlexNet's weights in a checkpoint of a run
    export_weights()          ... written as a bvlc_alexnet.npy file
    load_export()             the frozen graph of tools/export_model.py
    read_class_names()        the names of the classes

A file that is missing, cut short, damaged or of another kind raises an
error whose message names the file and says what to do: a checkpoint
(run_folder.CheckpointError), an export (ModelError) or a class names file
(ClassNamesError). inference.py builds models from what these return.
"""
import json
import os
import sys

import numpy as np
from google.protobuf.message import DecodeError

from alexnet import LAYERS, tf
from run_folder import CheckpointError, find_checkpoint
from weights import ALEXNET_SHAPES, save_toronto_npy

#: The files of an export made by tools/export_model.py.
EXPORT_GRAPH = 'frozen_graph.pb'
EXPORT_INFO = 'model.json'

#: The input of an AlexNet export: a batch of 227x227 crops, BGR.
EXPORT_INPUT_SHAPE = [None, 227, 227, 3]


class ModelError(ValueError):
    """An export that cannot be loaded, or a model that fails to run; the
    message names the file and says what to do."""


class ClassNamesError(ValueError):
    """A class names file that cannot be read; the message says why."""


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


#: What TensorFlow's checkpoint reader raises for a damaged file: its own
#: errors, or (TF 2, through pybind11) ValueError, IndexError for a file
#: cut short, RuntimeError for the rest.
READER_ERRORS = (tf.errors.OpError, ValueError, IndexError, RuntimeError)

#: What to do about a damaged checkpoint.
OTHER_CHECKPOINT = ('Use another checkpoint of the run (e.g. RUN/epoch-N; '
                    'a run folder holds the last few), or train again')


def read_checkpoint_layers(prefix):
    """AlexNet's weights and biases in a checkpoint, as float32 arrays:
    {'conv1': {'weights': W, 'biases': b}, ..., 'fc8': {...}}.

    Only these 16 variables are read: a training checkpoint also holds the
    momentum of every weight, the epoch counter and the learning-rate
    multipliers, which inference does not need. Raises CheckpointError,
    naming the file, for a checkpoint that is truncated, corrupt or not an
    AlexNet's.
    """
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
    except READER_ERRORS as error:
        raise CheckpointError(
            'cannot read the checkpoint %s: %s.index is damaged or not a '
            'checkpoint (%s). %s' % (prefix, prefix, reason(error),
                                     OTHER_CHECKPOINT))
    names = ['%s/%s' % (layer, kind) for layer in LAYERS
             for kind in ('weights', 'biases')]
    missing = [name for name in names if name not in shapes]
    if missing:
        raise CheckpointError('%s holds no AlexNet: it lacks the variables '
                              '%s' % (prefix, ', '.join(missing)))
    check_alexnet_shapes(shapes, prefix)  # before reading 230 MB of them
    values = {name: _read_variable(reader, prefix, name) for name in names}
    return {layer: {kind: values['%s/%s' % (layer, kind)]
                    for kind in ('weights', 'biases')} for layer in LAYERS}


def _read_variable(reader, prefix, name):
    """One variable of a checkpoint as a float32 array."""
    try:
        value = reader.get_tensor(name)
    except READER_ERRORS as error:
        raise CheckpointError(
            'cannot read %s from the checkpoint %s: its .data file is '
            'truncated or damaged (%s). %s' % (name, prefix, reason(error),
                                               OTHER_CHECKPOINT))
    if not np.issubdtype(np.asarray(value).dtype, np.floating):
        raise CheckpointError('%s in the checkpoint %s is not floating point '
                              '(%s): not an AlexNet checkpoint'
                              % (name, prefix, np.asarray(value).dtype))
    return np.asarray(value).astype(np.float32, copy=False)


def reason(error):
    """The first line of a TensorFlow error, without its long context."""
    message = (getattr(error, 'message', None) or str(error)).strip()
    return message.splitlines()[0][:300] if message else type(error).__name__


#: The most classes a checkpoint may have: a bound that keeps a damaged
#: .index file from asking for terabytes (ImageNet-21k has 21,841).
MAX_CLASSES = 100000


def check_alexnet_shapes(shapes, source):
    """Raise CheckpointError unless `shapes` ({'conv1/weights': [11, 11, 3,
    96], ...}) are AlexNet's; fc8 may have any number of classes."""
    classes = list(shapes['fc8/biases'])
    if len(classes) != 1 or not 1 <= classes[0] <= MAX_CLASSES:
        raise CheckpointError('fc8/biases in %s has the shape %s; an AlexNet '
                              'has one bias per class' % (source, classes))
    expected = dict(ALEXNET_SHAPES, fc8={'weights': (4096, classes[0]),
                                         'biases': tuple(classes)})
    for layer in LAYERS:
        for kind in ('weights', 'biases'):
            shape = tuple(shapes['%s/%s' % (layer, kind)])
            if shape != tuple(expected[layer][kind]):
                raise CheckpointError(
                    '%s/%s in %s has the shape %s, AlexNet\'s is %s: not a '
                    'checkpoint of this kit\'s AlexNet'
                    % (layer, kind, source, shape, expected[layer][kind]))


# ---------------------------------------------------------------------------
# A checkpoint's weights as a bvlc_alexnet.npy (tools/export_weights.py)
# ---------------------------------------------------------------------------


class ExportWeightsError(ValueError):
    """The weights cannot be exported; the message names the file."""


def export_weights(checkpoint_prefix, out_path, overwrite=False):
    """Write the AlexNet weights of a checkpoint to `out_path` in the
    bvlc_alexnet.npy layout, {'conv1': [W, b], ..., 'fc8': [W, b]} (no
    momentum), for other runs to start from; returns that dict.

    `checkpoint_prefix` is a checkpoint such as runs/x/checkpoints/best
    (or a run folder: its best checkpoint). Raises run_folder.CheckpointError
    for a damaged checkpoint, and ExportWeightsError if `out_path` exists
    (unless `overwrite`) or a weight is not finite (a run that diverged).
    """
    if os.path.exists(out_path) and not overwrite:
        raise ExportWeightsError('%s exists already; give another name, or '
                                 '--force to replace it' % out_path)
    prefix = find_checkpoint(checkpoint_prefix)
    layers = read_checkpoint_layers(prefix)
    for layer, parts in sorted(layers.items()):
        for kind, value in parts.items():
            if not np.all(np.isfinite(value)):
                raise ExportWeightsError(
                    '%s/%s in %s holds NaN or infinite values: the run '
                    'diverged there; export an earlier checkpoint with '
                    '--checkpoint epoch-N' % (layer, kind, prefix))
    toronto = {layer: [parts['weights'], parts['biases']]
               for layer, parts in layers.items()}
    folder = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(folder):
        raise ExportWeightsError('cannot write %s: the folder %s does not '
                                 'exist' % (out_path, folder))
    save_toronto_npy(toronto, out_path)
    return toronto


# ---------------------------------------------------------------------------
# Exports
# ---------------------------------------------------------------------------


#: What to do about a damaged export.
EXPORT_AGAIN = 'Export the model again with tools/export_model.py'


def load_export(folder):
    """The graph of an export, checked: (graph, input tensor, output tensor,
    the dict of model.json)."""
    info = read_export_info(folder)
    graph_def = read_frozen_graph(os.path.join(folder, EXPORT_GRAPH))
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.import_graph_def(graph_def, name='')  # keep the names as saved
            images = graph.get_tensor_by_name(info['input'])
            probabilities = graph.get_tensor_by_name(info['output'])
        except (ValueError, KeyError, TypeError, tf.errors.OpError) as error:
            raise ModelError('%s cannot be loaded as the graph that %s '
                             'describes (%s). %s'
                             % (os.path.join(folder, EXPORT_GRAPH),
                                os.path.join(folder, EXPORT_INFO),
                                reason(error), EXPORT_AGAIN))
    check_export_tensors(folder, images, probabilities,
                         info.get('class_names'))
    return graph, images, probabilities, info


def read_export_info(folder):
    """The model.json of an export, checked: the names of the input and
    output tensors, and the class names if any."""
    path = os.path.join(folder, EXPORT_INFO)
    if not os.path.isfile(path):
        raise ModelError('%s not found: is %s a folder written by '
                         'tools/export_model.py?' % (path, folder))
    try:
        with open(path, 'rb') as f:  # a real one is 3 KB: read 10 MB at most
            info = json.loads(f.read(10 ** 7).decode('utf-8-sig'))
    except OSError as error:
        raise ModelError('cannot read %s: %s' % (path, error.strerror))
    except (ValueError, RecursionError) as error:  # incl. UnicodeDecodeError
        raise ModelError('%s is not valid JSON (%s): damaged or cut short. %s'
                         % (path, str(error)[:200], EXPORT_AGAIN))
    names = info.get('class_names') if isinstance(info, dict) else None
    tensors_named = isinstance(info, dict) and all(
        isinstance(info.get(key), str) for key in ('input', 'output'))
    names_listed = names is None or (isinstance(names, list) and all(
        isinstance(name, str) for name in names))
    if not (tensors_named and names_listed):
        raise ModelError('%s lacks what tools/export_model.py writes: the '
                         'tensor names "input" and "output", and the class '
                         'names as a list of strings. %s'
                         % (path, EXPORT_AGAIN))
    return info


def read_frozen_graph(path):
    """The GraphDef in a frozen_graph.pb file."""
    if not os.path.isfile(path):
        raise ModelError('%s not found. %s' % (path, EXPORT_AGAIN))
    graph_def = tf.GraphDef()
    try:
        with open(path, 'rb') as f:
            graph_def.ParseFromString(f.read())
    except OSError as error:
        raise ModelError('cannot read %s: %s' % (path, error.strerror))
    except DecodeError as error:
        raise ModelError('%s is damaged or cut short: it is not a TensorFlow '
                         'graph (%s). %s' % (path, error, EXPORT_AGAIN))
    return graph_def


def check_export_tensors(folder, images, probabilities, class_names=None):
    """The input must take 227x227 BGR crops and the output give one
    probability per class, and model.json name each class (if any)."""
    shape = probabilities.shape
    if not (images.shape.is_compatible_with(EXPORT_INPUT_SHAPE)
            and shape.ndims == 2 and shape.as_list()[-1] is not None):
        raise ModelError(
            'the export %s takes %s and gives %s; an AlexNet export takes '
            '%s and gives [batch, classes]. %s'
            % (folder, images.shape, shape, EXPORT_INPUT_SHAPE, EXPORT_AGAIN))
    if class_names is not None and len(class_names) != shape.as_list()[-1]:
        raise ModelError('%s has %d class names for the %d classes of the '
                         'model. %s' % (os.path.join(folder, EXPORT_INFO),
                                        len(class_names), shape.as_list()[-1],
                                        EXPORT_AGAIN))


# ---------------------------------------------------------------------------
# Class names
# ---------------------------------------------------------------------------


def read_class_names(path, num_classes):
    """The names of the classes, line 1 of the file for label 0.

    Falls back to 'class 0', 'class 1', ... (with a note) if the file is
    missing or does not have one line per class, e.g. for a model trained
    on other data than the 102 flowers. A file that is not UTF-8 text
    raises ClassNamesError.
    """
    placeholder = ['class %d' % k for k in range(num_classes)]
    if not path or not os.path.isfile(path):
        if path:
            print('Note: no class names file %s; showing class numbers.'
                  % path, file=sys.stderr)
        return placeholder
    names = [line.strip() for line in read_text(path).splitlines()
             if line.strip()]
    if len(names) != num_classes:
        print('Note: %s has %d names but the model %d classes; showing class '
              'numbers.' % (path, len(names), num_classes), file=sys.stderr)
        return placeholder
    return names


#: Class names files larger than this are not class names (102 are 2 KB).
MAX_CLASS_NAMES_BYTES = 10 ** 6


def read_text(path):
    """The text of a small UTF-8 file (a Windows editor's BOM is dropped);
    ClassNamesError, naming the file, for anything else."""
    try:
        with open(path, 'rb') as f:
            data = f.read(MAX_CLASS_NAMES_BYTES + 1)
    except OSError as error:
        raise ClassNamesError('cannot read %s: %s' % (path, error.strerror))
    fix = 'save it as UTF-8 text, one class name per line, label 0 first'
    if len(data) > MAX_CLASS_NAMES_BYTES:
        raise ClassNamesError('%s is too large for a class names file: %s'
                              % (path, fix))
    if b'\0' in data:  # no text in UTF-8 holds a zero byte
        raise ClassNamesError('%s is not a text file (binary, or UTF-16 '
                              'text): %s' % (path, fix))
    try:
        return data.decode('utf-8-sig')
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b'\n') + 1
        raise ClassNamesError('%s is not UTF-8 text (line %d, byte 0x%02x): '
                              '%s' % (path, line, data[error.start], fix))
