"""Use a trained AlexNet: restore it, show it images, read its outputs.

The pieces that evaluate.py, predict.py, tools/extract_features.py and
tools/export_model.py share, in the order a script uses them:

    find_checkpoint()   a run folder or a checkpoint -> a checkpoint prefix
                        (from run_folder.py)
    Model               AlexNet for inference in a graph and session of its
                        own, from a checkpoint, an export or ImageNet weights
    read_image_list()   a list file -> image paths and labels (all present?)
    image_views()       the centre crop, or Caffe's ten views, of an image
    iter_outputs()      class probabilities (or features), chunk by chunk
    predict_list()      the same for every image at once
    read_class_names()  the names of the classes (from model_files.py)

The images go through exactly the evaluation preprocessing of training
(datagenerator.load_image: resize to 256x256; centre 227x227 crop; BGR minus
IMAGENET_MEAN_BGR), so a checkpoint scores here what it scored in validation.
"""
import argparse
import os
import re
import sys
import time
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from alexnet import AlexNet, LAYERS, tf
from datagenerator import (IMAGENET_MEAN_BGR, ImageError, ListFileError,
                           load_image, missing_images, prefetched, read_list)
from model_files import (EXPORT_GRAPH, EXPORT_INFO,  # noqa: F401
                         ClassNamesError, ModelError, load_export,
                         read_checkpoint_layers, read_class_names, reason)
from run_folder import (CheckpointError, RunFolderError,  # noqa: F401
                        best_checkpoint, find_checkpoint, latest_checkpoint,
                        run_config)
from weights import WeightsFileError

#: The side of the square crop the net sees.
CROP = 227

#: Where finetune.py looks for the images by default (its replacementpath).
DEFAULT_IMAGES = 'data/oxford102/jpg'

#: What the net can output, besides the class probabilities: the activations
#: of a layer (pool5 flattened to 6*6*256 = 9216 values in height, width,
#: channel order; fc6 and fc7 after their ReLU; fc8, the logits).
FEATURE_LAYERS = ('pool5', 'fc6', 'fc7', 'fc8')

#: Names of the input and output tensors, in a Model and in an export.
INPUT_NAME = 'images'
OUTPUT_NAME = 'probabilities'

#: The names of the 102 flowers, beside this file.
CLASS_NAMES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                'class_names.txt')


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


