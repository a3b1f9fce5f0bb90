#!/usr/bin/env python3
"""Write the Oxford 102 Flowers image lists from the official .mat files.

The dataset's home page publishes two MATLAB files beside the images:

* ``imagelabels.mat``: ``labels``, 8,189 numbers from 1 to 102; entry i-1 is
  the class of ``jpg/image_%05d.jpg`` % i.
* ``setid.mat``: the official split as 1-based image numbers: ``trnid``
  (1,020 images, 10 per class), ``valid`` (1,020, 10 per class) and ``tstid``
  (6,149, the rest).

This tool turns them into the plain-text lists the training scripts read, one
line per image, sorted by image number::

    jpg/image_00001.jpg 76

The path is relative to the dataset root (the folder that holds ``jpg/``) and
the label is 0-based (official label minus 1), as TensorFlow's one-hot and
sparse losses expect. By default:

    trainfile.txt    <- trnid
    valtestfile.txt  <- valid
    testfile.txt     <- tstid

Another assignment is one option away, for example training on more images:

    python tools/make_lists.py --train trnid,tstid --val valid --test valid

scipy (for ``scipy.io.loadmat``) is needed by this tool only.
"""
import argparse
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLITS = ('trnid', 'valid', 'tstid')
#: list file -> default official splits that go into it
LISTS = (('trainfile.txt', 'train', 'trnid'),
         ('valtestfile.txt', 'val', 'valid'),
         ('testfile.txt', 'test', 'tstid'))
CLASS_NAMES = 'class_names.txt'


def split_names(text):
    """'trnid,tstid' -> ('trnid', 'tstid'); argparse reports a bad name."""
    names = tuple(name.strip() for name in text.split(',') if name.strip())
    unknown = [name for name in names if name not in SPLITS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            'unknown split %r: choose from %s, comma-separated'
            % (','.join(unknown) or text, ', '.join(SPLITS)))
    return names


def load_official(mat_dir):
    """Read (labels, splits) from imagelabels.mat and setid.mat in mat_dir.

    labels[i - 1] is the official 1-based label of image i; splits maps
    'trnid', 'valid', 'tstid' to arrays of 1-based image numbers. A missing
    file raises FileNotFoundError with the command that fetches it.
    """
    from scipy.io import loadmat  # imported here: only this tool needs scipy

    paths = [os.path.join(mat_dir, name)
             for name in ('imagelabels.mat', 'setid.mat')]
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                '%s not found; get the official files with: '
                'python tools/download.py --only data --dest %s'
                % (path, mat_dir))
    labels = loadmat(paths[0])['labels'].ravel().astype(int)
    setid = loadmat(paths[1])
    return labels, {name: setid[name].ravel().astype(int) for name in SPLITS}


def list_lines(image_ids, labels):
    """The lines of a list: one per image number, sorted, label 0-based."""
    return ['jpg/image_%05d.jpg %d\n' % (i, labels[i - 1] - 1)
            for i in sorted(set(image_ids))]


def write_list(path, lines):
    """Write lines with LF endings whatever the platform."""
    with open(path, 'w', newline='\n') as f:
        f.writelines(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Write trainfile.txt, valtestfile.txt and testfile.txt '
                    'from the official imagelabels.mat and setid.mat.')
    parser.add_argument('--mat-dir', default=os.path.join('data', 'oxford102'),
                        help='folder with imagelabels.mat and setid.mat '
                             '(default: %(default)s)')
    parser.add_argument('--out', default=ROOT,
                        help='folder for the lists (default: the project root)')
    for filename, option, default in LISTS:
        parser.add_argument('--' + option, type=split_names,
                            default=(default,), metavar='SPLITS',
                            help='official splits (%s) that go into %s '
                                 '(default: %s)'
                                 % (', '.join(SPLITS), filename, default))
    args = parser.parse_args(argv)

    try:
        labels, splits = load_official(args.mat_dir)
    except (OSError, KeyError, ValueError) as error:
        print('error: %s' % error, file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    for filename, option, _ in LISTS:
        names = getattr(args, option)
        ids = [i for name in names for i in splits[name]]
        lines = list_lines(ids, labels)
        write_list(os.path.join(args.out, filename), lines)
        print('%s: %d images from %s' % (filename, len(lines), '+'.join(names)))
    # Keep the class names beside the lists, so an output folder stands alone.
    names_file = os.path.join(args.out, CLASS_NAMES)
    if not os.path.exists(names_file):
        shutil.copyfile(os.path.join(ROOT, CLASS_NAMES), names_file)
    return 0


if __name__ == '__main__':
    sys.exit(main())
