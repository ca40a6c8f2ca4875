"""llava_mini.hf: the export loads in transformers with the same numbers, ids, pixels and answers; import
and export are inverse; what cannot be mapped is refused."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from llava_mini import hf, hf_processor, world
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
    return [world.render(world.sample_scene(s), 32) for s in seeds]  # random_model reads 32-px images


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
    assert (ours.logits[real] - theirs.logits[real]).abs().max() <= 1e-5  # measured 2e-6
    assert abs(ours.loss.item() - theirs.loss.item()) <= 1e-6  # measured 1-2 float32 ulps of the loss (~6.4)
    # Those are rounding-order differences: in float64 the two computations agree (measured: exactly).
    with torch.no_grad():
        ours = model.double()(batch["input_ids"], pixels.double(), batch["attention_mask"], batch["labels"])
        theirs = ref.double()(**batch, pixel_values=pixels.double())
    assert (ours.logits[real] - theirs.logits[real]).abs().max() <= 1e-12
    assert abs(ours.loss.item() - theirs.loss.item()) <= 1e-12


def test_transformers_user_gets_llava_minis_answer(tmp_path):
    """From a PNG and a question through the processor and generate(), as a transformers user would."""
    model = random_model(lm_std=0.3)  # decisive greedy choices; same architecture as the export
    out = hf.export_hf(model, TOK, tmp_path)
    processor = transformers.AutoProcessor.from_pretrained(out)
    ref = transformers.LlavaForConditionalGeneration.from_pretrained(out).eval()
    questions = {10: "What colour is the circle?", 11: "Where is the square?", 12: "What is in the image?"}
    for seed, question in questions.items():
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


def test_transformers_user_gets_what_llava_mini_chat_prints(tmp_path, capsys):
    """The zoo's trained llava-mini, exported: from the PNG and the question, through apply_chat_template,
    the processor and generate(), the decoded answer is the line `llava-mini chat` prints."""
    from llava_mini import cli, zoo

    out = hf.export_hf(zoo.load("llava-mini"), TOK, tmp_path / "export")
    processor = transformers.AutoProcessor.from_pretrained(out)
    ref = transformers.LlavaForConditionalGeneration.from_pretrained(out).eval()
    size = ref.config.vision_config.image_size
    questions = {1100000: "What colour is the circle?", 1100001: "How many objects are there?",
                 1100002: "Where is the square?", 1100003: "Describe the following image in detail."}
    for seed, question in questions.items():
        png = tmp_path / f"{seed}.png"
        Image.fromarray(world.render(world.sample_scene(seed), size)).save(png)
        assert cli.main(["chat", "--model", "llava-mini", "--image", str(png), question]) == 0
        printed = capsys.readouterr().out
        prompt = processor.apply_chat_template(messages([{"from": "human", "value": "<image>\n" + question}]),
                                               add_generation_prompt=True)
        inputs = processor(images=Image.open(png), text=prompt, return_tensors="pt")
        generated = ref.generate(**inputs, max_new_tokens=160, do_sample=False)[0, inputs["input_ids"].shape[1]:]
        assert printed == processor.decode(generated, skip_special_tokens=True).strip() + "\n", question


def test_processor_resizes_other_sizes_as_chat_does(exported, tmp_path):
    """An image of another size (a 48-px image for a 32-px model, non-square photos) gets the same pixels from the exported
    processor as from `chat.read_image`: shortest edge to 48 px, bicubic, centre crop."""
    from llava_mini.chat import read_image

    processor = transformers.AutoProcessor.from_pretrained(exported[1])
    size = processor.image_processor.crop_size["height"]
    rng = np.random.default_rng(0)
    for shape in ((48, 48, 3), (40, 56, 3), (61, 50, 3), (size, size, 3)):
        png = tmp_path / f"{shape[0]}x{shape[1]}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(png)
        notes = []
        ours = world.pixel_values(read_image(str(png), size, log=notes.append))
        theirs = processor.image_processor(images=Image.open(png), return_tensors="pt")["pixel_values"]
        assert ours.shape == (1, 3, size, size) and torch.allclose(theirs, ours, atol=1e-6), shape
        assert len(notes) == (shape[:2] != (size, size))


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
    hidden = z @ state["linear_1.weight"].T + state["linear_1.bias"]
    two = hidden @ state["linear_2.weight"].T + state["linear_2.bias"]
    torch.testing.assert_close(z @ w["weight"].T + w["bias"], two)


def bpe_tokenizer(kind: str, specials=("<pad>", "<s>", "</s>", "<unk>", "<image>"), eos: str = "</s>"):
    """A small BPE trained offline on llava-mini's chats: "metaspace" marks a preceding space with "▁" and
    prefixes the first word with one, as Llama's SentencePiece does; "bytelevel" is GPT-2's byte-level BPE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    if kind == "metaspace":
        backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
        backend.decoder, alphabet = decoders.Metaspace(prepend_scheme="first"), []
    else:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder, alphabet = decoders.ByteLevel(), pre_tokenizers.ByteLevel.alphabet()
    corpus = [render_chat(chat) for chat in (CHAT, SHORT, *hf_processor.SAMPLE_CHATS)]
    corpus += [caption for s in range(20) for caption in world.symbolic_context(world.sample_scene(s)).captions]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(specials), initial_alphabet=alphabet,
                                  show_progress=False)
    backend.train_from_iterator(corpus, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>",
                                                eos_token=eos, unk_token="<unk>")


