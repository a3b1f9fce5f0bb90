"""The feature cache: when it applies, and that training on cached features
is training on the images."""
import collections

import numpy as np
import pytest

import datagenerator
from alexnet import AlexNet, tf
from datagenerator import IMAGENET_MEAN_BGR, ImageDataGenerator
from featurecache import FeatureCache, decide, open_feature_caches
from imagefiles import load_image
from sgd import caffe_sgd
from test_datagenerator import make_images, write


# ---- when it applies -------------------------------------------------------

@pytest.mark.parametrize('train_layers, dropout_rate, layer', [
    (['fc6', 'fc7', 'fc8'], 0.5, 'pool5'),
    (['fc6', 'fc8'], 0.5, 'pool5'),
    (['fc7', 'fc8'], 0.5, 'fc6'),
    (['fc8'], 0.5, 'fc6'),      # fc7 recomputed: its dropout changes
    (['fc8'], 0.0, 'fc7')])
def test_the_cached_layer_is_below_the_first_learning_one(train_layers,
                                                          dropout_rate, layer):
    decision = decide(train_layers, augment=False, dropout_rate=dropout_rate)
    assert decision.layer == layer
    assert decision.message().startswith('Feature cache on')
    assert layer in decision.reason


def test_refused_when_conv_layers_learn():
    decision = decide(['conv5', 'fc6', 'fc7', 'fc8'], augment=False,
                      dropout_rate=0.5)
    assert decision.layer is None
    assert decision.message().startswith('Feature cache off')
    assert 'convolutional layers learn (conv5)' in decision.reason


def test_refused_when_augmentation_is_on():
    decision = decide(['fc8'], augment=True, dropout_rate=0.5)
    assert decision.layer is None
    assert 'augmentation' in decision.reason


def test_refused_when_nothing_learns():
    assert 'empty' in decide([], augment=False, dropout_rate=0.5).reason


# ---- features fed = images fed ---------------------------------------------

NUM_CLASSES = 3


@pytest.fixture
def image_list(tmp_path):
    names = make_images(tmp_path, 6)
    return write(tmp_path / 'list.txt', ''.join(
        '%s %d\n' % (name, i % NUM_CLASSES) for i, name in enumerate(names)))


RunConfig = collections.namedtuple('RunConfig',
                                   'train_layers dropout_rate batch_size')


class Graph(object):
    """The training graph of finetune.py, on a fresh tf.Graph: `pixels`
    (uint8, fed by generators with mean=None), `x` (float32 minus the
    mean), `y`, `keep_prob`, `dropout_seed`, `learning_rate`, `model`,
    `loss`, `train_op`, `init`."""

    def __init__(self, train_layers):
        tf.reset_default_graph()
        tf.set_random_seed(1)
        self.pixels = tf.placeholder(tf.uint8, [None, 227, 227, 3])
        self.x = tf.subtract(tf.cast(self.pixels, tf.float32),
                             IMAGENET_MEAN_BGR)
        self.y = tf.placeholder(tf.float32, [None, NUM_CLASSES])
        self.keep_prob = tf.placeholder_with_default(1.0, [])
        self.learning_rate = tf.placeholder(tf.float32, [])
        self.dropout_seed = tf.placeholder_with_default(
            tf.constant([1, 0], tf.int64), [2])
        self.model = AlexNet(self.x, self.keep_prob, NUM_CLASSES, [],
                             'absent.npy', dropout_seed=self.dropout_seed)
        self.loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(
            labels=self.y, logits=self.model.fc8))
        self.train_op = caffe_sgd(self.loss, self.model, train_layers,
                                  self.learning_rate)
        self.init = tf.global_variables_initializer()


def graph_for(train_layers, dropout_rate=0.5):
    return Graph(train_layers), RunConfig(train_layers, dropout_rate, 4)


