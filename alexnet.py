"""AlexNet exactly as Caffe's bvlc_alexnet, in TensorFlow-1 style.

The network of Krizhevsky et al. (2012) as the BVLC model zoo ships it:

    input 227x227x3 (BGR, minus the ImageNet mean)
    conv1 11x11/4, 96  -> ReLU -> LRN -> max pool 3x3/2
    conv2  5x5,  256, 2 groups -> ReLU -> LRN -> max pool 3x3/2
    conv3  3x3,  384           -> ReLU
    conv4  3x3,  384, 2 groups -> ReLU
    conv5  3x3,  256, 2 groups -> ReLU -> max pool 3x3/2   (6x6x256)
    fc6 4096 -> ReLU -> dropout
    fc7 4096 -> ReLU -> dropout
    fc8 num_classes (the logits)

Every layer is named as in Caffe (conv1 .. fc8) with the variables `weights`
and `biases`, shaped like the arrays in `bvlc_alexnet.npy`, so the ImageNet
weights load without any reshaping (see bvlc_alexnet.npy.md).

It runs on TensorFlow 1.x and on 2.x through `tensorflow.compat.v1` in graph
mode: placeholders, sessions, `variable_scope` and `get_variable`.
"""
import os
import re

# Quiet TensorFlow's start-up log and its notices about the 1.x API, which
# this kit uses on purpose (set TF_CPP_MIN_LOG_LEVEL=0 to see everything).
# Level 3 also hides "failed call to cuInit: CUDA error" on every machine
# without a GPU; errors that matter still arrive as Python exceptions. What
# TensorFlow prints while it loads ("Could not find cuda drivers ... GPU
# will not be used") comes before any setting is read: see README.md.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')


def installed_tensorflow_version():
    """(major, minor) of the installed TensorFlow, read from its package
    metadata without importing it (settings that TensorFlow reads when it
    loads must come first); None if unknown."""
    try:
        from importlib import metadata
    except ImportError:  # Python before 3.8
        return None
    for package in ('tensorflow', 'tensorflow-cpu', 'tensorflow-gpu',
                    'tensorflow-intel', 'tf-nightly'):
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
        numbers = re.match(r'(\d+)\.(\d+)', version)
        return tuple(map(int, numbers.groups())) if numbers else None
    return None


#: oneDNN, Intel's library of fast CPU kernels that TensorFlow 2.x ships
#: with, is on by default only on CPUs with AVX-512 VNNI or newer. Elsewhere
#: (AMD EPYC, older Intel) turning it on makes a CPU training step 1.3x
#: (batch 64) to 1.7x (batch 16) faster for about 0.3 GB more memory
#: (README, Measured). The kit turns it on from this TensorFlow on, where
#: its gradients match to float32 round-off (2e-6 in tests/test_sgd.py);
#: with TensorFlow 2.12 they were 0.8% off, so older versions keep their
#: default. TF_ENABLE_ONEDNN_OPTS=0 or 1, set by you, wins. It changes
#: nothing on a GPU or TF 1.x.
ONEDNN_FROM_TENSORFLOW = (2, 21)
if (installed_tensorflow_version() or (0, 0)) >= ONEDNN_FROM_TENSORFLOW:
    os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')

try:  # TensorFlow 2.x (and 1.13+): the 1.x API lives in compat.v1
    import tensorflow.compat.v1 as tf
except ImportError:  # older TensorFlow 1.x
    import tensorflow as tf
if os.environ['TF_CPP_MIN_LOG_LEVEL'] != '0':
    tf.logging.set_verbosity(tf.logging.ERROR)
if hasattr(tf, 'disable_v2_behavior'):  # TF 2.x: graph mode and sessions
    tf.disable_v2_behavior()

import weights as weights_io

#: Caffe's LRN (local_size 5, alpha 1e-4, beta 0.75, k 1) in TensorFlow's terms:
#: TF sums over depth_radius channels on each side (2 + 1 + 2 = 5) and does not
#: divide alpha by the window size as Caffe does, hence alpha 1e-4 / 5 = 2e-5.
LRN = dict(depth_radius=2, alpha=2e-05, beta=0.75, bias=1.0)

#: The layers of the net, input to output.
LAYERS = ('conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7', 'fc8')

DEFAULT_WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                               'bvlc_alexnet.npy')


