"""Is a JPEG's compressed data whole? A check that libjpeg does not offer.

A JPEG file is a list of marker segments (the headers: sizes, quantisation
and Huffman tables), then the scan: the Huffman-coded picture, block by
block, up to the end marker (FF D9). When bytes of the scan are lost,
inserted or changed, libjpeg (inside both OpenCV and Pillow) does not fail:
it prints a warning, "Corrupt JPEG data: premature end of data segment" or
"... N extraneous bytes before marker 0xd9", fills what it could not decode
with grey, and returns a picture. Neither library lets a program see the
warning (Pillow silences it, OpenCV prints it to the terminal). Such a
picture would train the net as a flower, so the loaders refuse it; this
module tells them when.

How, without decoding the Huffman codes in Python (tens of times slower
than libjpeg): Pillow decodes from a file object in chunks and stops, with
"image file is truncated", when the data runs out before the picture is
complete. So we give Pillow the file with its end changed, and watch:

1. `read_structure` walks the marker segments (microseconds) to find where
   the scan ends. Some damage shows there already: a marker inside the
   scan that cannot be there (a byte pair FF xx that damage created),
   restart markers (FF D0..D7, which split some scans into segments) out
   of order or in the wrong number, a second scan in a one-scan JPEG.
2. The scan's end marker is replaced by SLACK zero bytes, and Pillow
   decodes (at 1/8 scale: libjpeg still reads every code, but skips most
   of the arithmetic). A whole scan holds exactly the codes of the picture:
   the decoding finishes within the scan (the zeros only feed libjpeg's
   read-ahead).
   - The scan is too short (bytes lost): the decoding runs through the
     zeros and out of data, and Pillow raises instead of finishing.
   - The scan is too long (bytes inserted): the picture is complete before
     the last TOLERANCE bytes of the scan have even been read, which the
     file object sees.

What it cannot see: damage that leaves the scan's length right (a changed
byte that happens to decode; libjpeg does not warn either), a scan that is
off by fewer bytes than TOLERANCE plus libjpeg's read-ahead (about 8),
lengths inside the restart segments of a JPEG that has them (only the
last segment's is checked), and the scans of a progressive JPEG (it has
several, and shows its picture only at the end marker, so it gets the
structure check only). Those load as before.
"""
import io
import re

#: Bytes a scan may hold beyond its codes without being refused: some
#: encoders leave a byte or two, and the picture is whole. Below this, and
#: up to about 8 bytes more (libjpeg's read-ahead), extra bytes go unseen.
TOLERANCE = 4

#: Zero bytes put in place of the end marker: enough for libjpeg's
#: read-ahead of up to 57 bits, so a whole scan finishes decoding.
SLACK = 8

#: Frame types whose scans are Huffman-coded: baseline, extended and
#: progressive. Arithmetic-coded and lossless JPEGs are rare: they get the
#: structure check only.
_HUFFMAN_FRAMES = {0xC0, 0xC1, 0xC2}
_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}

#: Markers that may follow a scan: the end, or the tables and the header
#: of the next scan (progressive JPEGs, and the DNL marker).
_AFTER_SCAN = ({0xD9, 0xDA, 0xC4, 0xDB, 0xDC, 0xDD, 0xFE} |
               set(range(0xE0, 0xF0)))

#: Where a scan ends: the first FF byte that is not followed by 00 (a
#: stuffed FF data byte) nor by D0..D7 (a restart marker).
_SCAN_END = re.compile(rb'\xff(?=[^\x00\xd0-\xd7])')


class Structure(object):
    """What `read_structure` found.

    fault: a message when the structure itself is damaged, else None.
    scans: how many scans the picture has: 1 for most JPEGs, several for
        progressive ones (a coarse picture, then refinements).
    scan_start, scan_end: where the last scan's data begins and where its
        end marker begins; None when the data check does not apply (not a
        JPEG, not Huffman-coded, no end marker found).
    """
    fault = scan_start = scan_end = None
    scans = 0


