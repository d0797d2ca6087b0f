"""Run-time inputs checked before anything is recorded: data roots, weights, class counts.

A recipe can be valid and still unrunnable on this machine: its dataset is not on
disk, a weights file is missing or is not a state dict, or ``model.num_classes`` is
smaller than the dataset's classes, or a user dataset's function cannot be imported.
Each distinct data spec and each distinct (architecture, weights) pair is checked once,
mostly from the file system: of a real dataset only the first label of each split is
decoded, with the reader training uses (a colour-coded or 16-bit one stops here, not in
every trial), and of COCO's annotation files only the first and last bytes are read; a
user dataset's module is imported, not called. So the check costs milliseconds whatever
the dataset's size. A root one or two folders too deep or one too shallow is named in
the same line ("did you mean data.root = ...?").

``ablate run`` refuses with the first problem (exit 2, one line, nothing recorded);
``ablate plan`` and ``ablate cost`` need none of these inputs and print each problem
as a warning instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ablate import extras
from ablate.errors import UserInputError, one_line
from ablate.evaluate.runtime_keys import runtime_problems  # packages a runtime needs
from ablate.paths import expand_user, not_found

MAX_MESSAGE = 292  # characters of one problem line: with "Error: " at most 300

# What each dataset needs under its root, as (relative path, "dir" | "file") templates.
# {train} and {val} are the split names of the spec being checked.
LAYOUTS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "voc2012": ("Pascal VOC 2012 (VOCdevkit/VOC2012/)", (
        ("VOCdevkit/VOC2012/JPEGImages", "dir"),
        ("VOCdevkit/VOC2012/SegmentationClass", "dir"),
        ("VOCdevkit/VOC2012/ImageSets/Segmentation/{train}.txt", "file"),
        ("VOCdevkit/VOC2012/ImageSets/Segmentation/{val}.txt", "file"),
    )),
    "cityscapes": ("Cityscapes (leftImg8bit/, gtFine/)", (
        ("leftImg8bit/{train}", "dir"), ("gtFine/{train}", "dir"),
        ("leftImg8bit/{val}", "dir"), ("gtFine/{val}", "dir"),
    )),
    "coco": ("COCO 2017 (<split>2017/, annotations/)", (
        ("{train}2017", "dir"), ("annotations/instances_{train}2017.json", "file"),
        ("{val}2017", "dir"), ("annotations/instances_{val}2017.json", "file"),
    )),
}
SBD_DIRS = ("SBD", "benchmark_RELEASE/dataset")
MAX_SUBFOLDERS = 200  # of a wrong root, searched for the layout one folder down


def _hint(trial: Any) -> str:
    """How to try the recipe without any real dataset: every real one set to shapes."""
    spec = trial.spec
    sets = [] if spec.data.name == "shapes" else ["--set data.name=shapes"]
    if spec.eval_data.name not in (None, "shapes"):
        sets.append("--set eval_data.name=shapes")
    return f"; to try it on the embedded data: {' '.join(sets)}" if sets else ""


def _missing_piece(root: Path, name: str, train_split: str | None, val_split: str) -> Path | None:
    """The first path of a dataset's layout that is not under ``root``, or None."""
    for template, kind in LAYOUTS[name][1]:
        if train_split is None and "{train}" in template:
            continue  # an evaluation set reads one split
        path = root / template.format(train=train_split, val=val_split)
        if not (path.is_dir() if kind == "dir" else path.is_file()):
            return path
    return None


def _up(path: Path) -> Path:
    return path.parent if path.name not in ("", "..") else path.resolve().parent


def _did_you_mean(prefix: str, name: str, root: Path, train_split: str | None,
                  val_split: str) -> str:
    """'; did you mean data.root = "..."?' where the whole layout lies one or two folders
    up (a root given as .../VOCdevkit/VOC2012 or .../gtFine) or one folder down (the
    folder holding the root), else "". Only read when the root is wrong."""
    candidates = [_up(root), _up(_up(root))]
    if root.is_dir():
        candidates += sorted(p for p in root.iterdir()
                             if not p.name.startswith(".") and p.is_dir())[:MAX_SUBFOLDERS]
    for candidate in dict.fromkeys(candidates):
        if candidate != root and _missing_piece(candidate, name, train_split, val_split) is None:
            return f'; did you mean {prefix}.root = "{candidate}"?'
    return ""


