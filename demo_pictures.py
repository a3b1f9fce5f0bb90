"""The generated pictures of `finetune.py --demo` (demo.py).

Coloured shapes on noisy ground of a random colour, in two tasks: the
*source* task that the demo's pretraining learns, and the small *target*
task of the exercise, whose shapes the source never showed. Also the small
four-class set of the tests (make_demo_dataset) and tools/demo_data.py.
"""
import os

import numpy as np

#: Object colours, BGR as OpenCV draws them.
COLOURS = {'red': (40, 40, 220), 'green': (40, 200, 40),
           'blue': (220, 60, 30), 'yellow': (30, 220, 230),
           'magenta': (200, 40, 200), 'cyan': (220, 220, 40)}

#: The source task, which pretraining learns. Colour and shape both tell
#: the classes apart: from scratch AlexNet learns colours within an epoch,
#: shapes alone hardly in a few.
SOURCE_CLASSES = [('red', 'disc'), ('green', 'square'), ('blue', 'stripes'),
                  ('yellow', 'triangle'), ('magenta', 'ring'),
                  ('cyan', 'cross')]

#: The target task, the exercise's small data set: shapes the source never
#: showed, in colours it did. What transfers is what the source taught the
#: lower layers: detectors of these colours and of edges.
TARGET_CLASSES = [('red', 'star'), ('green', 'diamond'), ('blue', 'frame'),
                  ('yellow', 'checks')]


def class_name(colour_and_shape):
    return '%s %s' % colour_and_shape


def draw_shape(image, shape, centre, r, colour):
    """Draw a shape of `colour`, 2r pixels wide, around `centre`."""
    import cv2
    x, y = centre
    thick = max(4, r // 4)  # of rings, frames and the arms of a cross
    if shape == 'disc':
        cv2.circle(image, (x, y), r, colour, -1)
    elif shape == 'ring':
        cv2.circle(image, (x, y), r - thick // 2, colour, thick)
    elif shape == 'square':
        cv2.rectangle(image, (x - r, y - r), (x + r, y + r), colour, -1)
    elif shape == 'frame':
        inset = r - thick // 2
        cv2.rectangle(image, (x - inset, y - inset), (x + inset, y + inset),
                      colour, thick)
    elif shape == 'stripes':  # vertical bars
        for left in range(x - r, x + r, 16):
            cv2.rectangle(image, (left, y - r), (left + 7, y + r), colour, -1)
    elif shape == 'checks':  # a checkerboard
        cell = max(8, r // 3)
        for row, top in enumerate(range(y - r, y + r, cell)):
            for left in range(x - r + (row % 2) * cell, x + r, 2 * cell):
                cv2.rectangle(image, (left, top),
                              (left + cell - 1, top + cell - 1), colour, -1)
    elif shape == 'cross':
        cv2.rectangle(image, (x - r, y - thick), (x + r, y + thick), colour, -1)
        cv2.rectangle(image, (x - thick, y - r), (x + thick, y + r), colour, -1)
    else:
        cv2.fillPoly(image, [polygon(shape, x, y, r)], colour)


def polygon(shape, x, y, r):
    """The corners of a triangle, diamond or five-pointed star."""
    if shape == 'triangle':
        corners = [[x, y - r], [x - r, y + r], [x + r, y + r]]
    elif shape == 'diamond':
        corners = [[x, y - r], [x - r, y], [x, y + r], [x + r, y]]
    elif shape == 'star':  # points at radius r, inner corners at 0.45 r
        angles = np.arange(10) * np.pi / 5 - np.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        corners = np.stack([x + radii * np.cos(angles),
                            y + radii * np.sin(angles)], axis=1)
    else:
        raise ValueError('unknown shape %r' % shape)
    return np.round(np.array(corners)).astype(np.int32)


def draw_picture(colour, shape, rng, size=256):
    """A uint8 BGR picture: the shape in the colour (give or take 25) at a
    random place and size, on noisy ground of a random colour. 256x256: the
    size the loaders resize every image to."""
    ground = rng.integers(0, 256, 3)
    image = np.clip(ground + rng.normal(0, 25, (size, size, 3)),
                    0, 255).astype(np.uint8)
    bgr = np.clip(np.add(COLOURS[colour], rng.integers(-25, 26, 3)), 0, 255)
    r = int(rng.integers(40, 90))
    centre = (int(rng.integers(r, size - r)), int(rng.integers(r, size - r)))
    draw_shape(image, shape, centre, r, tuple(int(c) for c in bgr))
    return image


def make_image_set(folder, classes, train_per_class, val_per_class, seed=0):
    """Write pictures of `classes`, a list of (colour, shape) whose index is
    the label, and train.txt, val.txt into `folder`. Returns the two lists'
    paths. Their lines name the images relative to the list
    (`images/train_0_000.jpg 0`), so the folder may move. The same seed
    draws the same pictures."""
    import cv2
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, 'images'), exist_ok=True)
    lists = []
    for split, per_class in (('train', train_per_class),
                             ('val', val_per_class)):
        lines = []
        for label, (colour, shape) in enumerate(classes):
            for i in range(per_class):
                name = 'images/%s_%d_%03d.jpg' % (split, label, i)
                cv2.imwrite(os.path.join(folder, name),
                            draw_picture(colour, shape, rng))
                lines.append('%s %d\n' % (name, label))
        lists.append(os.path.join(folder, split + '.txt'))
        with open(lists[-1], 'w') as f:
            f.writelines(lines)
    return tuple(lists)


def make_demo_dataset(folder, train_per_class=30, val_per_class=10, seed=0):
    """A small set of four classes (the first four of the source task) that
    AlexNet learns from scratch in a few epochs: (train list, val list)."""
    return make_image_set(folder, SOURCE_CLASSES[:4], train_per_class,
                          val_per_class, seed)