class AlexNet(object):
    """The bvlc_alexnet graph on top of an input tensor.

    Args:
        x: float32 tensor [batch, 227, 227, 3], BGR minus the ImageNet mean.
        keep_prob: probability to keep a unit in fc6/fc7 dropout (a scalar
            tensor, so that validation can feed 1.0).
        num_classes: outputs of fc8 (102 for Oxford flowers).
        skip_layer: layers that `load_initial_weights` leaves at their fresh
            initialisation (the course skips 'fc8': 1000 ImageNet classes).
        weights_path: the weights file; 'DEFAULT' is bvlc_alexnet.npy beside
            this file.
        dropout_seed: optional int64 tensor of shape [2]. When given, the
            dropout masks are a function of it alone (stateless random
            numbers), so a resumed run draws the same masks as an
            uninterrupted one; feed a new value each step.

    After construction, `fc8` holds the logits and `pool5`, `fc6`, `fc7` the
    activations (fc6/fc7 after ReLU and dropout) for feature extraction;
    `layer_inputs` maps each layer to the tensor it reads.
    """

    def __init__(self, x, keep_prob, num_classes, skip_layer,
                 weights_path='DEFAULT', dropout_seed=None):
        self.X = x
        self.KEEP_PROB = keep_prob
        self.DROPOUT_SEED = dropout_seed
        self.NUM_CLASSES = num_classes
        self.SKIP_LAYER = list(skip_layer)
        self.WEIGHTS_PATH = (DEFAULT_WEIGHTS if weights_path == 'DEFAULT'
                             else weights_path)
        self.loaded_layers = []  # filled by load_initial_weights
        self.create()

    def create(self):
        """Build the layers, conv1 to fc8, as Caffe's deploy.prototxt."""
        conv1 = conv(self.X, 11, 11, 96, 4, 4, padding='VALID', name='conv1',
                     input_std=PIXEL_STD)
        norm1 = lrn(conv1, name='norm1')
        pool1 = max_pool(norm1, 3, 3, 2, 2, name='pool1')          # 27x27x96

        conv2 = conv(pool1, 5, 5, 256, 1, 1, groups=2, name='conv2')
        norm2 = lrn(conv2, name='norm2')
        pool2 = max_pool(norm2, 3, 3, 2, 2, name='pool2')          # 13x13x256

        conv3 = conv(pool2, 3, 3, 384, 1, 1, name='conv3')
        conv4 = conv(conv3, 3, 3, 384, 1, 1, groups=2, name='conv4')
        conv5 = conv(conv4, 3, 3, 256, 1, 1, groups=2, name='conv5')
        self.pool5 = max_pool(conv5, 3, 3, 2, 2, name='pool5')     # 6x6x256

        # Flatten in NHWC order (height, width, channel): the row order of fc6
        # in bvlc_alexnet.npy.
        flattened = tf.reshape(self.pool5, [-1, 6 * 6 * 256])
        fc6 = fc(flattened, 6 * 6 * 256, 4096, name='fc6')
        self.fc6 = dropout(fc6, self.KEEP_PROB, self._seed(0))
        fc7 = fc(self.fc6, 4096, 4096, name='fc7')
        self.fc7 = dropout(fc7, self.KEEP_PROB, self._seed(1))
        self.fc8 = fc(self.fc7, 4096, self.NUM_CLASSES, relu=False, name='fc8')

        # What each layer reads. The gradient with respect to each of these
        # is computed from the layer's weights, so training updates a layer
        # only once that gradient exists (sgd.caffe_sgd).
        self.layer_inputs = {'conv1': self.X, 'conv2': pool1, 'conv3': pool2,
                             'conv4': conv3, 'conv5': conv4, 'fc6': flattened,
                             'fc7': self.fc6, 'fc8': self.fc7}

    def _seed(self, layer_index):
        """Distinct stateless seeds for fc6 (0) and fc7 (1): [a, 2b + i]."""
        if self.DROPOUT_SEED is None:
            return None
        return self.DROPOUT_SEED * [1, 2] + [0, layer_index]

    def variable_shapes(self):
        """{'conv1': {'weights': (11, 11, 3, 96), 'biases': (96,)}, ...}."""
        return {layer: {kind: tuple(variable(layer, kind).shape.as_list())
                        for kind in ('weights', 'biases')}
                for layer in LAYERS}

    def load_initial_weights(self, session):
        """Set every layer from the weights file, except those in skip_layer.

        The arrays are fed into the variables (`Variable.load`), not added to
        the graph as constants: the original `session.run(var.assign(data))`
        put 233 MB of constants into the graph and took about 20 s.
        Layers in `skip_layer` keep their fresh initialisation. Every problem
        (a missing layer, a wrong shape) raises one error that names the
        layer, both shapes and the fix.
        """
        if all(layer in self.SKIP_LAYER for layer in LAYERS):
            return  # training from scratch: the file is not even needed
        layers = weights_io.read_weights(self.WEIGHTS_PATH)
        for warning in weights_io.check_layers(layers, self.variable_shapes(),
                                               self.SKIP_LAYER,
                                               self.WEIGHTS_PATH):
            print('Note: %s' % warning)
        for layer in LAYERS:
            if layer in self.SKIP_LAYER or layer not in layers:
                continue
            for kind in ('weights', 'biases'):
                variable(layer, kind).load(layers[layer][kind], session)
            self.loaded_layers.append(layer)


