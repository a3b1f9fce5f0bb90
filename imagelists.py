"""Image lists: the text files that say which image has which label.

A list file has one image per line, `<path> <label>`:

    jpg/image_00001.jpg 76
    # comments and blank lines are ignored
    my photos/rose 2.jpg 3        <- the label is the last field, so a path
                                     may hold spaces

The label is a class number written with the digits 0-9 only (`+1`, `1_0`,
`1e1`, `0x1` or digits of other scripts are refused: Python's int() would
read some of them, and a typo would become a class). The file is UTF-8 text
(a byte-order mark, as Windows Notepad writes, is fine).

`read_list` checks the whole file and reports every bad line at once;
`missing_images` and `images_hint` say which listed images are not on disk
and where they probably are.
"""
import os
import re

#: A list with more bad lines than this shows only the first ones.
MAX_REPORTED_LINES = 50

_LABEL = re.compile(r'[0-9]+\Z')  # ASCII digits, nothing else


class ListFileError(ValueError):
    """A list file that cannot be used; the message names the file and
    every bad line."""


def read_list(list_file, replacementpath='', num_classes=None):
    """Parse a list file into (paths, labels, line_numbers).

    With `replacementpath` set, each path's folder is replaced by it and the
    file name kept: lists written on another machine work unchanged. Without
    it, relative paths are taken from the list file's own folder (not from
    wherever the script happens to be started).

    Two lines that name the same image file are refused, whether the same
    path is written twice, written differently (`./x.jpg` and `x.jpg`), or
    becomes the same file under replacementpath (`a/x.jpg` and `b/x.jpg`):
    the image would weigh twice in every epoch, or, with two labels, teach
    both. All problems are collected and raised together in one
    `ListFileError`, each with its line number.
    """
    base_dir = os.path.dirname(os.path.abspath(list_file))
    paths, labels, lines, problems, first_seen = [], [], [], [], {}
    for number, line in enumerate(_text_lines(list_file), start=1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        fields = line.rsplit(None, 1)
        problem = _line_problem(fields, num_classes)
        if problem is None:
            path = resolve_path(fields[0], replacementpath, base_dir)
            problem = _duplicate_problem(fields, path, first_seen,
                                         replacementpath)
        if problem:
            problems.append('  line %d: %s' % (number, problem))
            continue
        first_seen[_same_file_key(path)] = (number, fields[0], int(fields[1]))
        paths.append(path)
        labels.append(int(fields[1]))
        lines.append(number)
    if problems:
        shown = problems[:MAX_REPORTED_LINES]
        if len(problems) > len(shown):  # a wrong file, not a few typos
            shown.append('  ... and %d more' % (len(problems) - len(shown)))
        raise ListFileError(
            '%s has %d bad line(s):\n%s\nEach line must be "<path> <label>" '
            'with an integer label from 0 to num_classes-1, each image once.'
            % (list_file, len(problems), '\n'.join(shown)))
    if not paths:
        raise ListFileError('%s lists no images' % list_file)
    return paths, labels, lines


def _text_lines(list_file):
    """The lines of a list file as text, or a ListFileError that says why
    the file is not a UTF-8 text file (never a UnicodeDecodeError)."""
    if os.path.isdir(list_file):
        raise ListFileError('%s is a folder, not a list file' % list_file)
    if not os.path.isfile(list_file):
        raise ListFileError('list file not found: %s' % list_file)
    try:
        with open(list_file, 'rb') as f:
            data = f.read()
    except OSError as error:
        raise ListFileError('cannot read the list file %s: %s'
                            % (list_file, error))
    save_as = 'save it as UTF-8 text (in Notepad: Save as, Encoding: UTF-8)'
    if data[:2] in (b'\xff\xfe', b'\xfe\xff'):
        raise ListFileError('%s is UTF-16 text: %s.' % (list_file, save_as))
    if b'\0' in data:
        raise ListFileError(
            '%s is not a text file (it holds zero bytes: an image, an archive '
            'or a program?). A list is text, one "<path> <label>" per line; '
            '%s.' % (list_file, save_as))
    try:
        text = data.decode('utf-8-sig')  # -sig: drops a byte-order mark
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b'\n') + 1
        raise ListFileError(
            '%s is not UTF-8 text: line %d holds the byte 0x%02X, which UTF-8 '
            'does not allow there (Latin-1 or Windows-1252 text?); %s.'
            % (list_file, line, data[error.start], save_as))
    # Windows (\r\n) and old Mac (\r) line ends count as one line end, as
    # text editors count them.
    return text.replace('\r\n', '\n').replace('\r', '\n').split('\n')


