"""Fine-tune Caffe's AlexNet on Oxford 102 Flowers, images decoded by Pillow.

    python finetune_pil.py           # 30 epochs from ImageNet weights
    python finetune_pil.py --scratch # the same net trained from scratch
    python finetune_pil.py --demo    # the whole lesson on generated images
    python finetune_pil.py --help    # every setting below, with its default

finetune.py is the same script with OpenCV decoding the images.
"""
import sys

import demo
import loop
import runs
import settings
from alexnet import AlexNet, tf
from datagenerator import IMAGENET_MEAN_BGR, ImageDataGenerator
from featurecache import open_feature_caches
from sgd import caffe_sgd, make_deterministic, session_config, set_rate_multipliers

# ---- configuration: edit here, or override any line with --name value -----
train_file = 'trainfile.txt'        # training list: "<path> <label>" per line
val_file = 'valtestfile.txt'        # validation list, same format
replacementpath = 'data/oxford102/jpg'  # folder of the images (replaces each listed path's folder; '' = paths as listed)
learning_rate = 0.001               # base rate of SGD (Caffe's fine-tuning rate)
new_layer_lr_mult = 10.0            # when fine-tuning, freshly initialised layers (fc8) learn this much faster
momentum = 0.9                      # SGD momentum
weight_decay = 0.0005               # L2 weight decay on weights (not biases)
num_epochs = 30                     # passes over the training list
batch_size = 64                     # images per step
dropout_rate = 0.5                  # fraction of fc6/fc7 units dropped while training
num_classes = 102                   # outputs of fc8: the 102 flower species
train_layers = ['conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7', 'fc8']  # layers that learn
skip_layer = ['fc8']                # layers NOT loaded from the weights file (new layers)
weights_path = 'bvlc_alexnet.npy'   # ImageNet weights (see bvlc_alexnet.npy.md)
display_step = 5                    # batches between progress lines (when not on a terminal)
checkpoint_path = 'runs/{mode}/checkpoints'  # checkpoints, history.csv, config.json; {mode} is finetune or scratch
filewriter_path = ''                # TensorBoard logs ('' = a tensorboard folder inside checkpoint_path)
keep_checkpoints = 1                # how many epoch checkpoints to keep (plus the best); each is about 0.46 GB
seed = 1                            # random seed: shuffling, crops, flips, initialisation, dropout
augment = True                      # random crops and mirrors while training (false: fc-only runs train on features computed once)
image_cache = 'auto'                # keep decoded images between epochs: auto (in memory up to 2 GB, else a temporary file), memory, disk, off
workers = 0                         # threads decoding images (0: one per CPU core, at most 8)
# -----------------------------------------------------------------------------

config = settings.configure(globals())  # the command line overrides the lines above
if config.demo:  # pretrain on generated images, then fine-tune and scratch
    sys.exit(demo.run_lesson(__file__, sys.argv[1:]))

# ---- the data: shuffled, cropped and mirrored batches; centred ones ---------
common = dict(num_classes=num_classes, replacementpath=replacementpath,
              loader='pil', mean=None, seed=seed, strict=config.strict,
              workers=workers or None, cache=image_cache)
train_data = ImageDataGenerator(train_file, shuffle=True, random_crop=augment,
                                horizontal_flip=augment, **common)
val_data = ImageDataGenerator(val_file, **common)

# ---- the graph ---------------------------------------------------------------
tf.set_random_seed(seed)  # the same seed draws the same initial weights
make_deterministic()      # ... and adds up the same gradients in the same order
# Batches arrive as uint8 BGR pixels; the graph subtracts the ImageNet mean.
pixels = tf.placeholder(tf.uint8, [None, 227, 227, 3], name='pixels')
x = tf.subtract(tf.cast(pixels, tf.float32), IMAGENET_MEAN_BGR, name='x')
y = tf.placeholder(tf.float32, [None, num_classes], name='labels')
keep_prob = tf.placeholder_with_default(1.0, [], name='keep_prob')
rate = tf.placeholder(tf.float32, [], name='learning_rate')
# The dropout masks of a step depend on [seed, step] alone: a resumed run
# draws the masks the uninterrupted one would have.
dropout_seed = tf.placeholder_with_default(tf.constant([seed, 0], tf.int64),
                                           [2], name='dropout_seed')
model = AlexNet(x, keep_prob, num_classes, skip_layer, weights_path,
                dropout_seed=dropout_seed)

with tf.name_scope('loss'):
    losses = tf.nn.softmax_cross_entropy_with_logits_v2(labels=y,
                                                        logits=model.fc8)
    loss = tf.reduce_mean(losses)
with tf.name_scope('accuracy'):
    correct = tf.equal(tf.argmax(model.fc8, 1), tf.argmax(y, 1))
# Caffe's SGD: momentum, weight decay, biases at 2x, the new fc8 at 10x.
train_op = caffe_sgd(loss, model, train_layers, rate, momentum, weight_decay)

# ---- the session -------------------------------------------------------------
with tf.Session(config=session_config()) as sess:
    sess.run(tf.global_variables_initializer())

    # Copy the ImageNet weights into every layer except skip_layer (fc8).
    # Comment this line out (or pass --scratch) to train from scratch.
    model.load_initial_weights(sess)
    set_rate_multipliers(sess, model, new_layer_lr_mult)  # after the load

    # The run folder: runs/finetune or runs/scratch, as the load went.
    with runs.Run(sess, model, config, train_data, val_data) as run:
        # fc-only training without augmentation: the frozen layers' output
        # is computed once, and fed in place of the images (featurecache.py).
        train_features, val_features = open_feature_caches(
            sess, model, pixels, train_data, val_data, config)
        inputs = pixels if train_features is None else train_features.tensor

        for epoch in run.epochs():
            progress = run.start_epoch(epoch)
            for images, labels in progress.timed(
                    loop.batches(train_data, batch_size, inputs, train_features)):
                _, batch_loss, batch_correct = sess.run(
                    [train_op, loss, correct],
                    feed_dict={inputs: images, y: labels,
                               keep_prob: 1.0 - dropout_rate,
                               rate: learning_rate,
                               dropout_seed: [seed, progress.global_step]})
                progress.update(batch_loss, batch_correct)

            # Validation: every image of val_file, centre crops, no dropout.
            val_loss, val_acc = loop.validate(
                sess, val_data, batch_size, pixels, y, losses, correct,
                val_features)
            # The epoch line, history.csv, TensorBoard, the checkpoints.
            run.end_epoch(progress, val_loss, val_acc)
