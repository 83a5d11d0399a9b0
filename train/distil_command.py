"""`persuasion distil`: train the fast model on the gold and on what a large model says about the same text.

    persuasion distil --config configs/minilm-distil.yaml --data ../shared/data/ptc-semeval2020  # teacher: the default model
    persuasion distil --resume runs/minilm-distil      # after the run above was killed
    persuasion distil --teacher runs/mpnet-cpu/checkpoint --config configs/minilm-distil.yaml \
        --data ../shared/data/ptc-semeval2020          # another teacher

It is `persuasion train` (train/loop.py) with a teacher; what the teacher says, and the targets the student takes
from it, are train/distil.py's. The command is apart from that module because the loop's data (train/data.py)
uses it: together they would import each other.
"""

from __future__ import annotations

from persuasion.errors import PersuasionError
from persuasion.train.loop import add_arguments as add_training_arguments
from persuasion.train.loop import recipe_from_arguments, train


def add_arguments(parser) -> None:
    add_training_arguments(parser)
    parser.add_argument("--teacher", metavar="CHECKPOINT",
                        help="the checkpoint folder or shipped model (default, fast) to learn from "
                             "(sets the recipe's teacher)")
    parser.add_argument("--teacher-cache", metavar="DIR",
                        help="folder of the teacher's cached outputs, to share between runs (default: teacher/ "
                             "in the run folder)")


def run(args) -> int:
    overrides = {key: value for key, value in (("teacher", args.teacher), ("teacher_cache", args.teacher_cache))
                 if value}
    recipe = recipe_from_arguments(args, overrides)
    if not recipe.teacher:
        raise PersuasionError("give --teacher CHECKPOINT: the trained checkpoint folder to distil")
    if recipe.distil_mix == 0:
        raise PersuasionError("the recipe's distil_mix is 0, so the teacher would be ignored: set it "
                              "(e.g. --set distil_mix=0.5), or use `persuasion train`")
    train(recipe, resume=bool(args.resume))
    return 0
