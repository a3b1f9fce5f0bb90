"""AlexNet as a feature extractor: one row of a layer's activations per image.

    python tools/extract_features.py --layer fc7 trainfile.txt train_fc7.npy \\
        --checkpoint runs/finetune/checkpoints
    python tools/extract_features.py --layer pool5 testfile.txt test.npz \\
        --weights bvlc_alexnet.npy          # the ImageNet network itself

The activations of a late layer describe an image in a few thousand numbers
that other models can learn from: a linear classifier, a nearest-neighbour
search, or a recurrent net that writes a caption from them. Layers:

    pool5  9216 values: the 6x6x256 output of the last convolution,
           flattened in (height, width, channel) order, as fc6 reads it
    fc6    4096 values, after the ReLU
    fc7    4096 values, after the ReLU
    fc8    the logits, one per class

Row i belongs to line i of the list (comments and blank lines skipped). With
OUT.npy the labels go to OUT_labels.npy beside it; with OUT.npz both (and
the image paths) go into the one file, as `features`, `labels`, `paths`.
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import inference  # noqa: E402
from datagenerator import LOADERS  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('list', help='the images, "<path> <label>" per line')
    parser.add_argument('out', help='OUT.npy (labels in OUT_labels.npy) or '
                                    'OUT.npz')
    parser.add_argument('--layer', choices=inference.FEATURE_LAYERS,
                        default='fc7', help='the layer to take (default: fc7)')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--checkpoint', metavar='RUN_OR_CHECKPOINT',
                        help='a run folder (its best checkpoint) or a '
                             'checkpoint prefix')
    source.add_argument('--weights', metavar='FILE',
                        help='an ImageNet weights file such as '
                             'bvlc_alexnet.npy (see bvlc_alexnet.npy.md)')
    parser.add_argument('--replacementpath', default=None,
                        help="the folder of the images (default: the run's "
                             'config.json, else %s)'
                             % inference.DEFAULT_IMAGES)
    parser.add_argument('--loader', choices=LOADERS, default='opencv')
    parser.add_argument('--batch_size', type=inference.positive_int,
                        default=64)
    return parser.parse_args(argv)


def open_model(args):
    if args.checkpoint:
        return inference.Model.from_checkpoint(args.checkpoint)
    # The ImageNet file's fc8 (1000 classes) is only needed for fc8 itself.
    return inference.Model.from_weights(args.weights,
                                        with_fc8=args.layer == 'fc8')


def output_paths(out):
    """(features file, labels file) for OUT.npy; (OUT.npz, None) for .npz."""
    if out.endswith('.npz'):
        return out, None
    stem = out[:-len('.npy')] if out.endswith('.npy') else out
    return stem + '.npy', stem + '_labels.npy'


def save(features, labels, paths, out):
    features_file, labels_file = output_paths(out)
    if labels_file is None:
        np.savez(features_file, features=features, labels=labels, paths=paths)
        print('Wrote features %s, labels and paths to %s'
              % (features.shape, features_file))
    else:
        np.save(features_file, features)
        np.save(labels_file, labels)
        print('Wrote features %s to %s and labels to %s'
              % (features.shape, features_file, labels_file))


def extract(args):
    replacementpath = inference.images_folder(args.replacementpath,
                                              args.checkpoint)
    paths, labels = inference.read_image_list(args.list, replacementpath)
    with open_model(args) as model:
        print('%s features of %d images from %s'
              % (args.layer, len(paths), model.source))
        features = inference.predict_list([model], paths, args.loader,
                                          args.batch_size, layer=args.layer)[0]
    save(features, labels, paths, args.out)
    return features, labels


def main(argv=None):
    args = parse_args(argv)
    try:
        extract(args)
    except inference.INPUT_ERRORS as error:
        sys.exit('extract_features.py: %s' % error)
    except OSError as error:  # the output cannot be written
        sys.exit('extract_features.py: %s' % error)


if __name__ == '__main__':
    main()
