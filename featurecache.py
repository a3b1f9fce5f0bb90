"""Train the top layers on features computed once: the feature cache.

When only fully connected layers learn, every layer below them is frozen:
for a given image, their output never changes. Yet a plain training step
sends the image through conv1..conv5 again in every epoch, 92% of the
arithmetic of AlexNet's forward pass, only to compute the same numbers. The
course notes call the alternative "a time vs efficiency tradeoff": compute
the features below the retrained layers once, keep them, and train the top
layers on them. Later epochs then cost a small fraction of a normal one.

Two conditions make the features fixed, and `decide` checks both:

1. No convolutional layer learns (train_layers is a subset of fc6, fc7, fc8).
2. Training-time augmentation is off: with random crops and mirrors every
   epoch shows the net different pixels, hence different features.

Which tensor to keep, and why not simply `model.fc6` or `model.fc7`:
In alexnet.py those are taken AFTER dropout, which draws a new random mask
every step. Keeping them would freeze one mask for the whole run. So the
cache holds activations BEFORE dropout, and the dropout between them and the
trained layers still runs in every step, as in normal training:

    first layer that learns  cached tensor     computed in each step
    fc6                      pool5 (6x6x256)   fc6, dropout, fc7, dropout, fc8
    fc7                      fc6/relu (4096)   dropout, fc7, dropout, fc8
    fc8, dropout on          fc6/relu (4096)   dropout, fc7 (frozen),
                                               dropout, fc8
    fc8, dropout_rate 0      fc7/relu (4096)   fc8

The cache is small: 4096 float32 per image, 17 MB for the 1,020 training
images (pool5: 9216 per image, 38 MB).

For fc8 alone with dropout, fc7's input changes every step (its dropout
mask does), so fc7's output is not fixed: it is recomputed, a 4096x4096
matrix product per image, tiny next to the convolutions.

How it works in TensorFlow 1: `session.run(..., feed_dict={tensor: value})`
accepts any tensor of the graph, not only placeholders. Feeding the cached
tensor replaces it, and TensorFlow computes nothing that only leads to it:
the convolutions are skipped.

    features = FeatureCache(model, 'fc6', pixels)
    features.compute(sess, train_data, batch_size)      # once
    for feats, labels in features.batches(train_data, batch_size):
        sess.run(train_op, {features.tensor: feats, y: labels, ...})
"""
import collections

import numpy as np

from alexnet import LAYERS
from datagenerator import check_dtype

FC_LAYERS = ('fc6', 'fc7', 'fc8')


class Decision(collections.namedtuple('Decision', 'layer reason')):
    """`layer`: the layer whose output is cached ('pool5', 'fc6', 'fc7'), or
    None when the feature cache cannot be used; `reason`: why, in words."""

    def message(self):
        if self.layer:
            return 'Feature cache on: %s' % self.reason
        return 'Feature cache off: %s' % self.reason


def decide(train_layers, augment, dropout_rate):
    """Can the top layers train on cached features, and from which layer?

    Args:
        train_layers: the layers that learn.
        augment: random crops or mirrors while training.
        dropout_rate: the fraction of fc6/fc7 units dropped while training.
    """
    learning = [layer for layer in LAYERS if layer in train_layers]
    if not learning:
        return Decision(None, 'no layer learns (train_layers is empty).')
    conv = [layer for layer in learning if layer not in FC_LAYERS]
    if conv:
        return Decision(None, (
            'convolutional layers learn (%s): their outputs change every '
            'step, so no fixed features exist below the learning layers. It '
            'needs train_layers within fc6, fc7, fc8.' % ', '.join(conv)))
    if augment:
        return Decision(None, (
            'training-time augmentation (random crops and mirrors) is on: '
            'every epoch shows each image differently, so its features are '
            'not fixed. Turn it off (augment = False) to train %s on '
            'features computed once.' % ', '.join(learning)))
    first = learning[0]
    if first == 'fc6':
        layer, note = 'pool5', ''
    elif first == 'fc7':
        layer, note = 'fc6', ''
    elif dropout_rate > 0:  # fc8 alone
        layer, note = 'fc6', (
            ' The frozen fc7 is recomputed from it in each step: the dropout '
            'in front of fc7 draws a new mask every step, so fc7\'s output is '
            'not fixed.')
    else:
        layer, note = 'fc7', ''
    return Decision(layer, (
        'only %s learn%s and augmentation is off, so the output of %s (before '
        'any dropout) is computed once per image and fed in every step.%s'
        % (', '.join(learning), 's' if len(learning) == 1 else '', layer,
           note)))


