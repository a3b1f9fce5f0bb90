"""The configuration of a training script: its flags and their checks.

The scripts keep their settings as plain globals at the top (the config
block). `configure(globals())` turns each into a command-line flag whose
help text is the comment on its line, applies what the command line says,
checks the result, and checks the inputs (lists, images) before anything is
built, so that a typo costs seconds, not an epoch.

Also here: `show_errors_plainly`, which makes the kit's own errors (a bad
list line, a damaged weights file, a run folder in use) end the script with
their message rather than a traceback.
"""
import argparse
import math
import os
import re
import sys

from alexnet import LAYERS
from datagenerator import CACHE_MODES, ListFileError, missing_images, read_list
from imagelists import images_hint

#: The largest seed: NumPy and TensorFlow take seeds below 2**31.
MAX_SEED = 2 ** 31 - 1


class Config(dict):
    """The configuration as a dict whose keys also read as attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)


class ConfigError(ValueError):
    """Settings that cannot work; the message names each flag."""


class InputError(IOError):
    """Lists or images that are missing; the message says how to get them."""


def configure(script_globals, argv=None, check_files=True):
    """Apply the command line to a script's config block, and check it.

    The configuration is every lowercase global of the script holding a
    number, string, bool or list. Each becomes a flag (`--num_epochs 5` or
    `--num_epochs=5`); the script's globals are updated too, so the script
    goes on using the plain names. Then, unless `check_files` is False,
    the lists and images are checked (check_inputs). Returns a Config with
    the extra switches
    `scratch`, `resume`, `strict` and `demo`. `--scratch` empties what
    load_initial_weights would load (skip_layer = every layer): the same as
    commenting out that line.
    """
    show_errors_plainly()
    # One line at a time even into a log file (`python finetune.py > log`),
    # where Python would otherwise hold the epoch lines back in a buffer.
    if hasattr(sys.stdout, 'reconfigure'):  # Python 3.7+
        sys.stdout.reconfigure(line_buffering=True)
    script = script_globals.get('__file__', 'finetune.py')
    defaults = {name: value for name, value in script_globals.items()
                if not name.startswith('_') and name.islower()
                and isinstance(value, (bool, int, float, str, list))}
    parser = _parser(script, script_globals.get('__doc__'), defaults)
    config = Config(vars(parser.parse_args(argv)))
    if config.scratch:
        config['skip_layer'] = list(LAYERS)
    try:  # with --demo too: its runs take these settings
        check_config(config)
    except ConfigError as error:
        parser.error(str(error))
    if check_files and not config.demo:  # the demo makes its own lists
        check_inputs(config)
    script_globals.update({name: config[name] for name in defaults})
    return config


def _parser(script, doc, defaults):
    comments = _config_comments(script)
    parser = argparse.ArgumentParser(
        prog=os.path.basename(script), allow_abbrev=False,
        description=(doc or '').strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in defaults.items():
        shown = ','.join(default) if isinstance(default, list) else default
        parser.add_argument('--' + name, type=_parser_for(default),
                            default=default,
                            metavar=type(default).__name__.upper(),
                            help='%s (default: %s)' % (comments.get(name, ''),
                                                       shown))
    parser.add_argument('--scratch', action='store_true', help=(
        'train every layer from scratch: the same as commenting out '
        'model.load_initial_weights(sess)'))
    parser.add_argument('--resume', action='store_true', help=(
        'continue the run in checkpoint_path from its newest checkpoint'))
    parser.add_argument('--strict', action='store_true', help=(
        'stop at the first unreadable image instead of skipping it'))
    parser.add_argument('--demo', action='store_true', help=(
        'the whole lesson on generated images, no download: pretrain once, '
        'then fine-tune and train from scratch, and compare'))
    return parser


def _config_comments(script):
    """{name: comment} for the `name = value  # comment` lines of a script."""
    comments = {}
    try:
        with open(script, encoding='utf-8') as f:
            for line in f:
                match = re.match(r'^([a-z_][a-z0-9_]*)\s*=.*?#\s*(.*)$', line)
                if match:
                    comments[match.group(1)] = match.group(2)
    except OSError:
        pass
    return comments


def _parser_for(default):
    """The function that turns a command-line string into the default's type."""
    if isinstance(default, bool):
        return _parse_bool
    if isinstance(default, list):
        return lambda text: [item for item in text.split(',') if item]
    return type(default)


def _parse_bool(text):
    value = text.lower()
    if value in ('1', 'true', 'yes', 'on'):
        return True
    if value in ('0', 'false', 'no', 'off'):
        return False
    raise argparse.ArgumentTypeError('expected true or false, not %r' % text)


