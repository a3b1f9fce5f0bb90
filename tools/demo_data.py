"""Save the generated pictures of `finetune.py --demo`, to look at them.

    python tools/demo_data.py OUT_DIR            # the target task (4 classes)
    python tools/demo_data.py OUT_DIR --source   # the source task (6 classes)
    python tools/demo_data.py OUT_DIR --small    # make_demo_dataset's 4 classes

Writes the JPEG files and train.txt, val.txt (`<path> <label>` lines) into
OUT_DIR. The pictures are drawn by demo_pictures.py, the lesson is demo.py.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from demo_pictures import (  # noqa: E402
    SOURCE_CLASSES, TARGET_CLASSES, class_name, make_demo_dataset,
    make_image_set)

__all__ = ['make_demo_dataset']


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out_dir')
    which = parser.add_mutually_exclusive_group()
    which.add_argument('--source', action='store_true',
                       help='the source task of the pretraining')
    which.add_argument('--small', action='store_true',
                       help="make_demo_dataset's four classes (the tests')")
    parser.add_argument('--train_per_class', type=int, default=30)
    parser.add_argument('--val_per_class', type=int, default=10)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.train_per_class < 1 or args.val_per_class < 1:
        parser.error('--train_per_class and --val_per_class must be at least 1')
    classes = (SOURCE_CLASSES[:4] if args.small else
               SOURCE_CLASSES if args.source else TARGET_CLASSES)
    try:
        lists = make_image_set(args.out_dir, classes, args.train_per_class,
                               args.val_per_class, args.seed)
    except OSError as error:
        sys.exit('Cannot write into %s: %s' % (args.out_dir, error))
    print('Classes: %s' % ', '.join('%d %s' % (label, class_name(c))
                                    for label, c in enumerate(classes)))
    print('Wrote %s and %s' % lists)


if __name__ == '__main__':
    main()