def loss_and_gradients(graph, train_layers):
    """The loss and its gradients for the variables of `train_layers`."""
    train_vars = [v for v in tf.trainable_variables()
                  if v.name.split('/')[0] in train_layers]
    return [graph.loss] + tf.gradients(graph.loss, train_vars)


@pytest.mark.parametrize('train_layers, dropout_rate', [
    (['fc6', 'fc7', 'fc8'], 0.5), (['fc7', 'fc8'], 0.5), (['fc8'], 0.5),
    (['fc8'], 0.0)])
def test_features_fed_give_the_loss_and_gradients_of_images_fed(
        image_list, train_layers, dropout_rate):
    graph, config = graph_for(train_layers, dropout_rate)
    data = ImageDataGenerator(image_list, shuffle=True, num_classes=NUM_CLASSES,
                              seed=2)
    layer = decide(train_layers, False, dropout_rate).layer
    fetches = loss_and_gradients(graph, train_layers)
    with tf.Session() as sess:
        sess.run(graph.init)
        features = FeatureCache(graph.model, layer).compute(sess, data, 4)
        data.reset_pointer(epoch=0)
        images, labels = data.next_batch(4)
        data.reset_pointer(epoch=0)
        feats, feat_labels = next(features.batches(data, 4))
        np.testing.assert_array_equal(labels, feat_labels)
        # keep_prob 1 (no dropout), and the training keep_prob with the same
        # dropout seed: the stateless masks are then the same too.
        for keep_prob in (1.0, 1.0 - dropout_rate):
            common = {graph.y: labels, graph.keep_prob: keep_prob,
                      graph.dropout_seed: [1, 7]}
            from_images = sess.run(fetches, {**common, graph.x: images})
            from_features = sess.run(fetches,
                                     {**common, features.tensor: feats})
            # Equal to float32 round-off: oneDNN's kernels may round a row
            # differently in another batch, by about 1e-6 of the largest
            # value; a wrong mask or layer differs by whole units.
            for a, b in zip(from_images, from_features):
                np.testing.assert_allclose(a, b, rtol=1e-4,
                                           atol=1e-5 * np.abs(b).max())


def test_features_are_computed_once_for_every_epoch(image_list, monkeypatch):
    decoded = []

    def counted(path, *args):
        decoded.append(path)
        return load_image(path, *args)
    monkeypatch.setattr(datagenerator, 'load_image', counted)
    graph, config = graph_for(['fc8'])
    data = ImageDataGenerator(image_list, shuffle=True, num_classes=NUM_CLASSES,
                              seed=2, cache=None)
    with tf.Session() as sess:
        sess.run(graph.init)
        features = FeatureCache(graph.model, 'fc6').compute(sess, data, 4)
        for epoch in range(3):
            data.reset_pointer(epoch=epoch)
            batches = list(features.batches(data, 4))
            for feats, labels in batches:  # a training epoch on features
                sess.run(graph.train_op, {
                    features.tensor: feats, graph.y: labels,
                    graph.keep_prob: 0.5, graph.learning_rate: 0.01})
            data.reset_pointer(epoch=epoch)
            expected = list(data.batches(4))  # decodes, for the comparison
            assert len(batches) == len(expected) == 2
            for (_, labels), (_, expected_labels) in zip(batches, expected):
                np.testing.assert_array_equal(labels, expected_labels)
    # 6 for the features, then 6 per epoch only for the reference batches
    assert features.images_computed == 6
    assert len(decoded) == 6 + 3 * 6


def test_unreadable_images_are_left_out_as_in_the_image_batches(tmp_path):
    names = make_images(tmp_path, 3)
    path = write(tmp_path / 'list.txt', ''.join(
        ['%s 0\n' % n for n in names[:2]] + ['missing.jpg 1\n',
                                             '%s 2\n' % names[2]]))
    graph, config = graph_for(['fc8'])
    data = ImageDataGenerator(path, num_classes=NUM_CLASSES)
    with tf.Session() as sess:
        sess.run(graph.init)
        features = FeatureCache(graph.model, 'fc6').compute(sess, data, 4)
    assert list(features.readable) == [True, True, False, True]
    data.reset_pointer(epoch=0)
    feats, labels = next(features.batches(data, 4))
    assert feats.shape == (3, 4096)
    assert list(labels.argmax(1)) == [0, 0, 2]


