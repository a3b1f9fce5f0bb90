"""Check image lists before a long run: every line, every image.

    python tools/check_data.py trainfile.txt valtestfile.txt \
        --replacementpath data/oxford102/jpg

Parses each list (all bad lines at once), then decodes every image in
parallel with the loader the training script uses, and prints a report of
the problems by kind: missing, empty, too small or too large, corrupt JPEG
data (a damaged scan that libjpeg would only warn about), unsupported
samples (float or 32-bit TIFFs), unreadable. The exit status is 1 when
anything is wrong, so it can guard a script:
`python tools/check_data.py ... && python finetune.py`.
"""
import argparse
import collections
import os
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from imagefiles import LOADERS, ImageError, load_image  # noqa: E402
from imagelists import ListFileError, images_hint, read_list  # noqa: E402

#: The headings of the report, by ImageError.kind.
HEADINGS = {'missing': 'missing file', 'empty': 'empty file',
            'too small': 'too small', 'too large': 'too large',
            'corrupt JPEG data': 'corrupt JPEG data (a damaged picture)',
            'unsupported samples': 'unsupported samples (float or 32-bit)',
            'unreadable': 'unreadable (corrupt, truncated or not an image)'}


def check_image(path, loader):
    """None if the image loads, else the ImageError saying why not."""
    try:
        load_image(path, loader)
        return None
    except ImageError as error:
        return error


def check_list(list_file, replacementpath, num_classes, loader, workers):
    """(number of images, {heading: [problem lines]}) for one list file.

    When images are missing, and they seem to be somewhere else, the
    heading 'where the images are' says where (imagelists.images_hint).
    """
    try:
        paths, _, lines = read_list(list_file, replacementpath, num_classes)
    except ListFileError as error:
        return 0, {'bad list lines': [str(error)]}
    problems = collections.defaultdict(list)
    hint = images_hint(list_file, paths, replacementpath)
    if hint:
        problems['where the images are'].append('%s: %s' % (list_file, hint))
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda path: check_image(path, loader), paths)
        for line, error in zip(lines, results):
            if error:
                heading = HEADINGS.get(error.kind, HEADINGS['unreadable'])
                problems[heading].append('%s line %d: %s'
                                         % (list_file, line, error))
    return len(paths), problems


def positive_int(text):
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError('%r is not a positive integer' % text)
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.split('\n')[1:]))
    parser.add_argument('lists', nargs='+', metavar='LIST')
    parser.add_argument('--replacementpath', default='data/oxford102/jpg',
                        help="folder of the images, as in finetune.py (default: "
                             "data/oxford102/jpg, where tools/download.py puts "
                             "them; '' for paths as listed)")
    parser.add_argument('--num_classes', type=int, default=102,
                        help='labels must be in 0..num_classes-1 (default 102)')
    parser.add_argument('--loader', choices=LOADERS, default='opencv')
    parser.add_argument('--workers', type=positive_int,
                        default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    total_images, all_problems = 0, collections.defaultdict(list)
    for list_file in args.lists:
        count, problems = check_list(list_file, args.replacementpath,
                                     args.num_classes, args.loader,
                                     args.workers)
        total_images += count
        for kind, items in problems.items():
            all_problems[kind].extend(items)
    count = sum(len(items) for heading, items in all_problems.items()
                if heading != 'where the images are')
    print('Checked %d images in %d list(s): %d problem(s).'
          % (total_images, len(args.lists), count))
    if all_problems.get('missing file'):
        print('A training run refuses to start while any listed image is '
              'missing.')
    for kind, items in sorted(all_problems.items()):
        print('\n%s (%d):' % (kind, len(items)))
        for item in items:
            print('  ' + item)
    return 1 if all_problems else 0


if __name__ == '__main__':
    sys.exit(main())
