"""The zoo: named pretrained checkpoints shipped with the package, and the recipe that rebuilds them.

Real LLaVA starts from two pretrained parts it never trained itself, CLIP ViT-L/14 and Vicuna, and
stage 1 saves only the projector (`mm_projector.bin`). The zoo mirrors that: `clip-mini` and `vicuna-mini`
are full checkpoints; a LLaVA checkpoint stores only what its stages trained (the projector W, plus the
LLM's weights after stage 2) and names the components it was built on.

Each checkpoint is a folder with `config.json` and `model.safetensors`; `manifest.json` records every
file's sha256, the recipe and the metrics measured at build time. `llava-mini zoo build` rebuilds it all.
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from llava_mini.clip import ClipMini, TextConfig
from llava_mini.llava import LlavaConfig, LlavaMini
from llava_mini.lm import LanguageModel, LMConfig
from llava_mini.vision import VisionConfig

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
MANIFEST = "manifest.json"


def _config_path(name: str, root: Path) -> Path:
    """config.json of a zoo name, or of a checkpoint folder given as a path."""
    path = Path(name) / "config.json" if ("/" in name or Path(name).is_dir()) else root / name / "config.json"
    if not path.exists():
        known = ", ".join(names(root)) or "none (run `llava-mini zoo build`)"
        near = difflib.get_close_matches(name, names(root), n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise KeyError(f"no checkpoint {name!r}{hint}: not a folder with config.json, nor a zoo name; known: {known}")
    return path


def names(root: Path = ZOO_DIR) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/config.json"))


def meta(model: torch.nn.Module, answers: str | None = None) -> dict:
    """What config.json records of a model: its kind and configuration (`_build` is the inverse) and, for a
    LLaVA checkpoint, the answer style it was taught (`answers`, which `accuracy` scores)."""
    if isinstance(model, ClipMini):
        return {"kind": "clip", "vision": model.vision.config.__dict__, "text": model.text_config.__dict__,
                "embed_dim": model.visual_projection.out_features}
    if isinstance(model, LanguageModel):
        return {"kind": "lm", "lm": model.config.__dict__}
    if isinstance(model, LlavaMini):
        return {"kind": "llava", "llava": model.config.to_dict(), **({"answers": answers} if answers else {})}
    raise TypeError(f"expected a ClipMini, LanguageModel or LlavaMini, got {type(model).__name__}")


def save(name: str, model: torch.nn.Module, root: Path = ZOO_DIR, components: dict | None = None,
         answers: str | None = None):
    """Write `root/name/`: the model's tensors (minus those of its components) and its config (`meta`)."""
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for prefix in components or {}:
        state = {k: v for k, v in state.items() if not k.startswith(prefix + ".")}
    save_file(state, folder / "model.safetensors")
    config = {**meta(model, answers), "components": components or {}}
    (folder / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")


def _build(config: dict) -> torch.nn.Module:
    """An untrained model of the kind and configuration `meta` recorded."""
    kind = config["kind"]
    if kind == "clip":
        return ClipMini(VisionConfig(**config["vision"]), TextConfig(**config["text"]), config["embed_dim"])
    if kind == "lm":
        return LanguageModel(LMConfig(**config["lm"]))
    if kind == "llava":
        return LlavaMini(LlavaConfig.from_dict(config["llava"]))
    raise ValueError(f"unknown checkpoint kind {kind!r}; expected clip, lm or llava")


def read_config(name: str, root: Path = ZOO_DIR) -> dict:
    """A checkpoint's config.json: its kind, its configuration and the components it was built on."""
    return json.loads(_config_path(name, root).read_text())


def answer_style(name: str, root: Path = ZOO_DIR) -> str:
    """The answer style a checkpoint was taught ("short" for those built before the style was recorded)."""
    return read_config(name, root).get("answers", "short")


def load(name: str, root: Path = ZOO_DIR, kind: str | None = None) -> torch.nn.Module:
    """A checkpoint by zoo name or folder path, in eval mode, with its components' weights filled in.

    With `kind` ("clip", "lm" or "llava"), a checkpoint of another kind raises ValueError."""
    config = read_config(name, root)
    if kind is not None and config["kind"] != kind:
        raise ValueError(f"{name!r} is a {config['kind']} checkpoint; this needs a {kind} one")
    model = _build(config)
    folder = _config_path(name, root).parent
    state = load_file(folder / "model.safetensors")
    for prefix, component in config["components"].items():
        # a name in the same zoo (a checkpoint written by `llava-mini train --out DIR` names the package zoo's)
        beside = (folder.parent / component / "config.json").exists()
        part = load(component, folder.parent if beside else ZOO_DIR)
        part_state = part.vision.state_dict() if isinstance(part, ClipMini) else part.state_dict()
        state.update({f"{prefix}.{k}": v for k, v in part_state.items()})
    model.load_state_dict(state, strict=True)
    return model.eval()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(root: Path = ZOO_DIR) -> dict:
    path = root / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def record(name: str, recipe: dict, metrics: dict, root: Path = ZOO_DIR) -> None:
    """Add or replace one entry of the manifest: file hashes, recipe, metrics. A lock file serialises
    concurrent builds of different names into the same zoo."""
    folder = root / name
    with open(root / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = read_manifest(root)
        manifest[name] = {
            "files": {p.name: sha256(p) for p in sorted(folder.iterdir())},
            "recipe": recipe,
            "metrics": metrics,
        }
        (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def verify(root: Path = ZOO_DIR) -> list[str]:
    """Names of checkpoints whose files no longer match the manifest's sha256 (empty: all good)."""
    bad = []
    for name, entry in read_manifest(root).items():
        for file, digest in entry["files"].items():
            path = root / name / file
            if not path.exists() or sha256(path) != digest:
                bad.append(f"{name}/{file}")
    return bad