def check_config(config):
    """Raise ConfigError naming every setting that cannot work."""
    problems = []
    for name in ('num_epochs', 'batch_size', 'num_classes', 'display_step',
                 'keep_checkpoints'):
        if name in config and config[name] < 1:
            problems.append('%s must be at least 1, not %s' % (name, config[name]))
    for name, low, high in (('learning_rate', 0, None), ('momentum', 0, 1),
                            ('weight_decay', 0, None),
                            ('new_layer_lr_mult', 0, None),
                            ('dropout_rate', 0, 1)):
        problem = _out_of_range(config.get(name, 0), low, high, name)
        if name in config and problem:
            problems.append(problem)
    if config.get('learning_rate', 1) == 0:
        problems.append('learning_rate must be positive, not 0')
    if not 0 <= config.get('seed', 0) <= MAX_SEED:
        problems.append('seed must be between 0 and %d, not %s'
                        % (MAX_SEED, config.seed))
    if config.get('workers', 0) < 0:
        problems.append('workers must be 0 (one per core) or more')
    if config.get('image_cache', 'auto') not in CACHE_MODES:
        problems.append('image_cache must be one of %s, not %r'
                        % (', '.join(CACHE_MODES), config.image_cache))
    if 'train_layers' in config and not config.train_layers:
        problems.append('train_layers is empty: no layer would learn')
    for name in ('train_layers', 'skip_layer'):
        unknown = [layer for layer in config.get(name, [])
                   if layer not in LAYERS]
        if unknown:
            problems.append('%s names unknown layers %s; the layers are %s'
                            % (name, unknown, ', '.join(LAYERS)))
    for name in ('checkpoint_path', 'filewriter_path'):
        problem = _not_a_folder(config.get(name, ''), name)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError('configuration error:\n  ' + '\n  '.join(problems))


def _out_of_range(value, low, high, name):
    """A message if `value` is not a finite number in [low, high)."""
    if not math.isfinite(value):
        return '%s must be a finite number, not %s' % (name, value)
    if value < low or (high is not None and value >= high):
        return '%s must be in [%s, %s), not %s' % (
            name, low, 'infinity' if high is None else high, value)
    return None


def _not_a_folder(path, name):
    """A message if `path` (a folder to write) is a file or lies under one."""
    path = path.replace('{mode}', 'scratch')
    probe = path
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if probe and os.path.exists(probe) and not os.path.isdir(probe):
        return ('%s %s cannot be a folder: %s is a file. Choose another '
                'folder.' % (name, path, probe))
    return None


def check_inputs(config):
    """Before building anything: are the lists and their images there?

    Raises InputError listing everything missing, each with the way to get
    it. A list whose images are missing is refused whole: a run never
    trains on part of a list without saying so. (Images that exist but
    cannot be decoded are skipped with a warning, or stop the run with
    --strict.) The weights file is checked when load_initial_weights reads
    it, and only if that line runs.
    """
    missing = []
    for name in ('train_file', 'val_file'):
        list_file = config[name]
        if not os.path.isfile(list_file):
            missing.append('the list %s (%s): it ships with the project; to '
                           'remake it: python tools/make_lists.py'
                           % (list_file, name))
            continue
        paths, _, lines = read_list(list_file, config.replacementpath,
                                    config.num_classes)
        absent = missing_images(paths, lines)
        if absent:
            missing.append('%d of the %d images of %s, e.g. %s (line %d): %s'
                           % (len(absent), len(paths), list_file, absent[0][0],
                              absent[0][1],
                              images_hint(list_file, paths,
                                          config.replacementpath) or
                              download_command(config.replacementpath)))
    if missing:
        raise InputError('Refused to start: a run needs every listed image. '
                         'Missing:\n  - ' + '\n  - '.join(missing))


def download_command(replacementpath):
    """The download command that puts the images where the lists look."""
    folder = replacementpath
    if folder and os.path.basename(os.path.normpath(folder)) == 'jpg':
        return ('python tools/download.py --only data --dest %s'
                % (os.path.dirname(os.path.normpath(folder)) or '.'))
    return ('python tools/download.py --only data, then set replacementpath '
            'to the jpg folder it makes')


# ---- errors ---------------------------------------------------------------


def user_errors():
    """The exception classes that are the user's to fix: their message is
    all there is to say, a traceback would only hide it."""
    import loop
    import runfiles
    import runs
    import weights
    from datagenerator import ImageError
    return (ConfigError, InputError, ListFileError, ImageError,
            weights.WeightsFileError, runfiles.RunFolderError,
            runfiles.SaveError, runs.RunStopped, loop.DivergedError)


def show_errors_plainly():
    """End the script with the message of a user error, not a traceback.

    Python prints a traceback for an exception that nobody catches; for the
    errors in user_errors() (and Ctrl-C) this prints the message instead.
    The exit status is 1 as usual. Any other exception, a bug, keeps its
    traceback.
    """
    default_hook = sys.excepthook

    def hook(error_type, error, traceback):
        import weights
        if issubclass(error_type, KeyboardInterrupt):
            sys.stderr.write('\nInterrupted.\n')
        elif issubclass(error_type, weights.MissingWeightsError):
            # The message names the script to run with --scratch: this one.
            sys.stderr.write('%s\n' % weights.missing_weights_message(
                error.path, script=os.path.basename(sys.argv[0])))
        elif issubclass(error_type, user_errors()):
            sys.stderr.write('%s\n' % error)
        else:
            default_hook(error_type, error, traceback)
    sys.excepthook = hook
