"""Export a trained AlexNet as one frozen graph, for use outside this kit.

    python tools/export_model.py runs/finetune/checkpoints exported/
    python predict.py rose.jpg --export exported/

A checkpoint needs the Python code that builds the graph (alexnet.py) before
it can be restored. A *frozen* graph needs nothing: it is the graph itself
(a GraphDef protocol buffer) with every variable replaced by a constant
holding its trained value. Any TensorFlow program, in any language, loads
it and runs it. OUT_DIR receives

    frozen_graph.pb   the graph: input `images`, output `probabilities`
    model.json        the tensor names, input format, class count and names

The input `images:0` is float32 [batch, 227, 227, 3]: BGR images, resized
to 256x256, centre 227x227 crop, minus the ImageNet mean (see model.json).
The output `probabilities:0` is the softmax, [batch, num_classes].

Tip for other programs: before the first run TensorFlow's graph optimiser
(Grappler) folds the 228 MB of constants, which takes 10-15 s; a session
with `config.graph_options.rewrite_options.disable_meta_optimizer = True`
starts at once (inference.frozen_graph_session_config does this).
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import inference  # noqa: E402
from alexnet import tf  # noqa: E402
from datagenerator import IMAGENET_MEAN_BGR  # noqa: E402

PREPROCESSING = ('BGR channel order, resized to 256x256, centre 227x227 '
                 'crop, minus mean_bgr, float32, not scaled')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint', metavar='RUN_OR_CHECKPOINT',
                        help='a run folder (its best checkpoint) or a '
                             'checkpoint prefix')
    parser.add_argument('out_dir', metavar='OUT_DIR')
    parser.add_argument('--class_names', default=inference.CLASS_NAMES_FILE,
                        help='one class name per line, label 0 first, '
                             'stored in model.json')
    return parser.parse_args(argv)


def freeze(model):
    """The model's GraphDef with its variables turned into constants.

    convert_variables_to_constants reads each variable's value from the
    session and keeps only what `probabilities` depends on.
    """
    return tf.graph_util.convert_variables_to_constants(
        model.session, model.graph.as_graph_def(), [inference.OUTPUT_NAME])


def describe(model, class_names):
    """What a user of the export needs to know, for model.json."""
    return dict(format='frozen TensorFlow GraphDef',
                graph=inference.EXPORT_GRAPH,
                input=inference.INPUT_NAME + ':0',
                input_shape=[None, inference.CROP, inference.CROP, 3],
                input_preprocessing=PREPROCESSING,
                mean_bgr=[round(float(m), 3) for m in IMAGENET_MEAN_BGR],
                output=inference.OUTPUT_NAME + ':0',
                num_classes=model.num_classes, class_names=class_names,
                checkpoint=model.source, tensorflow=tf.__version__)


def export(checkpoint, out_dir, class_names_file=inference.CLASS_NAMES_FILE):
    """Write frozen_graph.pb and model.json into out_dir; returns its path."""
    with inference.Model.from_checkpoint(checkpoint) as model:
        graph_def = freeze(model)
        names = inference.read_class_names(class_names_file,
                                           model.num_classes)
        info = describe(model, names)
    os.makedirs(out_dir, exist_ok=True)
    graph_file = os.path.join(out_dir, inference.EXPORT_GRAPH)
    with open(graph_file, 'wb') as f:
        f.write(graph_def.SerializeToString())
    with open(os.path.join(out_dir, inference.EXPORT_INFO), 'w') as f:
        json.dump(info, f, indent=2)
    print('Exported %s (%d classes) to %s: %s, %.0f MB, and %s'
          % (info['checkpoint'], info['num_classes'], out_dir,
             inference.EXPORT_GRAPH, os.path.getsize(graph_file) / 1e6,
             inference.EXPORT_INFO))
    return out_dir


def main(argv=None):
    args = parse_args(argv)
    try:
        export(args.checkpoint, args.out_dir, args.class_names)
    except inference.INPUT_ERRORS as error:
        sys.exit('export_model.py: %s' % error)
    except OSError as error:  # OUT_DIR cannot be made or written
        sys.exit('export_model.py: cannot write the export: %s' % error)


if __name__ == '__main__':
    main()