def _line_problem(fields, num_classes):
    """What is wrong with the fields of one line, or None."""
    if len(fields) != 2:
        return 'no label: expected "<path> <label>"'
    label = fields[1]
    if not _LABEL.match(label):
        return ('label %r is not a class number (the digits 0-9 only, no '
                'sign, exponent or other script)' % label)
    if num_classes and int(label) >= num_classes:
        return ('label %s is outside 0..%d (num_classes is %d)'
                % (label, num_classes - 1, num_classes))
    return None


def _duplicate_problem(fields, path, first_seen, replacementpath):
    """A message if `path` was listed before, naming that line."""
    earlier = first_seen.get(_same_file_key(path))
    if earlier is None:
        return None
    line, written, label = earlier
    if written == fields[0]:
        where = '%s is listed twice' % written
    elif replacementpath:
        where = ('%s and %s (line %d) are the same file %s once the folder '
                 'is replaced by replacementpath %r (it keeps only the file '
                 'name)' % (fields[0], written, line, path, replacementpath))
    else:
        where = ('%s and %s (line %d) are the same file %s'
                 % (fields[0], written, line, path))
    if label != int(fields[1]):
        return ('%s, with two labels: %s here, %d on line %d. Keep the line '
                'with the right one.' % (where, fields[1], label, line))
    return ('%s (first on line %d, same label): remove one of the lines.'
            % (where, line))


def _same_file_key(path):
    """Paths of the same file compare equal: `a/./x.jpg` and `a/x.jpg`, and
    on Windows `X.JPG` and `x.jpg` (normcase folds case there only)."""
    return os.path.normcase(os.path.abspath(path))


def resolve_path(path, replacementpath, base_dir):
    """Where the image of a list line lives on this machine."""
    if replacementpath:
        # Lists made on Windows use backslashes: take the file name either way.
        name = os.path.basename(path.replace('\\', '/'))
        return os.path.join(replacementpath, name)
    return os.path.join(base_dir, path)


def missing_images(paths, lines):
    """The (path, list line) of every listed image that is not on disk."""
    return [(path, line) for path, line in zip(paths, lines)
            if not os.path.isfile(path)]


def images_hint(list_file, paths, replacementpath):
    """Where the images of `list_file` are, when `paths` (read_list's, with
    `replacementpath`) are missing; None when no such place is found (the
    caller then says how to download them).

    Two mistakes are recognised:
    - replacementpath names the dataset's folder instead of the folder of
      its images (`data/oxford102` instead of `data/oxford102/jpg`): the
      missing files are in a subfolder of it;
    - the list gives paths that exist as written, but replacementpath
      sends them elsewhere: it should be ''.
    """
    missing = [path for path in paths if not os.path.isfile(path)]
    if not missing:
        return None
    names = [os.path.basename(path) for path in missing]
    if replacementpath and os.path.isdir(replacementpath):
        for folder in _subfolders_first_jpg(replacementpath):
            if all(os.path.isfile(os.path.join(folder, name))
                   for name in names):
                return ('the images are in %s: set replacementpath to it'
                        % folder)
    if replacementpath:
        try:
            as_written, _, _ = read_list(list_file)
        except ListFileError:
            return None
        if all(os.path.isfile(path) for path in as_written):
            return ("the listed paths exist as written in %s: set "
                    "replacementpath = '' (empty: paths as listed)"
                    % list_file)
    return None


def _subfolders_first_jpg(folder):
    """The subfolders of `folder`, `jpg` first (the Oxford 102 layout)."""
    try:
        names = sorted(name for name in os.listdir(folder)
                       if os.path.isdir(os.path.join(folder, name)))
    except OSError:
        return []
    names.sort(key=lambda name: name != 'jpg')
    return [os.path.join(folder, name) for name in names]