def test_batches_of_the_wrong_dtype_are_refused(image_list):
    """Float32 images minus the mean fed to the uint8 pixels would wrap
    around silently: the cache refuses them and names the fix."""
    graph, config = graph_for(['fc7', 'fc8'])
    centred = ImageDataGenerator(image_list, num_classes=NUM_CLASSES)
    with tf.Session() as sess:
        sess.run(graph.init)
        with pytest.raises(TypeError, match='mean=None'):
            FeatureCache(graph.model, 'fc6', graph.pixels).compute(
                sess, centred, 4)


def test_a_run_says_whether_it_uses_the_cache_and_why(image_list, capsys):
    graph, config = graph_for(['fc7', 'fc8'])
    train = ImageDataGenerator(image_list, num_classes=NUM_CLASSES, mean=None)
    val = ImageDataGenerator(image_list, num_classes=NUM_CLASSES, mean=None)
    with tf.Session() as sess:
        sess.run(graph.init)
        caches = open_feature_caches(sess, graph.model, graph.pixels, train,
                                     val, config)
        assert caches[0].layer == 'fc6' and caches[1].images_computed == 6
        out = capsys.readouterr().out
        assert 'Feature cache on' in out and 'fc6' in out
        augmented = ImageDataGenerator(image_list, num_classes=NUM_CLASSES,
                                       horizontal_flip=True)
        assert open_feature_caches(sess, graph.model, graph.pixels,
                                   augmented, val, config) == (None, None)
        assert 'Feature cache off' in capsys.readouterr().out


def test_caching_fc7_would_freeze_the_dropout_in_front_of_it(image_list):
    """Why fc8-only training with dropout caches fc6, not fc7: fc7's output
    depends on the dropout mask of fc6, new every step."""
    graph, config = graph_for(['fc8'], dropout_rate=0.5)
    data = ImageDataGenerator(image_list, num_classes=NUM_CLASSES)
    fetches = loss_and_gradients(graph, ['fc8'])
    with tf.Session() as sess:
        sess.run(graph.init)
        fc7 = FeatureCache(graph.model, 'fc7').compute(sess, data, 6)
        images, labels = data.next_batch(6)
        common = {graph.y: labels, graph.keep_prob: 0.5,
                  graph.dropout_seed: [1, 7]}
        from_images = sess.run(fetches, {**common, graph.x: images})
        from_fc7 = sess.run(fetches, {**common, fc7.tensor: fc7.features})
    assert abs(from_images[0] - from_fc7[0]) > 1e-3 * abs(from_images[0])
    assert np.abs(from_images[1]).max() > 0  # gradients that mean something


def test_runs_that_train_the_convolutions_hear_nothing_of_the_cache(
        image_list, capsys):
    """Only a run that asked for fc-only training (train_layers within
    fc6..fc8) is told whether the cache is on; the decision needs neither
    a session nor a graph when it is off."""
    data = ImageDataGenerator(image_list, num_classes=NUM_CLASSES, mean=None)
    config = RunConfig(['conv5', 'fc6', 'fc7', 'fc8'], 0.5, 4)
    assert open_feature_caches(None, None, None, data, data,
                               config) == (None, None)
    assert capsys.readouterr().out == ''
    augmented = ImageDataGenerator(image_list, num_classes=NUM_CLASSES,
                                   horizontal_flip=True)
    assert open_feature_caches(None, None, None, augmented, data,
                               RunConfig(['fc8'], 0.5, 4)) == (None, None)
    assert 'Feature cache off' in capsys.readouterr().out

