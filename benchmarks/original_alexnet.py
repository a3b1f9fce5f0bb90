"""The original: kratzert's AlexNet fine-tuning, the benchmarks' baseline.

The course's scripts derive from Frederik Kratzert's
finetune_alexnet_with_tensorflow (2017). This module is a minimal copy of
its pattern, written for the benchmarks, so that "N times the original"
compares with the original itself and not with this kit in another guise:

- the graph: AlexNet with the grouped convolutions of conv2, conv4 and
  conv5 built by `tf.split` and `tf.concat`, weights initialised by
  `tf.get_variable`'s default (Glorot), `tf.nn.dropout` after fc6 and fc7;
- the training step: the mean cross-entropy and plain
  `tf.train.GradientDescentOptimizer` on the variables of the trained
  layers (no momentum, no weight decay, one rate for all);
- the input: a float32 placeholder fed with images minus the ImageNet mean,
  made in NumPy (the benchmark loads a batch, then runs the step);
- the weights: `np.load` of bvlc_alexnet.npy, then one
  `session.run(var.assign(data))` per array, which adds each array to the
  graph as a constant.

Left out, as they cost nothing a step would notice or do not change what
is measured: the summaries written every 20 steps, the Saver, the
validation pass. The batch dimension is None (the original fixed it to
batch_size), so that the last, smaller batch of an epoch can be fed.

Compared with the kit (alexnet.py and sgd.py), the same network with the
same layer names and shapes, so the same weights file loads into both;
what differs is the optimiser (Caffe's SGD: momentum, weight decay, rate
multipliers), the uint8 input with the mean subtracted in the graph, and
the weight loading (the kit feeds the arrays into the variables).

    from original_alexnet import build_training_graph
    tf.reset_default_graph()
    graph = build_training_graph(102, ['fc6', 'fc7', 'fc8'], 0.01)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        graph['model'].load_initial_weights(sess)
        sess.run(graph['train_op'], {graph['x']: images - mean,
                                     graph['y']: labels,
                                     graph['keep_prob']: 0.5})
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from anywhere: the kit's modules are there
    sys.path.insert(0, ROOT)

# The kit's import of TensorFlow: the 1.x API on TF 1.13 to 2.x, quietly.
# Nothing else of the kit is used here.
from alexnet import tf  # noqa: E402


class OriginalAlexNet(object):
    """kratzert's AlexNet: the graph on top of `x`, and its weight loading.

    skip_layer: the layers `load_initial_weights` leaves alone (kratzert
    passed the trained layers, train_layers, here).
    """

    def __init__(self, x, keep_prob, num_classes, skip_layer,
                 weights_path='bvlc_alexnet.npy'):
        self.X = x
        self.NUM_CLASSES = num_classes
        self.KEEP_PROB = keep_prob
        self.SKIP_LAYER = skip_layer
        self.WEIGHTS_PATH = weights_path
        self.create()

    def create(self):
        conv1 = conv(self.X, 11, 11, 96, 4, 4, padding='VALID', name='conv1')
        norm1 = lrn(conv1, 2, 2e-05, 0.75, name='norm1')
        pool1 = max_pool(norm1, 3, 3, 2, 2, padding='VALID', name='pool1')
        conv2 = conv(pool1, 5, 5, 256, 1, 1, groups=2, name='conv2')
        norm2 = lrn(conv2, 2, 2e-05, 0.75, name='norm2')
        pool2 = max_pool(norm2, 3, 3, 2, 2, padding='VALID', name='pool2')
        conv3 = conv(pool2, 3, 3, 384, 1, 1, name='conv3')
        conv4 = conv(conv3, 3, 3, 384, 1, 1, groups=2, name='conv4')
        conv5 = conv(conv4, 3, 3, 256, 1, 1, groups=2, name='conv5')
        pool5 = max_pool(conv5, 3, 3, 2, 2, padding='VALID', name='pool5')
        flattened = tf.reshape(pool5, [-1, 6 * 6 * 256])
        fc6 = fc(flattened, 6 * 6 * 256, 4096, name='fc6')
        dropout6 = dropout(fc6, self.KEEP_PROB)
        fc7 = fc(dropout6, 4096, 4096, name='fc7')
        dropout7 = dropout(fc7, self.KEEP_PROB)
        self.fc8 = fc(dropout7, 4096, self.NUM_CLASSES, relu=False, name='fc8')

    def load_initial_weights(self, session):
        """The original loading: every array becomes an assign op holding it
        as a constant, run once. (The file is one this benchmark wrote, so
        the plain pickle load is safe here; the kit reads files through
        weights.read_weights, which runs no code from them.)"""
        weights_dict = np.load(self.WEIGHTS_PATH, allow_pickle=True,
                               encoding='latin1').item()
        for op_name in weights_dict:
            if op_name in self.SKIP_LAYER:
                continue
            with tf.variable_scope(op_name, reuse=True):
                for data in weights_dict[op_name]:
                    kind = 'biases' if len(data.shape) == 1 else 'weights'
                    var = tf.get_variable(kind, trainable=False)
                    session.run(var.assign(data))


def conv(x, filter_height, filter_width, num_filters, stride_y, stride_x,
         name, padding='SAME', groups=1):
    """Convolution + ReLU; `groups` > 1 splits input and filters, convolves
    each pair and concatenates the results."""
    input_channels = int(x.get_shape()[-1])

    def convolve(i, k):
        return tf.nn.conv2d(i, k, strides=[1, stride_y, stride_x, 1],
                            padding=padding)

    with tf.variable_scope(name) as scope:
        weights = tf.get_variable('weights', shape=[
            filter_height, filter_width, input_channels // groups,
            num_filters])
        biases = tf.get_variable('biases', shape=[num_filters])
    if groups == 1:
        out = convolve(x, weights)
    else:
        input_groups = tf.split(axis=3, num_or_size_splits=groups, value=x)
        weight_groups = tf.split(axis=3, num_or_size_splits=groups,
                                 value=weights)
        out = tf.concat(axis=3, values=[convolve(i, k) for i, k in
                                        zip(input_groups, weight_groups)])
    bias = tf.reshape(tf.nn.bias_add(out, biases), tf.shape(out))
    return tf.nn.relu(bias, name=scope.name)


def fc(x, num_in, num_out, name, relu=True):
    with tf.variable_scope(name) as scope:
        weights = tf.get_variable('weights', shape=[num_in, num_out],
                                  trainable=True)
        biases = tf.get_variable('biases', [num_out], trainable=True)
        act = tf.nn.xw_plus_b(x, weights, biases, name=scope.name)
    return tf.nn.relu(act) if relu else act


def max_pool(x, filter_height, filter_width, stride_y, stride_x, name,
             padding='SAME'):
    return tf.nn.max_pool(x, ksize=[1, filter_height, filter_width, 1],
                          strides=[1, stride_y, stride_x, 1],
                          padding=padding, name=name)


def lrn(x, radius, alpha, beta, name, bias=1.0):
    return tf.nn.local_response_normalization(
        x, depth_radius=radius, alpha=alpha, beta=beta, bias=bias, name=name)


def dropout(x, keep_prob):
    # The original's tf.nn.dropout(x, keep_prob), in the spelling that
    # TF 1.13 and 2.x both accept without a deprecation notice.
    return tf.nn.dropout(x, rate=1.0 - keep_prob)


def build_training_graph(num_classes, train_layers, learning_rate,
                         weights_path='bvlc_alexnet.npy', skip_layer=None):
    """The original finetune.py's graph, in the current default graph.

    Returns a dict: x (float32 images minus the mean), y (one-hot labels),
    keep_prob (fed 1 - dropout_rate when training), model, loss, accuracy,
    train_op. skip_layer defaults to train_layers, as the original passed.
    The caller resets the graph and, for repeatable numbers, sets a graph
    seed (the original set none).
    """
    x = tf.placeholder(tf.float32, [None, 227, 227, 3])
    y = tf.placeholder(tf.float32, [None, num_classes])
    keep_prob = tf.placeholder(tf.float32)
    model = OriginalAlexNet(x, keep_prob, num_classes,
                            train_layers if skip_layer is None else skip_layer,
                            weights_path)
    var_list = [v for v in tf.trainable_variables()
                if v.name.split('/')[0] in train_layers]
    with tf.name_scope('cross_ent'):
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(
            logits=model.fc8, labels=y))
    with tf.name_scope('train'):
        gradients = list(zip(tf.gradients(loss, var_list), var_list))
        optimizer = tf.train.GradientDescentOptimizer(learning_rate)
        train_op = optimizer.apply_gradients(grads_and_vars=gradients)
    with tf.name_scope('accuracy'):
        correct_pred = tf.equal(tf.argmax(model.fc8, 1), tf.argmax(y, 1))
        accuracy = tf.reduce_mean(tf.cast(correct_pred, tf.float32))
    return dict(x=x, y=y, keep_prob=keep_prob, model=model, loss=loss,
                accuracy=accuracy, train_op=train_op, var_list=var_list)
