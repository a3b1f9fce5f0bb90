"""Use a trained AlexNet: restore it, show it images, read its outputs.

The pieces that evaluate.py, predict.py, tools/extract_features.py and
tools/export_model.py share, in the order a script uses them:

    find_checkpoint()   a run folder or a checkpoint -> a checkpoint prefix
    Model               AlexNet for inference in a graph and session of its
                        own, from a checkpoint, an export or ImageNet weights
    read_image_list()   a list file -> image paths and labels (all present?)
    image_views()       the centre crop, or Caffe's ten views, of an image
    predict_list()      class probabilities (or features) for every image
    read_class_names()  the names of the classes

The images go through exactly the evaluation preprocessing of training
(datagenerator.load_image: resize to 256x256; centre 227x227 crop; BGR minus
IMAGENET_MEAN_BGR), so a checkpoint scores here what it scored in validation.
"""
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from alexnet import AlexNet, LAYERS, tf
from datagenerator import (IMAGENET_MEAN_BGR, ListFileError, load_image,
                           missing_images, prefetched, read_list)

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

#: The files of an export made by tools/export_model.py.
EXPORT_GRAPH = 'frozen_graph.pb'
EXPORT_INFO = 'model.json'


class CheckpointError(ValueError):
    """A path that holds no usable checkpoint; the message says why."""


# ---------------------------------------------------------------------------
# Finding what to restore
# ---------------------------------------------------------------------------


def find_checkpoint(path):
    """The checkpoint prefix that `path` stands for.

    A TensorFlow checkpoint is several files that share a prefix
    (`best.index`, `best.data-00000-of-00001`); the prefix is what Saver
    restores. `path` may be
      - a run folder (a checkpoint_path of finetune.py): its best
        checkpoint `best`, or the newest `epoch-N` if there is no best;
      - a prefix, such as runs/finetune/checkpoints/epoch-10;
      - one of the checkpoint's files (what tab completion gives).
    """
    if os.path.isdir(path):
        best = os.path.join(path, 'best')
        if os.path.exists(best + '.index'):
            return best
        newest = tf.train.latest_checkpoint(path)  # read from `checkpoint`
        if newest:
            return newest
        raise CheckpointError(
            'no checkpoint in the folder %s: a run folder holds best.index '
            'and epoch-N.index files, written by finetune.py' % path)
    for suffix in ('.index', '.meta', '.data-'):
        if suffix in os.path.basename(path):
            path = path[:path.rindex(suffix)]
    if os.path.exists(path + '.index'):
        return path
    raise CheckpointError(
        '%s is neither a run folder nor a checkpoint; give the run folder '
        '(e.g. runs/finetune/checkpoints) or a checkpoint prefix (e.g. '
        'runs/finetune/checkpoints/epoch-10, without .index)' % path)


def run_config(checkpoint):
    """The config.json of the run a checkpoint belongs to ({} if none)."""
    path = os.path.join(os.path.dirname(find_checkpoint(checkpoint)),
                        'config.json')
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def images_folder(replacementpath, checkpoint=None):
    """The replacementpath to use: the one given; else the one the run was
    trained with (its config.json); else finetune.py's default."""
    if replacementpath is not None:
        return replacementpath
    if checkpoint is not None:
        config = run_config(checkpoint)
        if 'replacementpath' in config:
            return config['replacementpath']
    return DEFAULT_IMAGES