def feature_tensor(model, layer):
    """The tensor of `layer` to cache and feed: pool5, or fc6/fc7 after
    their ReLU and before their dropout (alexnet.fc names it
    '<layer>/relu')."""
    if layer == 'pool5':
        return model.pool5
    return model.fc8.graph.get_tensor_by_name(layer + '/relu:0')


class FeatureCache(object):
    """The features of every image of one list, computed once.

    Attributes:
        tensor: the graph tensor to feed with the cached features.
        features: float32 [list entries, ...], row i for list entry i.
        readable: bool per list entry; False for images that could not be
            read (left out of the batches, as the image pipeline does).
        images_computed: how many images went through the convolutions.
    """

    def __init__(self, model, layer, inputs=None):
        """`inputs`: the tensor the generator's image batches are fed to:
        model.X (float32, minus the mean) unless given; finetune.py's uint8
        `pixels` for generators made with mean=None."""
        self.model = model
        self.layer = layer
        self.inputs = model.X if inputs is None else inputs
        self.tensor = feature_tensor(model, layer)
        self.features = None
        self.readable = None
        self.images_computed = 0

    def compute(self, session, data, batch_size):
        """One pass over `data` (centre crops, list order): keep the
        features of every readable image. The frozen layers must hold their
        final weights (load them first)."""
        shape = tuple(self.tensor.shape.as_list()[1:])
        self.features = np.zeros((data.data_size,) + shape, np.float32)
        self.readable = np.zeros(data.data_size, dtype=bool)
        for indices, images, _ in data.centre_batches(batch_size, prefetch=2):
            if len(indices) == 0:
                continue
            check_dtype(images, self.inputs, data.class_list)
            self.features[indices] = session.run(
                self.tensor, feed_dict={self.inputs: images})
            self.readable[indices] = True
            self.images_computed += len(indices)
        return self

    @property
    def nbytes(self):
        return self.features.nbytes

    def batches(self, data, batch_size):
        """The rest of `data`'s current epoch as (features, one-hot labels).

        The same batches as `data.batches(batch_size)` would give: the
        epoch's order (set by data.reset_pointer), cut at the same places,
        unreadable images left out. Moves the generator on like it.
        """
        for indices in data.index_batches(batch_size):
            indices = indices[self.readable[indices]]
            yield self.features[indices], data.one_hot(indices)


def open_feature_caches(session, model, pixels, train_data, val_data,
                        config):
    """For a training run: decide, say so, and compute the caches.

    `pixels`: the tensor the generators' batches are fed to; `config`: the
    run's settings (train_layers, dropout_rate, batch_size). Returns
    (train cache, validation cache), or (None, None) when the mode does not
    apply. Validation uses the same layer: it runs without dropout on centre
    crops, so its features are fixed in any case.

    The decision is printed when the cache is used, and when it is not
    although only fully connected layers learn (augmentation is on): the
    runs that asked for fc-only training. A run that trains the
    convolutions hears nothing of it.
    """
    augment = train_data.random_crop or train_data.horizontal_flip
    decision = decide(config.train_layers, augment, config.dropout_rate)
    if decision.layer or _fc_only(config.train_layers):
        print(decision.message())
    if not decision.layer:
        return None, None
    caches = []
    for data in (train_data, val_data):
        cache = FeatureCache(model, decision.layer, pixels)
        cache.compute(session, data, config.batch_size)
        caches.append(cache)
    print('Feature cache: %s features of %d + %d images, %.0f MB, computed '
          'once.' % (decision.layer, caches[0].images_computed,
                     caches[1].images_computed,
                     (caches[0].nbytes + caches[1].nbytes) / 1e6))
    return tuple(caches)


def _fc_only(train_layers):
    """Whether some layers learn and all of them are fully connected."""
    learning = [layer for layer in LAYERS if layer in train_layers]
    return bool(learning) and all(layer in FC_LAYERS for layer in learning)
