"""Unpack a tar archive without letting it write outside its folder.

Unpacking a downloaded archive is a classic hole: a member named
``/etc/passwd`` or ``../../.bashrc``, or a symlink pointing out of the
folder, writes wherever the archive's author chose. ``safe_extract`` refuses
such members before anything is written. Used by ``download.py``.
"""
import ntpath
import os
import posixpath
import tarfile


class UnsafeArchiveError(Exception):
    """An archive member would be written outside the destination."""


def is_within(path, folder):
    """True when `path` is `folder` or inside it (both absolute, resolved)."""
    return os.path.commonpath([path, folder]) == folder


def member_problem(member, dest):
    """Why `member` must not be extracted into `dest` (resolved), or None.

    Checked: absolute paths, '..' components, anything but plain files,
    folders and links (devices, FIFOs), and where the member and a link's
    target end up once the links already on disk are followed
    (os.path.realpath), which catches a member written through an earlier
    symlink.
    """
    name = member.name
    if name.startswith(('/', '\\')) or ntpath.splitdrive(name)[0]:
        return 'absolute path'
    if '..' in name.replace('\\', '/').split('/'):
        return "'..' in the path"
    if not (member.isfile() or member.isdir() or member.issym()
            or member.islnk()):
        return 'not a file, folder or link (a device or FIFO)'
    target = os.path.realpath(os.path.join(dest, name))
    if not is_within(target, dest):
        return 'written outside the destination (through a link)'
    if member.issym() or member.islnk():
        if os.path.isabs(member.linkname):
            return 'link to an absolute path %s' % member.linkname
        # A symlink's target is relative to its folder; a hard link's to the
        # archive's root.
        base = posixpath.dirname(name) if member.issym() else ''
        linked = os.path.realpath(os.path.join(dest, base, member.linkname))
        if not is_within(linked, dest):
            return 'link to %s, outside the destination' % member.linkname
    return None


def safe_extract(archive, dest):
    """Unpack the tar `archive` into `dest`, refusing hostile members.

    All members are checked before the first is written, so a hostile archive
    leaves nothing behind; each is checked again just before it is written,
    when the links extracted before it exist on disk. Where Python has
    tarfile's 'data' filter (3.8.17+, 3.11.4+), it runs as a second guard.
    Raises UnsafeArchiveError naming the member.
    """
    os.makedirs(dest, exist_ok=True)
    dest = os.path.realpath(dest)
    options = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for check_only in (True, False):
            for member in members:
                problem = member_problem(member, dest)
                if problem is not None:
                    raise UnsafeArchiveError('%s: refusing member %r: %s'
                                             % (archive, member.name, problem))
                if not check_only:
                    tar.extract(member, dest, **options)
    return len(members)
