"""Name the flowers in your own pictures with a trained AlexNet.

    python predict.py rose.jpg g/*.png --checkpoint runs/finetune/checkpoints
    python predict.py rose.jpg --export exported/    # tools/export_model.py

Prints the five most likely classes of each image with their probabilities.
Any JPEG or PNG works (colour, grayscale, with transparency, palette): each
is resized to 256x256 and its centre 227x227 crop is shown to the net, as
in validation. A file that cannot be read is reported and skipped.

The images are read, shown to the net and printed a batch at a time, so a
folder of ten thousand pictures needs no more memory than ten.
"""
import argparse
import sys

import numpy as np

import inference
from datagenerator import LOADERS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('images', nargs='+', metavar='IMAGE')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--checkpoint', metavar='RUN_OR_CHECKPOINT',
                        help='a run folder (its best checkpoint) or a '
                             'checkpoint prefix')
    source.add_argument('--export', metavar='DIR',
                        help='a folder written by tools/export_model.py')
    parser.add_argument('--class_names', default=None,
                        help='one class name per line, label 0 first '
                             '(default: the names of the export, else '
                             'class_names.txt)')
    parser.add_argument('--top', type=inference.positive_int, default=5,
                        help='how many classes to show (default: 5)')
    parser.add_argument('--ten_crop', action='store_true',
                        help="average over Caffe's ten views")
    parser.add_argument('--loader', choices=LOADERS, default='opencv')
    parser.add_argument('--batch_size', type=inference.positive_int,
                        default=64, help='views per forward pass (default: '
                                         '64; 10 views per image with '
                                         '--ten_crop)')
    return parser.parse_args(argv)


def open_model(args):
    if args.export:
        return inference.Model.from_export(args.export)
    return inference.Model.from_checkpoint(args.checkpoint)


def class_names(args, model):
    """--class_names if given; else the names saved in an export; else
    class_names.txt."""
    if args.class_names is None and model.class_names:
        return model.class_names
    return inference.read_class_names(
        args.class_names or inference.CLASS_NAMES_FILE, model.num_classes)


def print_predictions(path, probabilities, names, top):
    print('%s:' % path)
    for label in np.argsort(-probabilities, kind='stable')[:top]:
        print('  %6.2f%%  %s' % (100 * probabilities[label], names[label]))


def predict(args):
    """Print the predictions of every image, a chunk of images at a time;
    returns the number of images that could not be read."""
    failed = 0
    with open_model(args) as model:
        names = class_names(args, model)
        for chunk in inference.iter_outputs(
                [model], args.images, args.loader, args.batch_size,
                args.ten_crop, skip_unreadable=True):
            for _, error in chunk.unreadable:
                print('predict.py: %s' % error, file=sys.stderr)
            failed += len(chunk.unreadable)
            if chunk.outputs is not None:
                for path, row in zip(chunk.paths, chunk.outputs[0]):
                    print_predictions(path, row, names, args.top)
            sys.stdout.flush()  # each chunk's lines as soon as they are known
    return failed


def main(argv=None):
    args = parse_args(argv)
    try:
        failed = predict(args)
    except inference.INPUT_ERRORS as error:
        sys.exit('predict.py: %s' % error)
    if failed:
        sys.exit('predict.py: %d of %d images could not be read'
                 % (failed, len(args.images)))


if __name__ == '__main__':
    main()