class Model(object):
    """A network ready for inference: its own graph, session, input, outputs.

    Make one with `Model.from_checkpoint`, `Model.from_export` or
    `Model.from_weights`. Each Model lives in a tf.Graph of its own, so
    several (an ensemble) can be open side by side.

    Attributes:
        images: the input, float32 [batch, 227, 227, 3], BGR minus the mean.
        outputs: {'probabilities': softmax, and for checkpoints and weights
            also 'pool5', 'fc6', 'fc7', 'fc8'}: tensors [batch, values].
        num_classes: outputs of fc8.
        class_names: the names stored with an export, else None.
        source: where the model came from, for messages.
    """

    def __init__(self, graph, images, outputs, source, class_names=None,
                 session_config=None):
        self.graph, self.images, self.outputs = graph, images, outputs
        self.source, self.class_names = source, class_names
        self.num_classes = int(outputs[OUTPUT_NAME].shape[-1])
        session_config = session_config or tf.ConfigProto()
        # GPU memory as needed, not all of it: a course GPU may be shared.
        session_config.gpu_options.allow_growth = True
        self.session = tf.Session(graph=graph, config=session_config)

    @classmethod
    def from_checkpoint(cls, path):
        """Restore a run folder or checkpoint written by finetune.py.

        The 16 variables of AlexNet (conv1/weights ... fc8/biases) are read
        from the checkpoint (read_checkpoint_layers: every damaged file is
        a CheckpointError naming it) and fed into a fresh graph.
        """
        prefix = find_checkpoint(path)
        layers = read_checkpoint_layers(prefix)
        graph = tf.Graph()
        with graph.as_default():
            images, outputs = _build_alexnet(len(layers['fc8']['biases']))
            variables = {v.op.name: v for v in tf.global_variables()}
        model = cls(graph, images, outputs, prefix)
        for layer, parts in layers.items():
            for kind, value in parts.items():
                # Fed, not added to the graph as a 228 MB constant.
                variables['%s/%s' % (layer, kind)].load(value, model.session)
        return model

    @classmethod
    def from_weights(cls, path, num_classes=1000, with_fc8=True):
        """AlexNet with the ImageNet weights of a bvlc_alexnet.npy file.

        With `with_fc8` False, fc8 is left randomly initialised (skipped as
        when fine-tuning), so that files whose fc8 has another shape can
        still give pool5, fc6 and fc7 features.
        """
        graph = tf.Graph()
        with graph.as_default():
            images, outputs, net = _build_alexnet(
                num_classes, skip_layer=[] if with_fc8 else ['fc8'],
                weights_path=path, return_net=True)
            model = cls(graph, images, outputs, path)
            model.session.run(tf.global_variables_initializer())
            net.load_initial_weights(model.session)  # finds its variables
        return model                                 # in the default graph

    @classmethod
    def from_export(cls, folder):
        """Load the frozen graph that tools/export_model.py wrote; raises
        ModelError, naming the file, if the export is incomplete or
        damaged."""
        graph, images, probabilities, info = load_export(folder)
        return cls(graph, images, {OUTPUT_NAME: probabilities}, folder,
                   info.get('class_names'), frozen_graph_session_config())

    def run(self, batch, layer=OUTPUT_NAME):
        """The output `layer` for a batch of preprocessed images."""
        if layer not in self.outputs:
            raise ValueError('%s gives only %s, not %r'
                             % (self.source, sorted(self.outputs), layer))
        try:
            return self.session.run(self.outputs[layer], {self.images: batch})
        except tf.errors.ResourceExhaustedError:
            raise ModelError('out of memory running %s on %d images at once: '
                             'use a smaller --batch_size'
                             % (self.source, len(batch)))
        except tf.errors.OpError as error:
            raise ModelError('%s fails to run (%s): is it damaged?'
                             % (self.source, reason(error)))

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def frozen_graph_session_config():
    """A session configuration without Grappler, for frozen graphs.

    Before a graph first runs, Grappler (TensorFlow's graph optimiser)
    copies it several times and tries to fold its constants. In a frozen
    AlexNet the weights are 228 MB of constants: that takes 10-15 s on a
    laptop and gains nothing here, so it is switched off.
    """
    config = tf.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return config


def _build_alexnet(num_classes, skip_layer=LAYERS, weights_path='DEFAULT',
                   return_net=False):
    """AlexNet on a placeholder named `images`, without dropout, in the
    current default graph; returns (input, {output name: tensor})."""
    # Once training.make_deterministic has switched on TensorFlow's op
    # determinism (for the whole process), every random op needs a seed,
    # even the initializers that a restore then overwrites.
    tf.set_random_seed(0)
    images = tf.placeholder(tf.float32, [None, CROP, CROP, 3],
                            name=INPUT_NAME)
    net = AlexNet(images, 1.0, num_classes, skip_layer, weights_path)
    outputs = {'pool5': tf.reshape(net.pool5, [-1, 6 * 6 * 256]),
               'fc6': net.fc6, 'fc7': net.fc7, 'fc8': net.fc8,
               OUTPUT_NAME: tf.nn.softmax(net.fc8, name=OUTPUT_NAME)}
    return (images, outputs, net) if return_net else (images, outputs)


# ---------------------------------------------------------------------------
# Images in, outputs out
# ---------------------------------------------------------------------------


