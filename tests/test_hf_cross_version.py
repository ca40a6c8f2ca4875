"""An export loads in transformers 4.57 (a second environment, `.venv457`) exactly as in 5.x: no missing
or unexpected keys, the same prompt ids and pixels from the processor (resizing included), the same logits.

`make test` builds the environment (about 40 s with the local torch wheel); by hand: `make .venv457/.installed`.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from llava_mini import hf, world
from llava_mini.chat import read_image
from llava_mini.conversation import build_prompt
from llava_mini.llava import LlavaConfig, LlavaMini
from llava_mini.lm import LMConfig
from llava_mini.tokenizer import load_tokenizer
from llava_mini.vision import VisionConfig

PYTHON_457 = Path(__file__).resolve().parents[1] / ".venv457" / "bin" / "python"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PYTHON_457.exists(), reason=f"no transformers 4.57 environment at {PYTHON_457} "
                       "(build it as this module's docstring says)"),
]
QUESTION = "What colour is the circle?"

# Run under each interpreter: load the export as a transformers user would, save what it computes.
SCRIPT = """
import sys
import numpy as np, torch, transformers
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

png, question, out, *model_dirs = sys.argv[1:]
torch.set_num_threads(1)
results = {"version": np.array(transformers.__version__)}
for i, model_dir in enumerate(model_dirs):
    model, info = LlavaForConditionalGeneration.from_pretrained(model_dir, output_loading_info=True)
    assert not any(info.values()), info
    processor = AutoProcessor.from_pretrained(model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=Image.open(png), text=prompt, return_tensors="pt")
    with torch.no_grad():
        logits = model.eval()(**inputs).logits
    results |= {f"ids{i}": inputs["input_ids"].numpy(), f"pixels{i}": inputs["pixel_values"].numpy(),
                f"logits{i}": logits.numpy()}
np.savez(out, **results)
"""


def models() -> list[LlavaMini]:
    """v1 (linear W, CLS dropped) and 1.5-style (mlp2x_gelu, CLS kept, erf GELU ViT), with non-default
    RoPE theta, RMSNorm eps and grouped-query attention: config fields that 4.x reads under other names."""
    tokenizer = load_tokenizer()
    out = []
    for projector, vision in [("linear", VisionConfig()),
                              ("mlp2x_gelu", VisionConfig(select="cls_patch", feature_layer=-1, act="gelu"))]:
        torch.manual_seed(len(out))
        lm = LMConfig(vocab_size=len(tokenizer), kv_heads=2, rope_theta=500.0, norm_eps=1e-5)
        model = LlavaMini(LlavaConfig(lm=lm, vision=vision, projector=projector, image_token_id=4, pad_token_id=0,
                                      eos_token_id=2)).eval()
        for name, p in model.named_parameters():
            nn.init.normal_(p, mean=float("norm" in name and name.endswith("weight")), std=0.1)
        out.append(model)
    return out


def run(python, tmp_path, png, dirs) -> dict:
    out = tmp_path / f"{Path(python).parent.parent.name}.npz"
    subprocess.run([str(python), "-c", SCRIPT, str(png), QUESTION, str(out), *map(str, dirs)], check=True,
                   timeout=300)
    return dict(np.load(out))


def test_export_loads_identically_in_transformers_4_57_and_5(tmp_path):
    tokenizer = load_tokenizer()
    png = tmp_path / "scene.png"
    Image.fromarray(world.render(world.sample_scene(7), 48)).save(png)  # resized by both processors
    mine = models()
    dirs = [hf.export_hf(model, tokenizer, tmp_path / f"export{i}") for i, model in enumerate(mine)]
    old, new = run(PYTHON_457, tmp_path, png, dirs), run(sys.executable, tmp_path, png, dirs)
    assert str(old["version"]) == "4.57.6" and str(new["version"]).startswith("5.")
    pixels = world.pixel_values(read_image(str(png), mine[0].config.vision.image_size))
    for i, model in enumerate(mine):
        ids = build_prompt([{"from": "human", "value": "<image>\n" + QUESTION}], tokenizer, model.num_image_tokens)
        for result in (old, new):
            assert result[f"ids{i}"].tolist() == [ids]
            assert np.array_equal(result[f"pixels{i}"], pixels.numpy())
        with torch.no_grad():
            ours = model(torch.tensor([ids]), pixels).logits.numpy()
        assert np.abs(old[f"logits{i}"] - new[f"logits{i}"]).max() <= 1e-5
        assert np.abs(ours - new[f"logits{i}"]).max() <= 1e-5
