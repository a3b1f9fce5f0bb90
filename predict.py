"""Name the flowers in your own pictures with a trained AlexNet.

    python predict.py rose.jpg g/*.png --checkpoint runs/finetune/checkpoints
    python predict.py rose.jpg --export exported/    # tools/export_model.py

Prints the five most likely classes of each image with their probabilities.
Any JPEG or PNG works (colour, grayscale, with transparency, palette): each
is resized to 256x256 and its centre 227x227 crop is shown to the net, as
in validation. A file that cannot be read is reported and skipped.
"""
import argparse
import sys

import numpy as np

import inference
from datagenerator import LOADERS, ImageError


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
    parser.add_argument('--top', type=int, default=5,
                        help='how many classes to show (default: 5)')
    parser.add_argument('--ten_crop', action='store_true',
                        help="average over Caffe's ten views")
    parser.add_argument('--loader', choices=LOADERS, default='opencv')
    parser.add_argument('--batch_size', type=int, default=64)
    return parser.parse_args(argv)


def load_images(paths, loader, ten_crop):
    """The views of every readable image, and the paths that were read.
    Each unreadable file gets its own message on stderr."""
    views, readable = [], []
    for path in paths:
        try:
            views.append(inference.load_views(path, loader, ten_crop))
            readable.append(path)
        except ImageError as error:
            print('predict.py: %s' % error, file=sys.stderr)
    return views, readable


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
    """Returns the number of images that could not be read."""
    views, readable = load_images(args.images, args.loader, args.ten_crop)
    if not readable:
        return len(args.images)
    with open_model(args) as model:
        names = class_names(args, model)
        probabilities = inference.run_views([model], np.stack(views),
                                            batch_size=args.batch_size)[0]
    for path, row in zip(readable, probabilities):
        print_predictions(path, row, names, args.top)
    return len(args.images) - len(readable)


def main(argv=None):
    args = parse_args(argv)
    try:
        failed = predict(args)
    except (inference.CheckpointError, OSError) as error:
        sys.exit('predict.py: %s' % error)
    if failed:
        sys.exit('predict.py: %d of %d images could not be read'
                 % (failed, len(args.images)))


if __name__ == '__main__':
    main()