def checkpoint_num_classes(prefix):
    """How many classes the fc8 layer of a checkpoint has."""
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    if 'fc8/biases' not in shapes:
        raise CheckpointError('%s holds no AlexNet (no fc8/biases variable)'
                              % prefix)
    return shapes['fc8/biases'][0]


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

        A training checkpoint also holds what only training needs: the
        momentum of every weight, the epoch counter, the learning-rate
        multipliers. The Saver here is made in a fresh graph that holds
        only AlexNet's 16 variables (conv1/weights ... fc8/biases), so it
        restores those and ignores the rest.
        """
        prefix = find_checkpoint(path)
        graph = tf.Graph()
        with graph.as_default():
            images, outputs = _build_alexnet(checkpoint_num_classes(prefix))
            saver = tf.train.Saver(var_list=tf.global_variables())
        model = cls(graph, images, outputs, prefix)
        saver.restore(model.session, prefix)
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
        """Load the frozen graph that tools/export_model.py wrote."""
        with open(os.path.join(folder, EXPORT_INFO)) as f:
            info = json.load(f)
        graph_def = tf.GraphDef()
        with open(os.path.join(folder, EXPORT_GRAPH), 'rb') as f:
            graph_def.ParseFromString(f.read())
        graph = tf.Graph()
        with graph.as_default():
            tf.import_graph_def(graph_def, name='')  # keep the names as saved
        images = graph.get_tensor_by_name(info['input'])
        outputs = {OUTPUT_NAME: graph.get_tensor_by_name(info['output'])}
        return cls(graph, images, outputs, folder, info.get('class_names'),
                   frozen_graph_session_config())

    def run(self, batch, layer=OUTPUT_NAME):
        """The output `layer` for a batch of preprocessed images."""
        if layer not in self.outputs:
            raise ValueError('%s gives only %s, not %r'
                             % (self.source, sorted(self.outputs), layer))
        return self.session.run(self.outputs[layer], {self.images: batch})

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


def read_image_list(list_file, replacementpath, num_classes=None):
    """(paths, labels) of a list file, after checking that the labels fit
    the model and that every image is there: one short message, before
    any work starts."""
    paths, labels, lines = read_list(list_file, replacementpath)
    if num_classes and max(labels) >= num_classes:
        raise ListFileError(
            '%s has labels up to %d, but the model has only %d classes: is '
            'it the list for this model?' % (list_file, max(labels),
                                             num_classes))
    missing = missing_images(paths, lines)
    if missing:
        raise ListFileError(
            '%d of the %d images of %s are missing, e.g. %s (line %d). '
            'Is --replacementpath (now %r) the folder of the images? '
            'python tools/download.py --only data gets Oxford 102.'
            % (len(missing), len(paths), list_file, missing[0][0],
               missing[0][1], replacementpath))
    return paths, np.array(labels)


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


def predict_list(models, paths, loader='opencv', batch_size=64,
                 ten_crop=False, layer=OUTPUT_NAME, report_every=10.0):
    """Outputs of each model for every image file, in the order of `paths`.

    Each image is decoded once and shown to every model (an ensemble costs
    one decoding). Threads decode the next chunk of images while the
    models compute; a line of progress goes to stderr every `report_every`
    seconds. Returns one array [len(paths), values] per model.
    """
    per_image = 10 if ten_crop else 1
    chunk = max(1, batch_size // per_image)  # images whose views fill a batch
    results = [[] for _ in models]
    start = last_report = time.time()
    done = 0
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:

        def chunks():
            for first in range(0, len(paths), chunk):
                yield np.stack(list(pool.map(
                    lambda path: load_views(path, loader, ten_crop),
                    paths[first:first + chunk])))

        for views in prefetched(chunks()):
            outputs = run_views(models, views, layer, batch_size)
            for result, output in zip(results, outputs):
                result.append(output)
            done += len(views)
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
# Class names
# ---------------------------------------------------------------------------


def read_class_names(path, num_classes):
    """The names of the classes, line 1 of the file for label 0.

    Falls back to 'class 0', 'class 1', ... (with a note) if the file is
    missing or does not have one line per class, e.g. for a model trained
    on other data than the 102 flowers.
    """
    placeholder = ['class %d' % k for k in range(num_classes)]
    if not path or not os.path.isfile(path):
        if path:
            print('Note: no class names file %s; showing class numbers.'
                  % path, file=sys.stderr)
        return placeholder
    with open(path, encoding='utf-8') as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != num_classes:
        print('Note: %s has %d names but the model %d classes; showing class '
              'numbers.' % (path, len(names), num_classes), file=sys.stderr)
        return placeholder
    return names