def images_folder(replacementpath, checkpoint=None):
    """The replacementpath to use: the one given; else the one the run was
    trained with (its config.json); else finetune.py's default."""
    if replacementpath is not None:
        return replacementpath
    if checkpoint is None:
        return DEFAULT_IMAGES
    try:
        config = run_config(checkpoint)
    except CheckpointError:
        raise
    except RunFolderError as error:  # a damaged config.json
        raise RunFolderError('%s\n(It is read for the folder of the images '
                             'only: give that with --replacementpath.)'
                             % error)
    folder = config.get('replacementpath', DEFAULT_IMAGES)
    if not isinstance(folder, str):
        raise RunFolderError(
            'the replacementpath in the config.json of %s is %r, not a folder '
            'name; give the folder of the images with --replacementpath'
            % (checkpoint, folder))
    return folder


def read_image_list(list_file, replacementpath, num_classes=None):
    """(paths, labels) of a list file, after checking that every image is
    there (and, given `num_classes`, that the labels fit the model): one
    short message, before any work starts."""
    try:
        paths, labels, lines = read_list(list_file, replacementpath)
    except UnicodeDecodeError as error:  # a list in another encoding
        raise ListFileError('%s is not UTF-8 text (byte %d is 0x%02x): save '
                            'it as UTF-8, one "<path> <label>" per line'
                            % (list_file, error.start,
                               error.object[error.start]))
    missing = missing_images(paths, lines)
    if missing:
        raise ListFileError(
            '%d of the %d images of %s are missing, e.g. %s (line %d). '
            'Is --replacementpath (now %r) the folder of the images? '
            'python tools/download.py --only data gets Oxford 102.'
            % (len(missing), len(paths), list_file, missing[0][0],
               missing[0][1], replacementpath))
    if num_classes:
        check_labels(list_file, labels, num_classes)
    return paths, np.array(labels)


def check_labels(list_file, labels, num_classes):
    """Refuse a list whose labels the model has no class for."""
    if max(labels) >= num_classes:
        raise ListFileError(
            '%s has labels up to %d, but the model has only %d classes: is '
            'it the list for this model?' % (list_file, max(labels),
                                             num_classes))


