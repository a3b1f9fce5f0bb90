"""Images, run folders and checkpoints for the tests of evaluate.py,
predict.py and the tools, made with demo_pictures.py and TensorFlow alone; run_main,
to run a script; reference_outputs, AlexNet's outputs restored by hand.

They are written as a training run writes them (epoch-N checkpoints that
also hold the momentum of every weight, best, config.json) but without the
training scripts, so that these tests do not depend on how training is
organised. AlexNet is full size whatever the task: each checkpoint with
momentum is about 0.46 GB, so remove the folders after use.
"""
import contextlib
import io
import json
import os

import numpy as np

from alexnet import AlexNet, LAYERS, tf
from datagenerator import IMAGENET_MEAN_BGR, load_image, read_list
from demo_pictures import SOURCE_CLASSES, class_name, make_demo_dataset

#: make_images(folder, train_per_class, val_per_class, seed=0): JPEG
#: pictures of four classes in folder/images and the lists train.txt and
#: val.txt; returns the paths of the two lists. The demo's small set.
make_images = make_demo_dataset

#: The classes of make_images, label 0 first.
CLASS_NAMES = [class_name(c) for c in SOURCE_CLASSES[:4]]


def run_main(main, argv):
    """Run a script's main(argv); returns (stdout, stderr, exit status).
    Any exception other than SystemExit (a traceback) fails the test."""
    out, err = io.StringIO(), io.StringIO()
    status = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exit:
            status = exit.code
    return out.getvalue(), err.getvalue(), status


def centre_crops(list_file):
    """(images, labels) of a list: the 227x227 centre crops of the 256x256
    images minus the mean, cropped here without inference.py."""
    paths, labels, _ = read_list(list_file)
    images = [load_image(path)[14:241, 14:241] for path in paths]
    return (np.array(images, np.float32) - IMAGENET_MEAN_BGR,
            np.array(labels))


def make_run(folder, train_list, num_classes, epochs=2, steps=2,
             learning_rate=1e-5, seed=0):
    """A run folder: AlexNet trained from scratch with SGD and momentum,
    `steps` steps per epoch on the images of `train_list`. (The rate is
    small: without the kit's per-layer rates, 1e-4 already saturates the
    softmax in four steps.)

    Saves epoch-1 ... epoch-<epochs> (weights and momentum) and `best`,
    which holds the weights of epoch 1, so that best and latest differ; and
    a config.json whose replacementpath '' means "paths as in the list".
    Returns the folder.
    """
    images, labels = centre_crops(train_list)
    os.makedirs(folder, exist_ok=True)
    with tf.Graph().as_default():
        tf.set_random_seed(seed)
        x = tf.placeholder(tf.float32, [None, 227, 227, 3])
        y = tf.placeholder(tf.int64, [None])
        net = AlexNet(x, 1.0, num_classes, LAYERS)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=net.fc8))
        train = tf.train.MomentumOptimizer(learning_rate, 0.9).minimize(loss)
        saver = tf.train.Saver(max_to_keep=None)
        weights_only = tf.train.Saver(tf.trainable_variables())
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for epoch in range(1, epochs + 1):
                for step in range(steps):
                    batch = np.arange(step, len(images), steps)
                    sess.run(train, {x: images[batch], y: labels[batch]})
                saver.save(sess, os.path.join(folder, 'epoch'),
                           global_step=epoch)
                if epoch == 1:
                    weights_only.save(sess, os.path.join(folder, 'best'),
                                      latest_filename='best_checkpoint')
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        json.dump({'replacementpath': '', 'num_classes': num_classes}, f)
    return folder


def save_checkpoint(prefix, num_classes, seed=0, momentum=True,
                    values=None):
    """A freshly initialised AlexNet saved at `prefix`; with `momentum`,
    also the optimizer's slots (all 7.0), as in a training checkpoint;
    `values` ({'conv3/weights': array, ...}) replace some variables.
    Returns {'conv1/weights': array, ...}: AlexNet's 16 variables."""
    with tf.Graph().as_default():
        tf.set_random_seed(seed)
        x = tf.placeholder(tf.float32, [None, 227, 227, 3])
        net = AlexNet(x, 1.0, num_classes, LAYERS)
        model_variables = {v.op.name: v for v in tf.global_variables()}
        if momentum:
            tf.train.MomentumOptimizer(0.01, 0.9).minimize(
                tf.reduce_sum(net.fc8))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for name, value in (values or {}).items():
                model_variables[name].load(value, sess)
            slots = set(tf.global_variables()) - set(model_variables.values())
            for slot in slots:  # unlike any weight
                slot.load(np.full(slot.shape.as_list(), 7, np.float32), sess)
            tf.train.Saver().save(sess, prefix)
            return sess.run(model_variables)


def softmax(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def reference_outputs(prefix, num_classes, images):
    """pool5 (flattened), fc6, fc7, fc8 and the softmax of AlexNet restored
    by hand from a checkpoint, for preprocessed images."""
    with tf.Graph().as_default():
        tf.set_random_seed(0)  # needed once op determinism is on
        x = tf.placeholder(tf.float32, [None, 227, 227, 3])
        net = AlexNet(x, 1.0, num_classes, LAYERS)
        saver = tf.train.Saver(var_list=tf.global_variables())
        with tf.Session() as sess:
            saver.restore(sess, prefix)
            pool5, fc6, fc7, fc8 = sess.run(
                [net.pool5, net.fc6, net.fc7, net.fc8], {x: images})
    return dict(pool5=pool5.reshape(len(images), -1), fc6=fc6, fc7=fc7,
                fc8=fc8, probabilities=softmax(fc8))
