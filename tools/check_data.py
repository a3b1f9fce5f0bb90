"""Check image lists before a long run: every line, every image.

    python tools/check_data.py trainfile.txt valtestfile.txt \
        --replacementpath data/oxford102/jpg

Parses each list (all bad lines at once), then decodes every image in
parallel with the loader the training script uses, and prints a report of
the problems by kind. The exit status is 1 when anything is wrong, so it can
guard a script: `python tools/check_data.py ... && python finetune.py`.
"""
import argparse
import collections
import os
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datagenerator import (LOADERS, ImageError, ListFileError,  # noqa: E402
                           load_image, read_list)


def problem_kind(path, message):
    """A short name for what is wrong with an image."""
    if not os.path.exists(path):
        return 'missing file'
    if os.path.getsize(path) == 0:
        return 'empty file'
    if 'too small' in message:
        return 'too small'
    return 'unreadable (corrupt, truncated or not an image)'


def check_image(path, loader):
    """None if the image loads, else the error message."""
    try:
        load_image(path, loader)
        return None
    except ImageError as error:
        return str(error)


def check_list(list_file, replacementpath, num_classes, loader, workers):
    """(number of images, {kind: [problem lines]}) for one list file."""
    try:
        paths, _, lines = read_list(list_file, replacementpath, num_classes)
    except ListFileError as error:
        return 0, {'bad list lines': [str(error)]}
    problems = collections.defaultdict(list)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda path: check_image(path, loader), paths)
        for path, line, message in zip(paths, lines, results):
            if message:
                problems[problem_kind(path, message)].append(
                    '%s line %d: %s' % (list_file, line, message))
    return len(paths), problems


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
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    total_images, all_problems = 0, collections.defaultdict(list)
    for list_file in args.lists:
        count, problems = check_list(list_file, args.replacementpath,
                                     args.num_classes, args.loader,
                                     args.workers)
        total_images += count
        for kind, items in problems.items():
            all_problems[kind].extend(items)
    count = sum(len(items) for items in all_problems.values())
    print('Checked %d images in %d list(s): %d problem(s).'
          % (total_images, len(args.lists), count))
    for kind, items in sorted(all_problems.items()):
        print('\n%s (%d):' % (kind, len(items)))
        for item in items:
            print('  ' + item)
    return 1 if all_problems else 0


if __name__ == '__main__':
    sys.exit(main())
