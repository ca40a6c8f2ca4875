"""LLaVA's instruction-data format, written and read (LLaVA §3 and its released LLaVA-Instruct-158K files).

A record is LLaVA's JSON object

    {"id": "0000042", "image": "images/0000042.png",
     "conversations": [{"from": "human", "value": "<image>\\nWhat colour is the circle?"},
                       {"from": "gpt", "value": "red"}, ...]}

and a data file is a JSON list of records. `export_dataset(out_dir, n)` writes, for n scenes:

    images/<id>.png           the image X_v (a scene's id is its seed, 7 digits)
    stage1.json               brief-description instruction + caption (LLaVA's CC3M `chat.json`)
    plain.json                human turn just `<image>`, gpt turn the caption (the `plain` template's view)
    conversation.json         multi-turn QA                 (LLaVA's conversation_58k.json)
    detail.json               detailed descriptions         (detail_23k.json)
    complex_reasoning.json    step-by-step reasoning        (complex_reasoning_77k.json), each question
                              ending with the format cue `teacher.REASONING_CUE`
    instruct.json             the three types mixed         (llava_instruct_150k.json)
    context.json              {id: {"seed", "captions", "boxes", "injected"}}: what the teacher read, and any
                              object it made up (the hallucination knob), per sample type
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from llava_mini import world
from llava_mini.teacher import REASONING_CUE, Teacher

IMAGE_TOKEN = "<image>"
TYPES = {"conversation": "conversation", "detail": "detail", "complex": "complex_reasoning"}  # type -> file
FILES = ("stage1", "plain", *TYPES.values(), "instruct")


def scene_id(seed: int) -> str:
    return f"{seed:07d}"


def _record(rid: str, image: str, turns, plain: bool = False) -> dict:
    """A LLaVA record; the first human turn gets the image placeholder (alone, for `plain`)."""
    conversations = []
    for i, (question, answer) in enumerate(turns):
        if i == 0:
            question = IMAGE_TOKEN if plain else f"{IMAGE_TOKEN}\n{question}"
        conversations += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    return {"id": rid, "image": image, "conversations": conversations}


def scene_records(seed: int, teacher: Teacher | None = None) -> tuple[dict[str, list[dict]], dict]:
    """The records of one scene, keyed by file name (without .json), and its context.json entry."""
    teacher = Teacher() if teacher is None else teacher
    context = world.symbolic_context(world.sample_scene(seed))
    rng = np.random.default_rng([seed, 1])  # the teacher's stream, separate from the scene's
    sid = scene_id(seed)
    image = f"images/{sid}.png"
    brief = teacher.brief(context, rng)
    samples = {"conversation": teacher.conversation(context, rng), "detail": teacher.detail(context, rng),
               "complex": teacher.complex_reasoning(context, rng)}
    records = {"stage1": [_record(sid, image, brief.turns)], "plain": [_record(sid, image, brief.turns, plain=True)]}
    for name, sample in samples.items():
        turns = sample.turns
        if name == "complex":  # the format cue: reason first, then answer
            turns = ((f"{turns[0][0]} {REASONING_CUE}", turns[0][1]),)
        records[TYPES[name]] = [_record(f"{sid}-{name}", image, turns)]
    records["instruct"] = [r for name in TYPES for r in records[TYPES[name]]]
    injected = {name: s.injected for name, s in samples.items() if s.injected is not None}
    meta = {"seed": seed, "captions": list(context.captions), "boxes": list(context.boxes), "injected": injected}
    return records, meta


def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def export_dataset(out_dir, n: int, seed: int | None = None, teacher: Teacher | None = None,
                   size: int = world.IMAGE_SIZE) -> Path:
    """Write scenes seed..seed+n-1 (default: the start of the train split) in LLaVA's format; return out_dir.

    Two runs with the same arguments give byte-identical files (sorted keys, fixed indent, PNGs without
    timestamps)."""
    seed = world.SPLITS["train"].start if seed is None else seed
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of scenes; got {n!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative; got {seed}")
    spanned = [name for name, seeds in world.SPLITS.items() if seed < seeds.stop and seeds.start < seed + n]
    if len(spanned) > 1:
        raise ValueError(f"seeds {seed}..{seed + n - 1} span the {' and '.join(spanned)} splits; stay inside one")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    files, contexts = {name: [] for name in FILES}, {}
    for s in range(seed, seed + n):
        records, meta = scene_records(s, teacher)
        for name in FILES:
            files[name] += records[name]
        contexts[scene_id(s)] = meta
        Image.fromarray(world.render(world.sample_scene(s), size)).save(out / "images" / f"{scene_id(s)}.png")
    for name, records in files.items():
        _dump(out / f"{name}.json", records)
    _dump(out / "context.json", contexts)
    return out


def check_record(record, index: int = 0) -> None:
    """Raise ValueError, naming the record, unless it is a well-formed LLaVA record."""
    if not isinstance(record, dict):
        raise ValueError(f"record #{index}: expected a JSON object, got {type(record).__name__}")
    where = f"record #{index} (id {record.get('id')!r})"
    missing = [key for key in ("id", "conversations") if key not in record]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}; a record needs 'id' and 'conversations'")
    if not isinstance(record["id"], str) or not record["id"]:
        raise ValueError(f"{where}: 'id' must be a non-empty string")
    if "image" in record and (not isinstance(record["image"], str) or not record["image"]):
        raise ValueError(f"{where}: 'image' must be a non-empty path string")
    turns = record["conversations"]
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"{where}: 'conversations' must be a non-empty list of turns")
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise ValueError(f"{where}: turn {i} must be an object with 'from' and 'value'")
        role = ("human", "gpt")[i % 2]
        if turn["from"] != role:
            raise ValueError(f"{where}: turn {i} is from {turn['from']!r} but should be from {role!r}; turns "
                             f"alternate human, gpt, human, ... starting with human")
        if not isinstance(turn["value"], str) or not turn["value"].strip():
            raise ValueError(f"{where}: turn {i} ({role}) has an empty value")
        if role == "gpt" and IMAGE_TOKEN in turn["value"]:
            raise ValueError(f"{where}: turn {i} (gpt) contains {IMAGE_TOKEN}; only the first human turn may")
    if len(turns) % 2:
        raise ValueError(f"{where}: ends with a human turn; every human turn needs a gpt answer")
    placeholders = sum(turn["value"].count(IMAGE_TOKEN) for turn in turns)
    if "image" in record and IMAGE_TOKEN not in turns[0]["value"]:
        raise ValueError(f"{where}: has an image but its first human turn has no {IMAGE_TOKEN} placeholder")
    if placeholders != ("image" in record):
        raise ValueError(f"{where}: {IMAGE_TOKEN} appears {placeholders} times; a record with an image needs "
                         f"exactly one (in its first human turn), a text-only record none")


def load_records(path) -> list[dict]:
    """Load a LLaVA data file (a JSON list of records) and check every record (`check_record`)."""
    records = json.loads(Path(path).read_text())
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of records, got a JSON {type(records).__name__}")
    for index, record in enumerate(records):
        check_record(record, index)
    return records