def read_structure(data):
    """Walk the marker segments of `data` (bytes) from its start."""
    found = Structure()
    if data[:3] != b'\xff\xd8\xff':
        return found  # not a JPEG: the loaders deal with it
    position, huffman, restart_interval, mcus = 2, False, 0, None
    sequential, components, covered = False, 0, 0
    while position + 2 <= len(data):
        if data[position] != 0xFF:
            if found.scans:
                found.fault = ('corrupt JPEG data: foreign bytes after the '
                               'compressed picture, at byte %d' % position)
                return found
            # Stray bytes between header segments: libjpeg skips them and
            # the picture is whole, so do the same.
            position = data.find(b'\xff', position)
            if position < 0:
                break
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if found.scans and marker not in _AFTER_SCAN:
            found.fault = ('corrupt JPEG data: marker FF %02X inside the '
                           'compressed picture, at byte %d (bytes lost or '
                           'changed)' % (marker, position))
            return found
        if marker == 0xD9:  # the end
            if found.scans == 1:
                found.fault = _restart_count_fault(
                    data, scan_start, scan_end, restart_interval, mcus)
            if found.scans and huffman and not found.fault:
                found.scan_start, found.scan_end = scan_start, scan_end
            return found
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length field
            position += 2
            continue
        length = _u16(data, position + 2)  # of the segment, itself included
        segment = data[position + 4:position + 2 + length]
        if marker in _FRAMES:
            huffman = marker in _HUFFMAN_FRAMES
            sequential = marker != 0xC2 and marker in _HUFFMAN_FRAMES
            components = segment[5] if len(segment) > 5 else 0
            mcus = _mcu_count(segment)
        if marker == 0xDD:  # DRI: a restart marker every so many MCUs
            restart_interval = _u16(segment, 0)
        position += 2 + length
        if marker == 0xDA and sequential and covered >= components:
            # A sequential JPEG codes each component in one scan: a header
            # of one more scan is damage that looks like a marker.
            found.fault = ('corrupt JPEG data: a scan header after the '
                           'whole picture, at byte %d'
                           % (position - length - 2))
            return found
        if marker == 0xDA:  # a scan: its data runs to the next marker
            covered += segment[0] if segment else components
            found.scans += 1
            scan_start = position
            end = _SCAN_END.search(data, position)
            if end is None:
                # The scan runs to the end of the file: a truncated file,
                # which both decoders refuse.
                return found
            position = scan_end = end.start()
            found.fault = _restart_order_fault(data, scan_start, scan_end,
                                               restart_interval)
            if found.fault:
                return found
    if found.scans:
        # A scan ended at a marker, but what follows runs off the end of
        # the file: a marker that damage created, with a bogus length.
        found.fault = ('corrupt JPEG data: the compressed picture is '
                       'followed by broken segments, without an end marker')
    return found


def _u16(data, offset):
    """The 2-byte big-endian number at `offset` (0 past the end)."""
    return int.from_bytes(data[offset:offset + 2], 'big')