def _layout_problem(prefix: str, name: str, root_text: str | None, train_split: str | None,
                    val_split: str, sbd: bool) -> tuple[str, str] | None:
    """The first missing piece of a real dataset's on-disk layout as (problem, did you
    mean), or None."""
    what = LAYOUTS[name][0]
    if root_text is None:
        return f"{prefix}.root: not set; {prefix}.name = {name!r} reads {what} from a folder", ""
    try:
        root = expand_user(root_text, f"{prefix}.root")
    except UserInputError as err:
        return str(err), ""
    if root.is_file():
        problem = f"{prefix}.root: {root} is a file; expected a folder holding {what}"
    elif not root.is_dir():
        problem = f"{prefix}.root: {not_found(root)}; expected a folder holding {what}"
    else:
        missing = _missing_piece(root, name, train_split, val_split)
        problem = f"{prefix}.root: {not_found(missing)} ({what})" if missing else ""
    if problem:
        return problem, _did_you_mean(prefix, name, root, train_split, val_split)
    if sbd and not any((root / d).is_dir() for d in SBD_DIRS):
        return (f"{prefix}.root: {root / SBD_DIRS[0]} not found (data.sbd = true needs the SBD "
                f"release there or at {root / SBD_DIRS[1]})"), ""
    if name == "coco" and extras.missing("coco"):
        return extras.needs(f"{prefix}.name = 'coco'", "coco"), ""
    return None


def first_label_problems(name: str, root_text: str, splits: list[str], *, sbd: bool = False,
                         val_split: str = "val") -> list[str]:
    """The first label of each split read by the reader training uses, so a colour-coded
    or 16-bit label stops the run with the line a trial would fail with; for COCO, the
    shape of each annotation file. One file per split whatever the dataset's size."""
    try:
        root = expand_user(root_text, "data.root")
        if name == "voc2012":
            from ablate.data import voc  # lazy: loads numpy, PIL

            for path in voc.first_labels(root, splits, sbd=sbd, val_split=val_split):
                voc.read_label(path)
        elif name == "cityscapes":
            from ablate.data import cityscapes  # lazy: loads numpy, PIL

            for split in splits:
                cityscapes.read_label_ids(cityscapes.first_sample(root, split).label)
        elif name == "coco":
            from ablate.data import coco  # lazy: loads numpy

            shapes = (coco.annotation_shape_problem(coco.annotation_path(root, s)) for s in splits)
            return [p for p in shapes if p]
    except UserInputError as err:
        return [str(err)]
    return []


def class_names(name: str, classes: int, root: str | None = None) -> list[str]:
    """The class names a dataset's labels use, without reading it (a ``folder``: its
    ``classes.txt`` under ``root``)."""
    if name == "folder":
        from ablate.data.folder import read_classes  # lazy: loads numpy

        return read_classes(root)
    if name == "shapes":
        from ablate.data.shapes import class_names as shapes_names  # lazy: loads numpy

        return shapes_names(classes)
    if name == "cityscapes":
        from ablate.data.cityscapes import CLASS_NAMES  # lazy: loads numpy, PIL

        return list(CLASS_NAMES)
    from ablate.data.voc import CLASS_NAMES as VOC_NAMES  # COCO is read as the VOC categories

    return list(VOC_NAMES)


def data_problems(trial: Any) -> list[str]:
    """Problems of a trial's training data and, if it has one, its evaluation data."""
    spec = trial.spec
    data, eval_data = spec.data, spec.eval_data
    separate = eval_data.name is not None
    problems = []
    problem = user_builder_problem(data)
    if problem:
        problems.append(problem)
    if data.name in LAYOUTS and data.builder is None:
        val_split = data.train_split if separate else data.val_split
        found = _layout_problem("data", data.name, data.root, data.train_split, val_split,
                                data.sbd)
        if found:  # a root found elsewhere is a better hint than the embedded data
            problems.append(found[0] + (found[1] or _hint(trial)))
        else:
            problems.extend(first_label_problems(
                data.name, str(data.root), list(dict.fromkeys([data.train_split, val_split])),
                sbd=data.sbd, val_split=data.val_split))
    folder_splits = []  # (root, split) of every folder split the trial reads
    if data.name == "folder" and data.builder is None:
        splits = [data.train_split] if separate else [data.train_split, data.val_split]
        folder_splits += [(data.root, split) for split in splits]
    if separate and eval_data.name == "folder":
        folder_splits.append((eval_data.root, eval_data.split))
    if folder_splits:
        from ablate.data.folder import split_problem  # lazy: loads numpy

        problems.extend(p for p in (split_problem(*pair) for pair in folder_splits) if p)
    if separate:
        if eval_data.name in LAYOUTS:
            found = _layout_problem("eval_data", eval_data.name, eval_data.root, None,
                                    eval_data.split, False)
            if found:
                problems.append(found[0] + (found[1] or _hint(trial)))
            else:
                problems.extend(first_label_problems(eval_data.name, str(eval_data.root),
                                                     [eval_data.split]))
        known = {"shapes", "folder", *LAYOUTS}
        if data.name not in known or eval_data.name not in known or data.builder is not None:
            return problems  # user datasets: their classes are compared when loaded
        try:  # a folder's classes.txt: its own problem is named by the other checks
            train_names = class_names(data.name, data.classes, data.root)
            eval_names = class_names(eval_data.name, eval_data.classes, eval_data.root)
        except UserInputError:
            return problems
        if train_names != eval_names:
            problems.append(
                f"eval_data.name: {eval_data.name!r} has {len(eval_names)} classes "
                f"({', '.join(eval_names[:3])}, ...) but data.name {data.name!r} trains "
                f"{len(train_names)} ({', '.join(train_names[:3])}, ...); the evaluation set "
                "must use the training classes in the same order")
    return problems


