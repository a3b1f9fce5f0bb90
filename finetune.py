"""Fine-tune Caffe's AlexNet on Oxford 102 Flowers, images decoded by OpenCV.

    python finetune.py               # 30 epochs from ImageNet weights
    python finetune.py --scratch     # the same net trained from scratch
    python finetune.py --demo        # a one-minute run on generated images
    python finetune.py --help        # every setting below, with its default

finetune_pil.py is the same script with Pillow decoding the images.
"""
import training
from alexnet import tf

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
filewriter_path = 'runs/{mode}/tensorboard'  # TensorBoard logs; {mode} is finetune or scratch
checkpoint_path = 'runs/{mode}/checkpoints'  # checkpoints, history.csv, config.json
keep_checkpoints = 3                # how many epoch checkpoints to keep (plus the best)
seed = 1                            # random seed: shuffling, crops, flips, initialisation
augment = True                      # random crops and mirrors while training (false: fc-only runs train on features computed once)
image_cache = 'auto'                # keep decoded images between epochs: auto (in memory up to 2 GB, else a temporary file), memory, disk, off
workers = 0                         # threads decoding images (0: one per CPU core, at most 8)
# -----------------------------------------------------------------------------

if __name__ == '__main__':
    config = training.configure(globals())
    training.prepare(config)
    train_data, val_data = training.open_data(config, loader='opencv')
    graph = training.build_graph(config)
    model = graph.model
    with tf.Session(config=training.session_config()) as sess:
        sess.run(graph.init)
        # Copy the ImageNet weights into every layer except skip_layer (fc8).
        # Comment this line out (or pass --scratch) to train from scratch.
        model.load_initial_weights(sess)
        training.train(sess, graph, train_data, val_data, config)
