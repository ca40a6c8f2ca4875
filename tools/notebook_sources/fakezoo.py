"""A random-weight zoo with the recipe's shapes, for developing notebook code before the real zoo lands."""
from pathlib import Path
import torch
from llava_mini import zoo, jobs, recipe, clip
from llava_mini.lm import LanguageModel, LMConfig
from llava_mini.tokenizer import load_tokenizer
root = Path("/tmp/fakezoo")
zoo.ZOO_DIR = root
tok = load_tokenizer()
torch.manual_seed(0)
m = clip.ClipMini(recipe.VISION, clip.TextConfig(len(tok)))
zoo.save("clip-mini", m, recipe.clip_meta(m), root)
zoo.record("clip-mini", {}, {"loss": 1.0, "zero_shot": 0.5, "probe_shape": {"all": 0.8, "small": 0.7, "large": 0.9},
                             "probe_shape_random_init": {"all": 0.7, "small": 0.5, "large": 0.9}}, root)
for name in ("vicuna-mini", "plain-lm"):
    lm = LanguageModel(LMConfig(len(tok)))
    zoo.save(name, lm, {"kind": "lm", "lm": lm.config.__dict__}, root)
    zoo.record(name, {}, {"loss": 1.0}, root)
acc = {k: 0.5 for k in ("colour", "shape", "count", "position", "existence", "relation", "overall", "existence_yes",
                        "existence_no", "conjunction_foil", "description", "reasoning", "caption_like")}
for name, lm in (("llava-mini-stage1", "vicuna-mini"), ("plain-lm-stage1", "plain-lm")):
    model = jobs.assemble(zoo.load("clip-mini", root).vision, zoo.load(lm, root))
    zoo.save(name, model, {"kind": "llava", "llava": model.config.to_dict()}, root, components={"vision": "clip-mini", "lm": lm})
    zoo.record(name, {}, {"trainable": 8320, "loss": 2.0, "accuracy": {**acc, "n": 300}}, root)
print(zoo.names(root))
