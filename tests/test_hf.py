"""llava_mini.hf: the export loads in transformers with the same numbers, ids, pixels and answers; import
and export are inverse; what cannot be mapped is refused."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from llava_mini import hf, world
from llava_mini.conversation import IGNORE_INDEX, build_chat, build_prompt, collate, render_chat
from llava_mini.llava import LlavaConfig, LlavaMini
from llava_mini.lm import LMConfig
from llava_mini.tokenizer import SYSTEM_PROMPT, decode, load_tokenizer
from llava_mini.vision import VisionConfig

transformers = pytest.importorskip("transformers")
TOK = load_tokenizer()
CHAT = [  # multi-turn, two images in the first turn (one before, one after the question)
    {"from": "human", "value": "<image>\nWhat colour is the circle?\n<image>"},
    {"from": "gpt", "value": "The circle is red."},
    {"from": "human", "value": "Where is the square?"},
    {"from": "gpt", "value": "The square is in the top left."},
]
SHORT = [{"from": "human", "value": "<image>\nWhat is in the image?"}, {"from": "gpt", "value": "a red circle."}]


def random_model(seed: int = 0, lm_std: float = 0.05, projector: str = "linear", **vision) -> LlavaMini:
    """The default LlavaMini (64x4 ViT, 128x4 LM, 16 image tokens) with every weight non-trivial, so a
    swapped LayerNorm weight and bias or a mis-mapped projector would show."""
    torch.manual_seed(seed)
    cfg = LlavaConfig(lm=LMConfig(vocab_size=len(TOK), kv_heads=2, rope_theta=500.0, norm_eps=1e-5),
                      vision=VisionConfig(**vision), projector=projector, image_token_id=4, pad_token_id=0,
                      eos_token_id=2)
    model = LlavaMini(cfg).eval()
    for name, p in model.named_parameters():
        is_norm = "norm" in name and name.endswith("weight")
        nn.init.normal_(p, mean=float(is_norm), std=0.1 if is_norm or not name.startswith("lm.") else lm_std)
    return model


def scene_images(seeds) -> list[np.ndarray]:
    return [world.render(world.sample_scene(s)) for s in seeds]


def messages(turns, structured: bool = True) -> list[dict]:
    """llava-mini turns -> transformers chat messages; "<image>" lines become {"type": "image"} items."""
    out = []
    for turn in turns:
        content = turn["value"]
        if structured:
            content = [{"type": "image"} if line == "<image>" else {"type": "text", "text": line}
                       for line in content.split("\n")]
        out.append({"role": "user" if turn["from"] == "human" else "assistant", "content": content})
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = random_model()
    out = hf.export_hf(model, TOK, tmp_path_factory.mktemp("export"))
    return model, out


@pytest.mark.parametrize(
    "projector, vision",
    [("linear", {}), ("mlp2x_gelu", {"select": "cls_patch", "feature_layer": -1, "act": "gelu"})],
    ids=["linear-patch", "mlp-cls_patch-gelu"],
)
def test_same_logits_and_loss_as_transformers(tmp_path, projector, vision):
    model = random_model(projector=projector, **vision)
    ref, info = transformers.LlavaForConditionalGeneration.from_pretrained(
        hf.export_hf(model, TOK, tmp_path), output_loading_info=True
    )
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    n = model.num_image_tokens
    batch = collate([build_chat(CHAT, TOK, n), build_chat(SHORT, TOK, n)], pad_id=0)  # right-padded
    pixels = world.pixel_values(np.stack(scene_images([1, 2, 3])))  # (3, 3, 32, 32): 2 + 1 images
    with torch.no_grad():
        ours = model(batch["input_ids"], pixels, batch["attention_mask"], batch["labels"])
        theirs = ref.eval()(**batch, pixel_values=pixels)
    real = batch["attention_mask"].bool()
    assert (ours.logits[real] - theirs.logits[real]).abs().max() <= 1e-5
    assert abs(ours.loss.item() - theirs.loss.item()) <= 1e-6


def test_transformers_user_gets_llava_minis_answer(tmp_path):
    """From a PNG and a question through the processor and generate(), as a transformers user would."""
    model = random_model(lm_std=0.3)  # decisive greedy choices; same architecture as the export
    out = hf.export_hf(model, TOK, tmp_path)
    processor = transformers.AutoProcessor.from_pretrained(out)
    ref = transformers.LlavaForConditionalGeneration.from_pretrained(out).eval()
    for seed, question in [(10, "What colour is the circle?"), (11, "Where is the square?"), (12, "What is in the image?")]:
        png = tmp_path / f"{seed}.png"
        Image.fromarray(scene_images([seed])[0]).save(png)
        chat = [{"from": "human", "value": "<image>\n" + question}]
        prompt = processor.apply_chat_template(messages(chat), add_generation_prompt=True)
        inputs = processor(images=Image.open(png), text=prompt, return_tensors="pt")
        generated = ref.generate(**inputs, max_new_tokens=12, do_sample=False)[0, inputs["input_ids"].shape[1]:]
        answer = processor.decode(generated, skip_special_tokens=True)

        ids = torch.tensor([build_prompt(chat, TOK, model.num_image_tokens)])
        pixels = world.pixel_values(np.array(Image.open(png)))
        ours = model.generate(ids, pixels, max_new_tokens=12)[0]
        assert torch.equal(inputs["input_ids"], ids) and torch.equal(inputs["pixel_values"], pixels)
        assert generated.tolist() == ours.tolist()
        assert answer == decode(ours, skip_special_tokens=True)


def test_processor_ids_equal_segment_built_ids(exported, tmp_path):
    model, out = exported
    processor = transformers.AutoProcessor.from_pretrained(out)
    n = model.num_image_tokens
    images = [Image.fromarray(x) for x in scene_images([4, 5])]
    sample = build_chat(CHAT, TOK, n)
    for structured in (True, False):
        text = processor.apply_chat_template(messages(CHAT, structured))
        assert text == render_chat(CHAT)
        assert processor(images=images, text=text)["input_ids"][0] == sample.input_ids
    # tokenize=True reads the images from the messages and marks the supervised spans.
    msgs = messages(CHAT)
    msgs[0]["content"][0]["image"], msgs[0]["content"][2]["image"] = images
    encoded = processor.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert encoded["input_ids"][0] == sample.input_ids
    assert encoded["assistant_masks"][0] == [int(label != IGNORE_INDEX) for label in sample.labels]
    # A system message replaces llava-mini's; without one, llava-mini's is used; prompts end with the tag.
    custom = processor.apply_chat_template([{"role": "system", "content": "You answer."}, *messages(SHORT)])
    assert custom == render_chat(SHORT, system="You answer.") and SYSTEM_PROMPT not in custom
    prompt = processor.apply_chat_template(messages(CHAT[:3]), add_generation_prompt=True)
    assert processor(images=images, text=prompt)["input_ids"][0] == build_prompt(CHAT[:3], TOK, n)


def test_export_import_export_is_lossless(exported, tmp_path):
    model, out = exported
    mine, tokenizer = hf.import_hf(out)
    again = hf.export_hf(mine, tokenizer, tmp_path)
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(p.name for p in again.iterdir())
    for name in files:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    assert mine.config == model.config
    for (name, a), b in zip(model.state_dict().items(), mine.state_dict().values()):
        assert torch.equal(a, b), name
    # From a model instance (transformers' own key layout) too.
    from_instance, _ = hf.import_hf(transformers.LlavaForConditionalGeneration.from_pretrained(out))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), from_instance.state_dict().values()))


@pytest.mark.parametrize("kind", ["resampler", "cls", "mean"])
def test_export_refuses_projectors_transformers_cannot_hold(tmp_path, kind):
    model = random_model(projector=kind, **({"select": "cls_patch"} if kind == "cls" else {}))
    with pytest.raises(ValueError, match=f"projector '{kind}' has no transformers counterpart"):
        hf.export_hf(model, TOK, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written


def test_import_refuses_what_llava_mini_cannot_represent():
    llama = {"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
             "num_attention_heads": 2, "intermediate_size": 16, "rms_norm_eps": 1e-6, "max_position_embeddings": 32}
    assert hf.lm_config_from_hf(llama).kv_heads == 2
    for bad, match in [({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope type"),
                       ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}}, "rope type"),
                       ({"attention_bias": True}, "attention_bias"), ({"hidden_act": "gelu"}, "hidden_act"),
                       ({"head_dim": 8}, "head_dim"), ({"model_type": "mistral"}, "model_type")]:
        with pytest.raises(ValueError, match=match):
            hf.lm_config_from_hf({**llama, **bad})
    clip = {"model_type": "clip_vision_model", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "image_size": 16, "patch_size": 8}
    assert hf.vision_config_from_hf({"model_type": "clip", "vision_config": clip}, -1, "full").select == "cls_patch"
    with pytest.raises(ValueError, match="CLIP ViT"):
        hf.vision_config_from_hf({**clip, "model_type": "siglip_vision_model"})
    with pytest.raises(ValueError, match="one int"):
        hf.vision_config_from_hf(clip, feature_layer=[-2, -1])
    with pytest.raises(ValueError, match="act"):
        hf.vision_config_from_hf({**clip, "hidden_act": "gelu_pytorch_tanh"})
    w = {"linear_1.weight": torch.eye(8), "linear_2.weight": torch.eye(8)}
    with pytest.raises(ValueError, match="'linear' or 'gelu'"):
        hf.projector_from_hf("silu", w)
    assert hf.projector_from_hf("gelu", w)[0] == "mlp2x_gelu"  # missing biases are zeros


def test_linear_projector_composes_a_non_identity_linear_2():
    torch.manual_seed(0)
    state = {f"linear_{i}.{p}": torch.randn(8, 8) if p == "weight" else torch.randn(8)
             for i in (1, 2) for p in ("weight", "bias")}
    kind, w = hf.projector_from_hf("linear", state)
    z = torch.randn(3, 8)
    two = (z @ state["linear_1.weight"].T + state["linear_1.bias"]) @ state["linear_2.weight"].T + state["linear_2.bias"]
    torch.testing.assert_close(z @ w["weight"].T + w["bias"], two)