def user_builder_problem(data: Any) -> str | None:
    """A user dataset (``data.builder`` or a plugin's name) whose function cannot be
    imported (its module, or the function in it, is missing) or takes no argument of a
    ``data.args`` key (or of ``data.root``)."""
    from ablate.data.catalog import user_dataset  # lazy: loads pydantic

    if user_dataset(data) is None:
        return None
    from ablate.data.custom import check_arguments, load_builder  # lazy: loads numpy

    try:
        check_arguments(load_builder(data), data)
    except UserInputError as err:
        return str(err)
    return None


def batch_problem(trial: Any) -> str | None:
    """A training batch that cannot be formed: without ``data.crop_size`` the images of a
    batch must have one size, so a ``folder`` dataset's sizes are read from the image
    headers, and a random rescale (``data.scale_range``) needs a crop."""
    spec = trial.spec
    data, batch = spec.data, spec.train.batch_size
    if data.crop_size is not None or batch < 2 or (data.name == "shapes" and data.builder is None):
        return None
    smallest = ""
    if data.name == "folder" and data.builder is None:
        from ablate.data.folder import training_sizes  # lazy: loads numpy

        try:
            sizes = training_sizes(data.root, data.train_split, data.limit_train)
        except UserInputError as err:
            return str(err)
        side = min(min(wh) for _, wh in sizes)
        smallest = f" to at most {side} (the smallest training image side)"
        distinct = list(dict.fromkeys(wh for _, wh in sizes))
        if len(distinct) > 1:
            root = Path(str(data.root)).expanduser()
            shown = ", ".join(f"{_relative(path, root)} {w}x{h}" for path, (w, h) in
                              [next(s for s in sizes if s[1] == wh) for wh in distinct[:2]])
            return (f"data.crop_size: not set, and training images differ in size ({shown}), "
                    f"so a batch of {batch} cannot be formed; set data.crop_size{smallest} or "
                    "train.batch_size = 1")
    low, high = data.scale_range
    if low != 1.0 or high != 1.0:
        return (f"data.scale_range: [{low}, {high}] rescales each training image by a random "
                f"factor, so without data.crop_size a batch of {batch} cannot be formed; set "
                f"data.crop_size{smallest} or data.scale_range = [1.0, 1.0]")
    return None


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def class_count_problem(trial: Any) -> str | None:
    """``model.num_classes`` below the dataset's class count: labels would be out of range."""
    from ablate.data.catalog import dataset_num_classes  # lazy: loads pydantic

    wanted = trial.spec.model.num_classes
    try:
        have = dataset_num_classes(trial.spec.data)
    except UserInputError:  # a user dataset whose classes only its loader knows
        return None
    if wanted is not None and wanted < have:
        return (f"model.num_classes: {wanted} is fewer than the {have} classes of "
                f"{trial.spec.data.name} (labels 0..{have - 1}); set at least {have} or leave "
                "it unset")
    return None


def weights_file_problem(model: Any) -> str | None:
    """The weights file a model spec names is missing or is not a state dict."""
    from ablate.models.weights import (  # lazy: loads pydantic, torch
        imagenet_path,
        imagenet_weights,
        read_state_dict,
    )

    if model.weights_path:
        key = "model.weights_path"
        try:
            path = expand_user(model.weights_path, key)
        except UserInputError as err:
            return str(err)
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "not found"
            return f"{key}: {path} {what}; expected a state dict file (torch.save of a model's state_dict())"
    else:
        key, path = "model.weights = 'imagenet'", imagenet_path(model.backbone)
        if not path.is_file():
            return (f"{key}: {path} not found; place {imagenet_weights(model.backbone).url} "
                    "there (ablate never downloads)")
    try:
        read_state_dict(path)
    except UserInputError as err:
        if "Weights only load failed" in str(err):  # torch's advice runs to 500 characters
            return (f"{key}: {path} holds pickled Python objects, not only tensors, so "
                    "torch.load(weights_only=True) refuses it; save model.state_dict() instead")
        return f"{key}: {err}"
    return None