def image_views(image, ten_crop=False):
    """The 227x227 views of a 256x256 uint8 BGR image, ready for the net.

    Returns float32 [views, 227, 227, 3], BGR minus the ImageNet mean:
      - one view, the centre crop, as in validation (ImageDataGenerator);
      - with `ten_crop`, Caffe's ten views ("oversampling"): the four corner
        crops and the centre crop, then the same five mirrored left-right.
        Averaging the predictions over the ten views sees the whole image
        rather than its centre, and usually gains a point or two of accuracy
        for ten times the computation.
    """
    height, width = image.shape[:2]
    bottom, right = height - CROP, width - CROP
    centre = (bottom // 2, right // 2)
    corners = ([(0, 0), (0, right), (bottom, 0), (bottom, right), centre]
               if ten_crop else [centre])
    crops = [image[y:y + CROP, x:x + CROP] for y, x in corners]
    if ten_crop:
        crops += [crop[:, ::-1] for crop in crops]
    return np.stack(crops).astype(np.float32) - IMAGENET_MEAN_BGR


def stack_views(images, ten_crop=False):
    """The views of several images, [images, views, 227, 227, 3], written
    straight into one array (no list of copies to stack)."""
    views = np.empty((len(images), 10 if ten_crop else 1, CROP, CROP, 3),
                     np.float32)
    for i, image in enumerate(images):
        views[i] = image_views(image, ten_crop)
    return views


def load_views(path, loader='opencv', ten_crop=False):
    """The views of an image file (see image_views). Any JPEG or PNG, in
    any mode (grayscale, RGBA, palette); raises datagenerator.ImageError
    if the file cannot be read."""
    return image_views(load_image(path, loader), ten_crop)


def run_views(models, views, layer=OUTPUT_NAME, batch_size=64):
    """Outputs of each model for a stack of views [images, views, 227, 227, 3].

    The views of all images go through the net in batches of `batch_size`;
    the outputs of an image's views are then averaged (for the ten-crop
    evaluation, the mean of the ten softmax outputs). Returns one array
    [images, values] per model.
    """
    count, per_image = views.shape[:2]
    flat = views.reshape((-1,) + views.shape[2:])
    results = []
    for model in models:
        out = np.concatenate([model.run(flat[i:i + batch_size], layer)
                              for i in range(0, len(flat), batch_size)])
        results.append(out.reshape(count, per_image, -1).mean(axis=1))
    return results


#: What iter_outputs yields for each chunk of images: the paths that were
#: read, one output array [len(paths), values] per model (None if no image
#: of the chunk could be read), and (path, ImageError) for each image that
#: could not be read (with skip_unreadable).
Chunk = namedtuple('Chunk', 'paths outputs unreadable')


def iter_outputs(models, paths, loader='opencv', batch_size=64,
                 ten_crop=False, layer=OUTPUT_NAME, skip_unreadable=False):
    """Outputs of each model for the image files, a chunk at a time.

    Yields a Chunk per `batch_size` views (batch_size // 10 images with
    ten_crop), in the order of `paths`. Memory stays the same for ten
    images or a million: threads decode the next chunks (as 256x256 uint8
    images, a thirtieth of their ten float32 views) while the models run
    the current one, and each chunk is dropped once the caller has taken
    what it needs of it.

    Each image is decoded once and shown to every model (an ensemble costs
    one decoding). An unreadable image raises datagenerator.ImageError, or
    with `skip_unreadable` is reported in its chunk's `unreadable`.
    """
    images_per_chunk = max(1, batch_size // (10 if ten_crop else 1))

    def image_or_error(path):
        try:
            return load_image(path, loader)
        except ImageError as error:
            if not skip_unreadable:
                raise
            return error

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:

        def decoded_chunks():
            for first in range(0, len(paths), images_per_chunk):
                part = paths[first:first + images_per_chunk]
                yield part, list(pool.map(image_or_error, part))

        for part, decoded in prefetched(decoded_chunks()):
            failed = [isinstance(result, ImageError) for result in decoded]
            readable = [p for p, bad in zip(part, failed) if not bad]
            images = [image for image, bad in zip(decoded, failed) if not bad]
            outputs = (run_views(models, stack_views(images, ten_crop), layer,
                                 batch_size) if images else None)
            yield Chunk(readable, outputs, [(p, error) for p, error, bad in
                                            zip(part, decoded, failed) if bad])


def predict_list(models, paths, loader='opencv', batch_size=64,
                 ten_crop=False, layer=OUTPUT_NAME, report_every=10.0):
    """Outputs of each model for every image file, in the order of `paths`:
    one array [len(paths), values] per model. An unreadable image raises
    datagenerator.ImageError. A line of progress goes to stderr every
    `report_every` seconds."""
    results = [[] for _ in models]
    start = last_report = time.time()
    done = 0
    for chunk in iter_outputs(models, paths, loader, batch_size, ten_crop,
                              layer):
        for result, output in zip(results, chunk.outputs):
            result.append(output)
        done += len(chunk.paths)
        if time.time() - last_report >= report_every or (
                done == len(paths) and last_report > start):
            last_report = time.time()
            report_progress(done, len(paths), last_report - start)
    return [np.concatenate(result) for result in results]


def report_progress(done, total, seconds):
    """One line to stderr: how far, how fast, how long still."""
    rate = done / max(seconds, 1e-9)
    print('  %d/%d images (%.0f%%), %.1f img/s, %.0f s left'
          % (done, total, 100.0 * done / total, rate, (total - done) / rate),
          file=sys.stderr)
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# For the scripts
# ---------------------------------------------------------------------------


#: The errors that mean "this input cannot be used". Their messages name
#: the file (or image, or list line) and the fix, so a script prints the
#: message and exits, without a traceback.
INPUT_ERRORS = (RunFolderError, ModelError, ClassNamesError, ListFileError,
                ImageError, WeightsFileError)


def positive_int(text):
    """An argparse type: a whole number of at least 1, such as a batch
    size (a batch of 0 images would never end)."""
    if not re.match(r'^[0-9]+$', text.strip()) or int(text) < 1:
        raise argparse.ArgumentTypeError('%r is not a whole number of at '
                                         'least 1' % text)
    return int(text)