def _mcu_count(frame):
    """How many MCUs (the coding units: 8x8 blocks of each component, more
    of luma when chroma is subsampled) a single scan of all components
    has, from the frame header (SOFn); None if it does not say."""
    if len(frame) < 6:
        return None
    # precision (1 byte), height, width (2 each), components (1), then
    # 3 bytes per component: id, sampling factors (h << 4 | v), table.
    height, width = _u16(frame, 1), _u16(frame, 3)
    components = frame[6:6 + 3 * frame[5]]
    if not height or len(components) < 3:
        return None  # height given later (DNL), or a broken header
    if len(components) == 3:  # one component: an MCU is one block
        return -(-width // 8) * -(-height // 8)
    h_max = max(byte >> 4 for byte in components[1::3]) or 1
    v_max = max(byte & 15 for byte in components[1::3]) or 1
    return -(-width // (8 * h_max)) * -(-height // (8 * v_max))


#: The restart markers FF D0..FF D7 inside a scan's data.
_RESTART = re.compile(rb'\xff[\xd0-\xd7]')


def _restart_order_fault(data, start, end, interval):
    """Restart markers split a scan into segments that libjpeg decodes
    apart: they must come in the order D0, D1, .. D7, D0, .., and only in a
    JPEG that declares them (DRI). A message if they do not."""
    for count, found in enumerate(_RESTART.finditer(data, start, end)):
        if not interval or data[found.start() + 1] != 0xD0 + count % 8:
            return ('corrupt JPEG data: restart marker FF %02X out of place '
                    'at byte %d (bytes lost or changed)'
                    % (data[found.start() + 1], found.start()))
    return None


def _restart_count_fault(data, start, end, interval, mcus):
    """A scan of `mcus` MCUs has one restart marker every `interval` of
    them: a message if it has fewer or more (whole segments lost or
    duplicated)."""
    if not interval or not mcus:
        return None
    expected = (mcus - 1) // interval
    count = sum(1 for _ in _RESTART.finditer(data, start, end))
    if count != expected:
        return ('corrupt JPEG data: %d restart markers where the picture '
                'has %d (segments lost or repeated)' % (count, expected))
    return None


class ScanCheck(object):
    """The check of one JPEG's compressed data, through Pillow's decoder.

        check = ScanCheck(data)
        check.fault                        # the structure check, at once
        check.decode()                     # decode at 1/8 scale: a message
                                           # if the data is damaged, or None
    or, to check while decoding the picture itself with Pillow:
        with Image.open(check.file) as image:
            image.load()                   # may raise OSError
        check.damage(error)                # the OSError raised, or None

    `file` holds the changed bytes when the data check applies (a
    Huffman-coded JPEG of one scan, with a whole structure), and the file
    itself otherwise: a picture decoded from it is the same either way.
    """

    def __init__(self, data):
        self.data = bytes(data)
        structure = read_structure(self.data)
        self.fault = structure.fault
        # A JPEG of several scans (progressive) shows its picture only
        # after its end marker: without one the decoding never finishes,
        # so no data check.
        self.checked = (structure.scan_end is not None and
                        structure.scans == 1 and not self.fault)
        if self.checked:
            self._scan_start, end = structure.scan_start, structure.scan_end
            stop = end - TOLERANCE
            if stop <= structure.scan_start:  # a scan of a few bytes
                stop = None
            self.file = _ChunkedFile(self.data[:end] + b'\0' * SLACK, stop)
        else:
            self.file = io.BytesIO(self.data)

    def damage(self, error=None):
        """What is wrong with the compressed data, once Pillow decoded
        `file` (`error`: the OSError it raised, if any), or None."""
        if not self.checked:
            return None
        if error is not None:
            if self.file.ran_out:
                return ('corrupt JPEG data: the compressed picture ends too '
                        'soon, bytes are missing (libjpeg would print '
                        '"premature end of data segment" and grey out the '
                        'rest)')
            return None
        if not self.file.read_past(self._scan_start):
            raise RuntimeError('ScanCheck.damage: decode check.file first')
        if self.file.finished_before_stop:
            return ('corrupt JPEG data: the picture is complete before the '
                    'last %d bytes of its compressed data, bytes were '
                    'inserted or changed (libjpeg would print "extraneous '
                    'bytes before marker")' % TOLERANCE)
        return None

    def decode(self):
        """Decode `file` at 1/8 scale and return `damage`: the check for a
        loader that decodes with another library (OpenCV)."""
        if not self.checked:
            return None
        from PIL import Image
        self.file.rewind()
        try:
            with Image.open(self.file) as image:
                image.draft('RGB', (image.width // 8, image.height // 8))
                image.load()
        except (OSError, ValueError, SyntaxError) as error:
            # Damage of another kind: the loader's own decoding reports it.
            return self.damage(error)
        return self.damage()


class _ChunkedFile(io.RawIOBase):
    """Bytes as a file that never hands out, in one read, bytes on both
    sides of `stop`: reading up to `stop` is seen apart from reading on.

    ran_out: a read came back empty (the decoder wanted more than there is).
    finished_before_stop: nothing past `stop` was read (yet).
    """

    def __init__(self, data, stop):
        io.RawIOBase.__init__(self)
        self._data, self._stop = data, stop
        self._position = self._highest = 0
        self.ran_out = False

    def rewind(self):
        """Back to the start, as a file never read."""
        self._position = self._highest = 0
        self.ran_out = False

    def read_past(self, position):
        """Whether bytes beyond `position` were read."""
        return self._highest > position

    @property
    def finished_before_stop(self):
        return self._stop is not None and self._highest <= self._stop

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._position

    def seek(self, offset, whence=io.SEEK_SET):
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position,
                 io.SEEK_END: len(self._data)}[whence]
        self._position = max(0, start + offset)
        return self._position

    def read(self, size=-1):
        end = len(self._data)
        if size is not None and size >= 0:
            end = min(end, self._position + size)
        if self._stop is not None and self._position < self._stop:
            end = min(end, self._stop)
        chunk = self._data[self._position:end]
        if size != 0 and not chunk:
            self.ran_out = True
        self._position += len(chunk)
        self._highest = max(self._highest, self._position)
        return chunk

    def readinto(self, buffer):
        chunk = self.read(len(buffer))
        buffer[:len(chunk)] = chunk
        return len(chunk)