def weights_fit_problem(trial: Any) -> str | None:
    """A readable weights file of which no tensor fits the model by name and shape."""
    from ablate.cost.analyse import build_on_meta  # lazy: loads pydantic
    from ablate.models.weights import load_weights  # lazy: loads pydantic, torch
    from ablate.trials.resolve import num_classes  # lazy: loads pydantic

    model = trial.spec.model
    try:
        with warnings.catch_warnings():  # on meta the copy is a no-op, and torch says so
            warnings.filterwarnings("ignore", message=r".*copying from a non-meta parameter",
                                    category=UserWarning)  # once per tensor: 251 lines
            load_weights(build_on_meta(model, num_classes(trial.spec)), model)
    except UserInputError as err:
        return str(err)
    return None


def _weights_source(model: Any) -> tuple[str, str]:
    return (model.weights_path, "") if model.weights_path else ("imagenet", model.backbone)


def _distinct(trials: Iterable[Any], key: Callable[[Any], Any]) -> list[Any]:
    seen: dict[Any, Any] = {}
    for trial in trials:
        seen.setdefault(key(trial), trial)
    return list(seen.values())


def find_problems(trials: list[Any], source: str | None = None) -> list[str]:
    """Every problem with the run-time inputs of ``trials``, one line each, in trial order.

    Each line names the recipe (``source``), the trial, the key and the path expected.
    """
    out: list[str] = []
    seen: set[str] = set()

    def add(trial: Any, problem: str) -> None:
        if problem in seen:  # e.g. one evaluation root shared by several training sets
            return
        seen.add(problem)
        where = f"{source}: " if source else ""
        # the problem itself matters most: drop the trial, then the recipe, before clipping
        for line in (f"{where}trial {trial.name}: {problem}", f"{where}{problem}", problem):
            if len(line) <= MAX_MESSAGE:
                break
        out.append(one_line(line, MAX_MESSAGE))

    def data_key(trial: Any) -> tuple:
        # only the fields the checks read: cheap enough for a 20,000-trial grid
        d, e = trial.spec.data, trial.spec.eval_data
        return (d.name, d.root, d.builder, tuple(d.args), d.train_split, d.val_split, d.sbd,
                d.classes, e.name, e.root, e.split, e.classes)

    data_seen: set[tuple] = set()
    counts_seen: set[tuple] = set()
    batches_seen: set[tuple] = set()
    for trial in trials:  # one pass: each distinct data spec, each class count on it
        key = data_key(trial)
        d = trial.spec.data
        if key not in data_seen:
            data_seen.add(key)
            for problem in data_problems(trial):
                add(trial, problem)
        batch_key = (key, d.crop_size, tuple(d.scale_range), d.limit_train,
                     trial.spec.train.batch_size > 1)
        if batch_key not in batches_seen:
            batches_seen.add(batch_key)
            problem = batch_problem(trial)
            if problem:
                add(trial, problem)
        if (trial.spec.model.num_classes, key) not in counts_seen:
            counts_seen.add((trial.spec.model.num_classes, key))
            problem = class_count_problem(trial)
            if problem:
                add(trial, problem)
    weighted = [t for t in trials
                if t.spec.model.weights != "none" or t.spec.model.weights_path]
    bad_files = set()
    for trial in _distinct(weighted, lambda t: _weights_source(t.spec.model)):
        problem = weights_file_problem(trial.spec.model)
        if problem:
            bad_files.add(_weights_source(trial.spec.model))
            add(trial, problem)
    fitting = [t for t in weighted if _weights_source(t.spec.model) not in bad_files]
    for trial in _distinct(fitting, lambda t: (t.arch_id, _weights_source(t.spec.model))):
        problem = weights_fit_problem(trial)
        if problem:
            add(trial, problem)

    for trial in _distinct(trials, lambda t: tuple(t.spec.eval.runtimes)):
        for problem in runtime_problems(trial.spec.eval.runtimes):
            add(trial, problem)
    return out


def require_inputs(trials: list[Any], source: str | None = None) -> None:
    """Raise ``UserInputError`` with the first problem of ``find_problems`` (exit 2)."""
    problems = find_problems(trials, source)
    if problems:
        more = f" (+{len(problems) - 1} more; `ablate plan` lists them)" if len(problems) > 1 else ""
        first = problems[0]  # already at most MAX_MESSAGE; the count only where it fits
        raise UserInputError(first + more if len(first) + len(more) <= MAX_MESSAGE else first)
