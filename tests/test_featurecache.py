"""The feature cache: when it applies, and that training on cached features
is training on the images."""
import numpy as np
import pytest

import datagenerator
import training
from alexnet import tf
from datagenerator import ImageDataGenerator, load_image
from featurecache import FeatureCache, decide, open_feature_caches
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


def graph_for(train_layers, dropout_rate=0.5):
    config = training.Config(
        seed=1, num_classes=NUM_CLASSES, scratch=True, skip_layer=[],
        weights_path='absent.npy', train_layers=train_layers,
        weight_decay=0.0005, momentum=0.9, dropout_rate=dropout_rate,
        batch_size=4)
    return training.build_graph(config), config


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
    data = ImageDataGenerator(image_list, shuffle=True, nb_classes=NUM_CLASSES,
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
            for a, b in zip(from_images, from_features):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_features_are_computed_once_for_every_epoch(image_list, monkeypatch):
    decoded = []

    def counted(path, *args):
        decoded.append(path)
        return load_image(path, *args)
    monkeypatch.setattr(datagenerator, 'load_image', counted)
    graph, config = graph_for(['fc8'])
    data = ImageDataGenerator(image_list, shuffle=True, nb_classes=NUM_CLASSES,
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
    data = ImageDataGenerator(path, nb_classes=NUM_CLASSES)
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
    centred = ImageDataGenerator(image_list, nb_classes=NUM_CLASSES)
    with tf.Session() as sess:
        sess.run(graph.init)
        with pytest.raises(TypeError, match='mean=None'):
            FeatureCache(graph.model, 'fc6', graph.pixels).compute(
                sess, centred, 4)


def test_a_run_says_whether_it_uses_the_cache_and_why(image_list, capsys):
    graph, config = graph_for(['fc7', 'fc8'])
    train = ImageDataGenerator(image_list, nb_classes=NUM_CLASSES, mean=None)
    val = ImageDataGenerator(image_list, nb_classes=NUM_CLASSES, mean=None)
    with tf.Session() as sess:
        sess.run(graph.init)
        caches = open_feature_caches(sess, graph, train, val, config)
        assert caches[0].layer == 'fc6' and caches[1].images_computed == 6
        out = capsys.readouterr().out
        assert 'Feature cache on' in out and 'fc6' in out
        augmented = ImageDataGenerator(image_list, nb_classes=NUM_CLASSES,
                                       horizontal_flip=True)
        assert open_feature_caches(sess, graph, augmented, val,
                                   config) == (None, None)
        assert 'Feature cache off' in capsys.readouterr().out


def test_caching_fc7_would_freeze_the_dropout_in_front_of_it(image_list):
    """Why fc8-only training with dropout caches fc6, not fc7: fc7's output
    depends on the dropout mask of fc6, new every step."""
    graph, config = graph_for(['fc8'], dropout_rate=0.5)
    data = ImageDataGenerator(image_list, nb_classes=NUM_CLASSES)
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