def test_tokenizer_check_passes_or_refuses():
    hf_processor.check_tokenizer(TOK)  # word-level, the space belongs to the next word: segments = joint
    hf_processor.check_tokenizer(bpe_tokenizer("bytelevel"))  # GPT-2's pre-tokenizer splits at every space anyway
    # Llama-style: a segment encoded alone gets the "▁" that a text start gets, so "</s>" + "USER:" differs.
    with pytest.raises(ValueError, match=r"tokenizer refused.*position \d+.*'▁USER:'.*vs joint.*'USER:'"):
        hf_processor.check_tokenizer(bpe_tokenizer("metaspace"))
    with pytest.raises(ValueError, match=r"'</s>' must encode as the eos token \(id 4\)"):  # the end token is "<eos>"
        specials = ("<pad>", "<s>", "<unk>", "<image>", "<eos>")
        hf_processor.check_tokenizer(bpe_tokenizer("bytelevel", specials, eos="<eos>"))


def test_from_pretrained_parts(tmp_path):
    """A CLIP ViT and a Llama saved separately (the user's real CLIP and Vicuna on disk, in miniature)."""
    torch.manual_seed(0)
    clip = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32,
        patch_size=8, hidden_act="gelu", layer_norm_eps=1e-6)).eval()
    tokenizer = bpe_tokenizer("bytelevel", specials=("<pad>", "<s>", "</s>", "<unk>"))  # no <image> yet
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, rope_parameters={"rope_type": "default", "rope_theta": 250.0}, rms_norm_eps=1e-5,
        max_position_embeddings=128, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)).eval()
    clip.save_pretrained(tmp_path / "clip")
    llama.save_pretrained(tmp_path / "llama")
    tokenizer.save_pretrained(tmp_path / "llama")

    model, tok = hf.from_pretrained_parts(tmp_path / "clip", tmp_path / "llama", projector="mlp2x_gelu",
                                          feature_layer=-1, select="full")
    v, lm = model.config.vision, model.config.lm
    assert (v.act, v.eps, v.select, v.feature_layer, model.num_image_tokens) == ("gelu", 1e-6, "cls_patch", -1, 17)
    assert (lm.kv_heads, lm.rope_theta, lm.norm_eps, lm.max_seq_len) == (1, 250.0, 1e-5, 128)
    image_id = tok.convert_tokens_to_ids("<image>")  # added after the vocabulary: one new row, the mean
    assert image_id == len(tokenizer) == model.config.image_token_id and lm.vocab_size == image_id + 1
    embed = llama.model.embed_tokens.weight
    torch.testing.assert_close(model.lm.embed_tokens.weight[image_id], embed.mean(0))
    torch.testing.assert_close(model.lm.lm_head.weight, model.lm.embed_tokens.weight)  # tied -> copied
    x, ids = torch.randn(2, 3, 32, 32), torch.randint(0, len(tokenizer), (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(model.vision.features(x), clip(x, output_hidden_states=True).hidden_states[-1])
        torch.testing.assert_close(model.lm(ids).logits[..., :-1], llama(ids).logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="tokenizer refused"):
        hf.from_pretrained_parts(tmp_path / "clip", tmp_path / "llama", tokenizer=bpe_tokenizer("metaspace"))
    with pytest.raises(ValueError, match="CLIP ViT"):
        hf.from_pretrained_parts(tmp_path / "llama", tmp_path / "llama")


def test_cli_export_hf(tmp_path, monkeypatch, capsys):
    """`llava-mini export-hf --model NAME --out DIR` exports the zoo's model (a stand-in zoo here)."""
    import sys
    import types

    from llava_mini import cli

    fake_zoo = types.SimpleNamespace(load=lambda name: {"tiny": random_model()}[name])
    monkeypatch.setitem(sys.modules, "llava_mini.zoo", fake_zoo)
    monkeypatch.setattr("llava_mini.zoo", fake_zoo, raising=False)
    assert cli.main(["export-hf", "--model", "tiny", "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out")
    assert transformers.LlavaForConditionalGeneration.from_pretrained(tmp_path / "out").config.image_token_id == 4
    fake_zoo.load = lambda name: random_model().lm  # a language-model checkpoint is not a LLaVA
    assert cli.main(["export-hf", "--model", "lm", "--out", str(tmp_path / "lm")]) == 2
    assert "exports a LlavaMini, got a LanguageModel" in capsys.readouterr().err
