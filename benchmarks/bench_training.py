"""Training steps and epochs: the kit's graph and the original's.

Part of benchmarks/bench.py (run that), which calls these functions in child
processes, each reporting its own peak memory. Two networks:

- 'kit': the training graph exactly as finetune.py builds it (`kit_net`):
  uint8 pixels with the mean subtracted in the graph, Caffe's SGD
  (momentum, weight decay, rate multipliers), the kit's session settings;
- 'original': kratzert's graph (original_alexnet.py): float32 images minus
  the mean fed from NumPy, plain gradient descent, a default session.

and three measures:

- `measure_graph_steps`: the graph alone, one batch fed again and again:
  seconds per step and peak memory;
- `measure_training`: whole epochs from the image list, with the kit's
  prefetching pipeline, the original's "load a batch, then step" on one
  thread, or the feature cache; and the share of the time spent waiting;
- `measure_weights`: loading the weights (bench_load.py).

The networks start from random weights: a step takes as long as with the
ImageNet ones, and nothing has to be downloaded.
"""
import os
import resource
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from anywhere: the kit's modules are there
    sys.path.insert(0, ROOT)

from alexnet import AlexNet, LAYERS, tf  # noqa: E402
from bench_loaders import NUM_CLASSES  # noqa: E402
from datagenerator import IMAGENET_MEAN_BGR, ImageDataGenerator  # noqa: E402
import original_alexnet  # noqa: E402

TRAIN_LAYERS = {'all': list(LAYERS),
                'fc6-fc8': ['fc6', 'fc7', 'fc8'],
                'fc8': ['fc8']}
LEARNING_RATE = 0.001
DROPOUT_RATE = 0.5
SEED = 1


class Net(object):
    """What a benchmark needs of a training graph.

    images: the placeholder fed with the batches; mean: None if it takes
    uint8 pixels, else the mean to subtract in NumPy first (float32 feeds);
    y, keep_prob: the other feeds; other_feeds: any more a step takes;
    fetches: what a step runs; model: the AlexNet; session_config: for
    tf.Session (None: TensorFlow's default).
    """

    def __init__(self, **parts):
        self.other_feeds = {}
        self.__dict__.update(parts)

    def feed(self, images, labels, keep_prob=1.0 - DROPOUT_RATE):
        feed = {self.images: images, self.y: labels, self.keep_prob: keep_prob}
        feed.update(self.other_feeds)
        return feed


def kit_net(train_layers):
    """The kit's training graph, in the lines of finetune.py: the rate is
    fed, dropout draws its masks from a fed seed, a step also returns the
    loss and the correct answers. From scratch (skip_layer is every layer,
    which changes nothing of a step, and needs no weights file)."""
    from sgd import caffe_sgd, make_deterministic, session_config
    tf.reset_default_graph()
    tf.set_random_seed(SEED)
    make_deterministic()
    pixels = tf.placeholder(tf.uint8, [None, 227, 227, 3], name='pixels')
    x = tf.subtract(tf.cast(pixels, tf.float32), IMAGENET_MEAN_BGR)
    y = tf.placeholder(tf.float32, [None, NUM_CLASSES])
    keep_prob = tf.placeholder_with_default(1.0, [])
    rate = tf.placeholder(tf.float32, [])
    dropout_seed = tf.placeholder_with_default(
        tf.constant([SEED, 0], tf.int64), [2])
    model = AlexNet(x, keep_prob, NUM_CLASSES, list(LAYERS),
                    dropout_seed=dropout_seed)
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(
        labels=y, logits=model.fc8))
    correct = tf.equal(tf.argmax(model.fc8, 1), tf.argmax(y, 1))
    train_op = caffe_sgd(loss, model, train_layers, rate, momentum=0.9,
                         weight_decay=0.0005)
    return Net(images=pixels, mean=None, y=y, keep_prob=keep_prob,
               other_feeds={rate: LEARNING_RATE, dropout_seed: [SEED, 1]},
               fetches=[train_op, loss, correct], model=model,
               session_config=session_config())


def original_net(train_layers):
    """kratzert's training graph (original_alexnet.py). The graph seed is
    the benchmark's, not the original's: it lets the random initialisers
    and dropout run in a process where the kit turned on determinism."""
    tf.reset_default_graph()
    tf.set_random_seed(SEED)
    graph = original_alexnet.build_training_graph(
        NUM_CLASSES, train_layers, LEARNING_RATE)
    return Net(images=graph['x'], mean=IMAGENET_MEAN_BGR, y=graph['y'],
               keep_prob=graph['keep_prob'], fetches=[graph['train_op']],
               model=graph['model'], session_config=None)


NETS = {'kit': kit_net, 'original': original_net}