def variable(layer, kind):
    """The variable `<layer>/<kind>` ('weights' or 'biases') of the graph."""
    with tf.variable_scope(layer, reuse=True):
        return tf.get_variable(kind)


#: Standard deviation of the input pixels (0..255 minus the mean) on ImageNet.
PIXEL_STD = 60.0


# Initialisation of layers trained from scratch: He et al. (2015), weights of
# variance 2 / fan_in, which keeps the size of ReLU activations the same from
# layer to layer. conv1 is divided by PIXEL_STD on top: its input is in pixel
# units (std about 60), not unit-sized, and without that every layer would
# start 60 times too large, the loss would explode and the ReLUs die at once.
# So every layer starts with unit-sized activations. (For the same reason the
# gradient of a fresh conv1 is divided by PIXEL_STD**2: see
# sgd.set_rate_multipliers.) Biases start at zero.
def _weight_initializer(relu, input_std=1.0):
    return tf.variance_scaling_initializer(scale=2.0 / input_std ** 2,
                                           mode='fan_in',
                                           distribution='truncated_normal')


#: The new classifier fc8 starts as in Caffe's fine-tuning examples
#: (finetune_flickr_style): gaussian weights of std 0.01, zero biases. Its
#: outputs start small, every class about equally likely, so the first loss
#: is about ln(num_classes) (4.6 for 102 classes) in both modes.
FC8_INITIALIZER = tf.random_normal_initializer(stddev=0.01)


def conv(x, filter_height, filter_width, num_filters, stride_y, stride_x,
         name, padding='SAME', groups=1, input_std=1.0):
    """Convolution + ReLU, split into `groups` as Caffe's `group` parameter.

    AlexNet was trained on two GPUs: conv2, conv4 and conv5 see only the half
    of the input channels computed on their own GPU. A grouped convolution
    splits input and filters into halves, convolves each pair, and
    concatenates the results. Caffe's pads (2 for 5x5, 1 for 3x3, stride 1)
    are TensorFlow's 'SAME'; conv1 has no padding ('VALID': 227 -> 55).
    """
    input_channels = int(x.get_shape()[-1])
    with tf.variable_scope(name):
        weights = tf.get_variable(
            'weights', [filter_height, filter_width,
                        input_channels // groups, num_filters],
            initializer=_weight_initializer(relu=True, input_std=input_std))
        biases = tf.get_variable('biases', [num_filters],
                                 initializer=tf.zeros_initializer())

        def convolve(inputs, kernel):
            return tf.nn.conv2d(inputs, kernel, [1, stride_y, stride_x, 1],
                                padding=padding)

        if groups == 1:
            out = convolve(x, weights)
        else:
            input_groups = tf.split(x, groups, axis=3)
            weight_groups = tf.split(weights, groups, axis=3)
            out = tf.concat([convolve(i, k) for i, k in
                             zip(input_groups, weight_groups)], axis=3)
        return tf.nn.relu(tf.nn.bias_add(out, biases), name='relu')


def fc(x, num_in, num_out, name, relu=True):
    """Fully connected layer: x @ weights + biases, then ReLU unless fc8."""
    initializer = _weight_initializer(relu) if relu else FC8_INITIALIZER
    with tf.variable_scope(name):
        weights = tf.get_variable('weights', [num_in, num_out],
                                  initializer=initializer)
        biases = tf.get_variable('biases', [num_out],
                                 initializer=tf.zeros_initializer())
        out = tf.nn.xw_plus_b(x, weights, biases)
        return tf.nn.relu(out, name='relu') if relu else out


def max_pool(x, filter_height, filter_width, stride_y, stride_x, name,
             padding='VALID'):
    """Max pooling. AlexNet's sizes (55, 27, 13) make Caffe's rounding-up
    pooling and TensorFlow's 'VALID' give the same 27, 13 and 6."""
    return tf.nn.max_pool(x, ksize=[1, filter_height, filter_width, 1],
                          strides=[1, stride_y, stride_x, 1],
                          padding=padding, name=name)


def lrn(x, name):
    """Local response normalisation across channels, Caffe's parameters."""
    return tf.nn.local_response_normalization(x, name=name, **LRN)


def dropout(x, keep_prob, seed=None):
    """Dropout that keeps each unit with probability keep_prob (and scales
    the kept ones by 1/keep_prob). With a seed tensor the mask depends on
    that seed only; TF 1.13, which lacks stateless random numbers, falls
    back to ordinary dropout."""
    stateless_uniform = getattr(tf.random, 'stateless_uniform', None)
    if seed is None or stateless_uniform is None:
        return tf.nn.dropout(x, rate=1.0 - keep_prob)
    keep = stateless_uniform(tf.shape(x), seed=seed) < keep_prob
    return x * tf.cast(keep, x.dtype) / keep_prob