def peak_rss_mb():
    """The peak resident memory of this process so far, in MB (Linux gives
    ru_maxrss in kilobytes, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1e6 if sys.platform == 'darwin' else 1e3)


def random_batch(net, batch_size, seed=0):
    """(images, one-hot labels) of `batch_size` random pixels, as `net`
    takes them: uint8, or float32 minus the mean."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch_size, 227, 227, 3), dtype=np.uint8)
    if net.mean is not None:
        images = images.astype(np.float32) - net.mean
    labels = np.eye(NUM_CLASSES, dtype=np.float32)[
        rng.integers(0, NUM_CLASSES, batch_size)]
    return images, labels


def measure_graph_steps(spec):
    """Seconds per step of `spec['graph']`, training `spec['layers']`, at
    each batch size of `spec['batches']`, one batch fed `spec['steps']`
    times after a first step that is not counted (TensorFlow prepares its
    kernels then).

    Returns {'b<batch>': {step_seconds, img_per_s, peak_rss_mb}}: the
    fastest step (other processes on the machine can only add time), and
    this process's peak memory so far; so put the largest batch first: its
    peak is then the graph's peak at that batch size.
    """
    net = NETS[spec['graph']](TRAIN_LAYERS[spec['layers']])
    result = {}
    with tf.Session(config=net.session_config) as sess:
        sess.run(tf.global_variables_initializer())
        for batch in spec['batches']:
            feed = net.feed(*random_batch(net, batch))
            sess.run(net.fetches, feed)
            times = []
            for _ in range(spec['steps']):
                start = time.perf_counter()
                sess.run(net.fetches, feed)
                times.append(time.perf_counter() - start)
            seconds = min(times)
            result['b%d' % batch] = dict(step_seconds=seconds,
                                         img_per_s=batch / seconds,
                                         peak_rss_mb=peak_rss_mb())
    return result


def measure_training(spec):
    """Train `spec['epochs']` epochs of `spec['graph']` (default 'kit');
    their times, speed and data waiting.

    pipeline: 'prefetch' (the kit's: reduced decoding on several threads,
    the next batches made during the step), 'sync' (the original's: one
    thread decodes whole JPEGs, then the step runs) or 'features' (the
    feature cache: the frozen layers' output computed once).
    """
    net = NETS[spec.get('graph', 'kit')](TRAIN_LAYERS[spec['layers']])
    sync = spec['pipeline'] == 'sync'
    data = ImageDataGenerator(spec['list_file'], shuffle=True, seed=1,
                              horizontal_flip=spec['augment'], mean=net.mean,
                              num_classes=NUM_CLASSES, cache=spec['cache'],
                              workers=1 if sync else None, reduce=not sync)
    result = {}
    with tf.Session(config=net.session_config) as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(net.fetches, net.feed(*random_batch(net, spec['batch'])))
        inputs, features = net.images, None
        if spec['pipeline'] == 'features':
            start = time.perf_counter()
            features = feature_cache(sess, net, spec, data)
            result['feature_seconds'] = time.perf_counter() - start
            inputs = features.tensor
        for epoch in range(spec['epochs']):
            data.reset_pointer(epoch=epoch)
            if features is not None:
                batches = features.batches(data, spec['batch'])
            else:
                batches = data.batches(spec['batch'], prefetch=0 if sync else 2)
            result['epoch%d' % (epoch + 1)] = timed_epoch(sess, net, batches,
                                                          inputs)
    return result


def feature_cache(sess, net, spec, data):
    """The frozen layers' output for every image, computed once."""
    from featurecache import FeatureCache, decide
    layer = decide(TRAIN_LAYERS[spec['layers']], spec['augment'],
                   DROPOUT_RATE).layer
    features = FeatureCache(net.model, layer, net.images)
    features.compute(sess, data, spec['batch'])
    return features


def timed_epoch(sess, net, batches, inputs):
    """Train on `batches`, timing the waits for the next batch."""
    waited, images = 0.0, 0
    start = time.perf_counter()
    while True:
        asked = time.perf_counter()
        batch = next(batches, None)
        waited += time.perf_counter() - asked
        if batch is None:
            break
        feed = net.feed(*batch)
        feed[inputs] = feed.pop(net.images)
        sess.run(net.fetches, feed)
        images += len(batch[1])
    seconds = time.perf_counter() - start
    return dict(images=images, seconds=seconds, img_per_s=images / seconds,
                wait_share=waited / seconds)


def measure_weights(spec):
    """Load the weights file into a fresh graph one way (bench_load)."""
    from bench_load import measure
    seconds, size = measure(spec['method'], spec['weights_file'])
    return dict(seconds=seconds, graph_mb=size / 1e6)
