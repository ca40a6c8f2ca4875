"""Interoperability with transformers: LlavaMini <-> `LlavaForConditionalGeneration`, number for number.

What maps onto what (LLAVA_FACTS §4):

| LlavaMini                    | transformers                                                          |
|------------------------------|-----------------------------------------------------------------------|
| g = `VisionTower`            | `CLIPVisionModel` (`vision_config`, `vision_feature_layer`)           |
| select "patch" / "cls_patch" | `vision_feature_select_strategy` "default" / "full"                   |
| W, linear                    | `LlavaMultiModalProjector`, act "linear", linear_2 = (I, 0)           |
| W, mlp2x_gelu                | `LlavaMultiModalProjector`, act "gelu" (erf)                          |
| f_φ = `LanguageModel`        | `LlamaForCausalLM` (`text_config`, untied lm_head)                    |
| N copies of `<image>`        | `LlavaProcessor`: one `<image>` -> (H/p)·(W/p) + 1 (CLS) - 1 ("default") |

`export_hf` writes config.json and model.safetensors in the *legacy* key layout (`vision_tower.vision_model.*`,
`multi_modal_projector.*`, `language_model.model.*`, `language_model.lm_head.weight`), which transformers
4.5x and 5.x both load, plus the processor (our tokenizer, a `CLIPImageProcessor` that only rescales and
normalises, the Vicuna-v1 chat template) and generation_config.json. `import_hf` reads such a model back;
`from_pretrained_parts` builds a LlavaMini from separate CLIP-vision and Llama checkpoints. Both refuse what
LlavaMini cannot represent, and any tokenizer for which segment-by-segment ids (how `conversation` builds
labels) differ from the joint tokenization of the rendered chat: LLaVA's "tokenization mismatch".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from llava_mini.conversation import build_chat, render_chat
from llava_mini.llava import LlavaConfig, LlavaMini
from llava_mini.lm import LMConfig
from llava_mini.tokenizer import EOS, IMAGE, SYSTEM_PROMPT, encode
from llava_mini.vision import VisionConfig
from llava_mini.world import PIXEL_MEAN, PIXEL_STD

SELECT_TO_HF = {"patch": "default", "cls_patch": "full"}

# The processor's template: llava-mini's Vicuna-v1 layout (tokenizer.CHAT_TEMPLATE) without `<s>`, which the
# tokenizer adds when the processor tokenizes the prompt. Content is a string or a list of {"type": "image"}
# and {"type": "text", "text": ...} items, joined by "\n": [image, text] renders as "<image>\nQ", as in LLaVA.
CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{- content -}}{%- else -%}"
    "{%- for item in content -%}"
    "{{- '\\n' if not loop.first else '' -}}"
    "{{- '" + IMAGE + "' if item['type'] == 'image' else item['text'] -}}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = render(messages[0]['content']) -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system = '" + SYSTEM_PROMPT.replace("'", "\\'") + "' -%}{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{{- system -}}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{- raise_exception('roles must alternate user/assistant, starting with user') -}}"
    "{%- endif -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- (' ' if loop.first and system else '') + 'USER: ' + render(message['content']) -}}"
    "{%- else -%}"
    "{{- ' ASSISTANT:' -}}"
    "{%- generation -%}{{- ' ' + render(message['content']) + eos_token -}}{%- endgeneration -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- ' ASSISTANT:' -}}{%- endif -%}"
)

# Chats for the segment-vs-joint tokenization check: every segment boundary of the Vicuna-v1 layout.
SAMPLE_CHATS = (
    [{"from": "human", "value": "<image>\nWhat colour is the circle?"}, {"from": "gpt", "value": "The circle is red."}],
    [
        {"from": "human", "value": "What is in the image?\n<image>"},
        {"from": "gpt", "value": "There are two shapes: a red circle and a blue square."},
        {"from": "human", "value": "Where is the square?"},
        {"from": "gpt", "value": "The square is in the top left."},
    ],
)


# ---- weights: our state dicts <-> transformers' -------------------------------------------------------------


def vision_to_hf(state: dict[str, torch.Tensor], cfg: VisionConfig) -> dict[str, torch.Tensor]:
    """Our VisionTower state dict -> CLIPVisionModel's (transformers 5.x keys, no `vision_model.` level)."""
    out = {}
    for key, value in state.items():
        if key == "patch_embedding.proj.weight":  # (D, 3·p·p) -> Conv2d (D, 3, p, p)
            out["embeddings.patch_embedding.weight"] = value.reshape(
                cfg.width, cfg.channels, cfg.patch_size, cfg.patch_size
            )
        elif key == "class_embedding":
            out["embeddings.class_embedding"] = value
        elif key == "position_embedding":
            out["embeddings.position_embedding.weight"] = value
        elif key.startswith("layers."):
            out["encoder." + key] = value
        else:  # pre_layrnorm, post_layernorm
            out[key] = value
    return out


def vision_from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIPVisionModel's state dict (with or without the 4.x `vision_model.` level) -> our VisionTower's."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("vision_model.")
        if key == "embeddings.patch_embedding.weight":  # Conv2d (D, 3, p, p) -> (D, 3·p·p)
            out["patch_embedding.proj.weight"] = value.flatten(1)
        elif key in ("embeddings.class_embedding", "embeddings.position_embedding.weight"):
            out[key.split(".")[1]] = value
        elif key.startswith("encoder."):
            out[key.removeprefix("encoder.")] = value
        elif key != "embeddings.position_ids":  # a buffer (arange), not a weight
            out[key] = value
    return out


def lm_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our LanguageModel state dict -> LlamaForCausalLM's: everything but lm_head lives under `model.`."""
    return {(k if k.startswith("lm_head.") else "model." + k): v for k, v in state.items()}


def lm_from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LlamaForCausalLM's state dict -> our LanguageModel's."""
    return {k.removeprefix("model."): v for k, v in state.items()}


def projector_to_hf(model: LlavaMini) -> tuple[str, dict[str, torch.Tensor]]:
    """(projector_hidden_act, LlavaMultiModalProjector state). A linear W becomes linear_1 with an identity
    linear_2: act("linear") is the identity and I·h + 0 = h exactly, so the outputs are bit-identical."""
    kind, state = model.config.projector, model.projector.state_dict()
    if kind == "linear":
        dim = model.config.lm.dim
        eye = torch.eye(dim, dtype=state["weight"].dtype)
        return "linear", {"linear_1.weight": state["weight"], "linear_1.bias": state["bias"],
                          "linear_2.weight": eye, "linear_2.bias": torch.zeros(dim, dtype=eye.dtype)}
    if kind == "mlp2x_gelu":  # Sequential keys 0.* and 2.*, as LLaVA's mm_projector
        return "gelu", {f"linear_{1 + int(k[0]) // 2}.{k[2:]}": v for k, v in state.items()}
    raise ValueError(
        f"projector {kind!r} has no transformers counterpart: LlavaMultiModalProjector is always "
        "Linear -> act -> Linear, one output token per feature token; export 'linear' or 'mlp2x_gelu'"
    )


def projector_from_hf(act: str, state: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor]]:
    """(projector kind, its state) from a LlavaMultiModalProjector. Missing biases
    (`multimodal_projector_bias=False`) are zeros. With act "linear" the two maps compose into one W
    (exact when linear_2 is (I, 0), as `export_hf` writes it; otherwise exact up to float rounding)."""
    w1, w2 = state["linear_1.weight"], state["linear_2.weight"]
    b1 = state.get("linear_1.bias", torch.zeros(w1.shape[0]))
    b2 = state.get("linear_2.bias", torch.zeros(w2.shape[0]))
    if act == "linear":
        if torch.equal(w2, torch.eye(len(w2), dtype=w2.dtype)) and not b2.any():
            return "linear", {"weight": w1, "bias": b1}
        return "linear", {"weight": w2 @ w1, "bias": w2 @ b1 + b2}
    if act == "gelu":
        return "mlp2x_gelu", {"0.weight": w1, "0.bias": b1, "2.weight": w2, "2.bias": b2}
    raise ValueError(f"projector_hidden_act must be 'linear' or 'gelu' (erf) to import, got {act!r}")


# ---- configs ---------------------------------------------------------------------------------------------------


def _vision_config_to_hf(v: VisionConfig) -> dict:
    return {"model_type": "clip_vision_model", "hidden_size": v.width, "intermediate_size": v.intermediate,
            "num_hidden_layers": v.layers, "num_attention_heads": v.heads, "image_size": v.image_size,
            "patch_size": v.patch_size, "num_channels": v.channels, "hidden_act": v.act, "layer_norm_eps": v.eps}


def _lm_config_to_hf(lm: LMConfig, bos: int, eos: int, pad: int) -> dict:
    # rope_theta is what 4.x reads, rope_parameters what 5.x reads; both are written.
    return {"model_type": "llama", "vocab_size": lm.vocab_size, "hidden_size": lm.dim,
            "intermediate_size": lm.hidden, "num_hidden_layers": lm.layers, "num_attention_heads": lm.heads,
            "num_key_value_heads": lm.kv_heads, "head_dim": lm.head_dim, "hidden_act": "silu",
            "rms_norm_eps": lm.norm_eps, "max_position_embeddings": lm.max_seq_len, "rope_theta": lm.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": lm.rope_theta}, "attention_bias": False,
            "mlp_bias": False, "tie_word_embeddings": False, "bos_token_id": bos, "eos_token_id": eos,
            "pad_token_id": pad}


def vision_config_from_hf(d: dict, feature_layer: int = -2, select: str = "default") -> VisionConfig:
    """VisionConfig from a CLIP vision config dict (a `CLIPModel`'s config: its `vision_config`)."""
    d = d.get("vision_config", d) if d.get("model_type") == "clip" else d
    if d.get("model_type") != "clip_vision_model":
        raise ValueError(f"the vision tower must be a CLIP ViT (clip_vision_model), got {d.get('model_type')!r}")
    if not isinstance(feature_layer, int):
        raise ValueError(f"vision_feature_layer must be one int (LlavaMini reads one layer), got {feature_layer!r}")
    if select not in SELECT_TO_HF.values():
        raise ValueError(f"vision_feature_select_strategy must be 'default' or 'full', got {select!r}")
    return VisionConfig(image_size=d["image_size"], patch_size=d["patch_size"], channels=d.get("num_channels", 3),
                        width=d["hidden_size"], layers=d["num_hidden_layers"], heads=d["num_attention_heads"],
                        intermediate=d["intermediate_size"], act=d.get("hidden_act", "quick_gelu"),
                        eps=d.get("layer_norm_eps", 1e-5), feature_layer=feature_layer,
                        select="patch" if select == "default" else "cls_patch")


def lm_config_from_hf(d: dict) -> LMConfig:
    """LMConfig from a Llama config dict (4.x or 5.x fields), refusing what LanguageModel cannot compute."""
    rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
    heads, dim = d["num_attention_heads"], d["hidden_size"]
    problems = {
        "model_type": (d.get("model_type"), "llama"),
        "hidden_act": (d.get("hidden_act", "silu"), "silu"),
        "rope type": (rope.get("rope_type", rope.get("type", "default")), "default"),
        "attention_bias": (d.get("attention_bias", False), False),
        "mlp_bias": (d.get("mlp_bias", False), False),
        "head_dim": (d.get("head_dim") or dim // heads, dim // heads),
    }
    bad = {name: got for name, (got, want) in problems.items() if got != want}
    if bad:
        raise ValueError(f"LlavaMini's Llama decoder cannot represent {bad} (it has "
                         f"{ {name: want for name, (_, want) in problems.items()} })")
    return LMConfig(vocab_size=d["vocab_size"], dim=dim, layers=d["num_hidden_layers"], heads=heads,
                    kv_heads=d.get("num_key_value_heads") or heads, hidden=d["intermediate_size"],
                    rope_theta=float(rope.get("rope_theta", d.get("rope_theta", 10000.0))),
                    norm_eps=d["rms_norm_eps"], max_seq_len=d["max_position_embeddings"])


# ---- the tokenizer check -------------------------------------------------------------------------------------


def check_tokenizer(tokenizer, chats=SAMPLE_CHATS) -> None:
    """Raise ValueError unless `tokenizer` can build llava-mini's chats segment by segment.

    `conversation.build_chat` tokenizes each segment (system, " USER: ...", " ASSISTANT:", " answer", "</s>")
    alone, to know which ids are answers. That is only right when the concatenated segment ids equal the
    ids of the whole rendered chat. A SentencePiece-style tokenizer that prefixes every encoded text with
    a space marker, or merges across a boundary, breaks it (LLaVA's "tokenization mismatch" warnings).
    """
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError(f"the tokenizer needs bos and eos tokens, got {tokenizer.bos_token!r}, {tokenizer.eos_token!r}")
    for token, want in ((IMAGE, None), (EOS, tokenizer.eos_token_id)):
        ids = encode(token, tokenizer)
        if len(ids) != 1 or want not in (None, ids[0]):
            raise ValueError(f"{token!r} must be the single token {want if want is not None else ''}, got ids {ids}")
    for turns in chats:
        segments = build_chat(turns, tokenizer, num_image_tokens=1).input_ids
        joint = [tokenizer.bos_token_id] + encode(render_chat(turns), tokenizer)
        if segments != joint:
            i = next((i for i, (a, b) in enumerate(zip(segments, joint)) if a != b), min(len(segments), len(joint)))
            seg, jnt = (tokenizer.convert_ids_to_tokens(ids[max(i - 2, 0):i + 3]) for ids in (segments, joint))
            raise ValueError(
                f"tokenizer refused: segment-by-segment ids differ from the joint tokenization of the rendered "
                f"chat at position {i} (segments {seg} vs joint {jnt}); labels built per segment would be wrong"
            )


# ---- export ------------------------------------------------------------------------------------------------------


def build_processor(tokenizer, vision: VisionConfig):
    """The `LlavaProcessor`: our tokenizer, pixels (x/255 - PIXEL_MEAN)/PIXEL_STD as `world.pixel_values`,
    and one `<image>` -> (H/p)·(W/p) + 1 (CLS), minus 1 for "default", tokens."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor  # saved as "CLIPImageProcessor"

    size = vision.image_size
    images = CLIPImageProcessorPil(
        do_resize=False, do_center_crop=False, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=list(PIXEL_MEAN), image_std=list(PIXEL_STD), do_convert_rgb=True,
        size={"shortest_edge": size}, crop_size={"height": size, "width": size},
    )
    return LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=vision.patch_size,
                          vision_feature_select_strategy=SELECT_TO_HF[vision.select],
                          num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE)


def hf_config(model: LlavaMini, tokenizer) -> dict:
    """config.json of `LlavaForConditionalGeneration` for `model` (no transformers class involved)."""
    cfg = model.config
    eos = tokenizer.eos_token_id if cfg.eos_token_id is None else cfg.eos_token_id
    return {
        "architectures": ["LlavaForConditionalGeneration"], "model_type": "llava", "dtype": "float32",
        "vision_config": _vision_config_to_hf(cfg.vision),
        "text_config": _lm_config_to_hf(cfg.lm, tokenizer.bos_token_id, eos, cfg.pad_token_id),
        "image_token_index": cfg.image_token_id, "image_seq_length": model.num_image_tokens,
        "projector_hidden_act": projector_to_hf(model)[0], "multimodal_projector_bias": True,
        "vision_feature_layer": cfg.vision.feature_layer,
        "vision_feature_select_strategy": SELECT_TO_HF[cfg.vision.select], "tie_word_embeddings": False,
    }


def hf_state_dict(model: LlavaMini) -> dict[str, torch.Tensor]:
    """All weights as float32 CPU tensors under the legacy keys (read by transformers 4.5x and 5.x)."""
    state = {"vision_tower.vision_model." + k: v for k, v in vision_to_hf(model.vision.state_dict(),
                                                                         model.config.vision).items()}
    state |= {"multi_modal_projector." + k: v for k, v in projector_to_hf(model)[1].items()}
    state |= {"language_model." + k: v for k, v in lm_to_hf(model.lm.state_dict()).items()}
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}


def export_hf(model: LlavaMini, tokenizer, out_dir) -> Path:
    """Write `model` and its processor to `out_dir` for `LlavaForConditionalGeneration.from_pretrained`
    and `AutoProcessor.from_pretrained` (offline, no trust_remote_code). Returns the directory."""
    from transformers import GenerationConfig

    if tokenizer.convert_tokens_to_ids(IMAGE) != model.config.image_token_id:
        raise ValueError(f"the tokenizer's {IMAGE} id {tokenizer.convert_tokens_to_ids(IMAGE)} is not the "
                         f"model's image_token_id {model.config.image_token_id}")
    config = hf_config(model, tokenizer)  # refuses a projector transformers cannot hold, before writing
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(hf_state_dict(model), out / "model.safetensors", metadata={"format": "pt"})
    text = config["text_config"]
    GenerationConfig(bos_token_id=text["bos_token_id"], eos_token_id=text["eos_token_id"],
                     pad_token_id=text["pad_token_id"], max_new_tokens=32).save_pretrained(out)
    build_processor(tokenizer, model.config.vision).save_pretrained(out)
    # transformers 4.x knows neither the 5.x class name nor a list of extra special tokens; 5.x reads both.
    # The keys a 5.x load adds are dropped, so that a re-export writes the same bytes.
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    for key in ("is_local", "local_files_only", "model_specific_special_tokens"):
        tokenizer_config.pop(key, None)
    tokenizer_config |= {"tokenizer_class": "PreTrainedTokenizerFast", "extra_special_tokens": {"image_token": IMAGE}}
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, sort_keys=True) + "\n")
    return out


# ---- import ------------------------------------------------------------------------------------------------------


def _split_llava_state(state: dict[str, torch.Tensor]) -> tuple[dict, dict, dict]:
    """A LlavaForConditionalGeneration state dict in any layout (legacy, 4.5x, 5.x) -> its (vision tower,
    projector, LlamaForCausalLM) state dicts."""
    vision, projector, lm = {}, {}, {}
    for key, value in state.items():
        key = re.sub(r"^model\.(?=vision_tower|multi_modal_projector|language_model)", "", key)
        if key.startswith("vision_tower."):
            vision[key.removeprefix("vision_tower.")] = value
        elif key.startswith("multi_modal_projector."):
            projector[key.removeprefix("multi_modal_projector.")] = value
        elif key.startswith(("language_model.lm_head.", "lm_head.")):
            lm[key.removeprefix("language_model.")] = value
        else:  # language_model.model.* (legacy) or language_model.* (after the `model.` strip)
            lm["model." + re.sub(r"^language_model\.(model\.)?", "", key)] = value
    return vision, projector, lm


def _ids(text: dict, tokenizer) -> tuple[int, int]:
    """(pad, eos) ids: from the text config, else the tokenizer; pad falls back to eos."""
    eos = text.get("eos_token_id") if tokenizer is None else tokenizer.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    pad = text.get("pad_token_id") if tokenizer is None or tokenizer.pad_token_id is None else tokenizer.pad_token_id
    return (eos if pad is None else pad), eos


def _build(vision: VisionConfig, vision_state, lm_cfg: LMConfig, lm_state, image_token_id: int, pad: int,
           eos: int, projector: str, projector_state=None) -> LlavaMini:
    """A LlavaMini with these weights; a missing lm_head (tied embeddings) is a copy of the embeddings."""
    lm_state.setdefault("lm_head.weight", lm_state["embed_tokens.weight"])
    model = LlavaMini(LlavaConfig(vision=vision, lm=lm_cfg, projector=projector, image_token_id=image_token_id,
                                  pad_token_id=pad, eos_token_id=eos))
    model.vision.load_state_dict(vision_state)
    model.lm.load_state_dict(lm_state)
    if projector_state is not None:
        model.projector.load_state_dict(projector_state)
    return model.eval()


def import_hf(src, tokenizer=None) -> tuple[LlavaMini, object]:
    """(LlavaMini, tokenizer) from a `LlavaForConditionalGeneration` or its directory.

    From a directory the tokenizer is read there (when not given); a tokenizer is checked with
    `check_tokenizer`. The tokenizer returned is None when `src` is a model and no tokenizer is given.
    """
    if isinstance(src, (str, Path)):
        from transformers import AutoTokenizer, LlavaForConditionalGeneration

        if tokenizer is None and (Path(src) / "tokenizer_config.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(src)
        src = LlavaForConditionalGeneration.from_pretrained(src, dtype=torch.float32)
    d = src.config.to_dict()
    vision_cfg = vision_config_from_hf(d["vision_config"], d["vision_feature_layer"],
                                       d["vision_feature_select_strategy"])
    vision, projector, lm = _split_llava_state(src.state_dict())
    kind, projector = projector_from_hf(d["projector_hidden_act"], projector)
    pad, eos = _ids(d["text_config"], tokenizer)
    if tokenizer is not None:
        check_tokenizer(tokenizer)
    model = _build(vision_cfg, vision_from_hf(vision), lm_config_from_hf(d["text_config"]), lm_from_hf(lm),
                   d["image_token_index"], pad, eos, kind, projector)
    return model, tokenizer


def from_pretrained_parts(clip_dir, llama_dir, projector: str = "linear", feature_layer: int = -2,
                          select: str = "default", tokenizer=None, seed: int = 0) -> tuple[LlavaMini, object]:
    """(LlavaMini, tokenizer) from a local CLIP checkpoint (`CLIPVisionModel` or `CLIPModel`) and a local
    `LlamaForCausalLM` checkpoint, as LLaVA starts: g and f_φ pretrained, W freshly initialised (`seed`).

    The tokenizer (default: the one in `llama_dir`) must pass `check_tokenizer`; when it lacks `<image>`,
    the token is added and, if its id is past the embedding table, the table grows by rows set to the
    mean embedding (LLaVA's converter adds the mean plus a little noise).
    """
    from transformers import AutoConfig, AutoTokenizer, CLIPVisionModel, LlamaForCausalLM

    vision_cfg = vision_config_from_hf(AutoConfig.from_pretrained(clip_dir).to_dict(), feature_layer, select)
    text = AutoConfig.from_pretrained(llama_dir).to_dict()
    lm_cfg = lm_config_from_hf(text)
    tokenizer = AutoTokenizer.from_pretrained(llama_dir) if tokenizer is None else tokenizer
    if IMAGE not in tokenizer.get_vocab():
        tokenizer.add_tokens([IMAGE], special_tokens=True)
    check_tokenizer(tokenizer)
    vision = vision_from_hf(CLIPVisionModel.from_pretrained(clip_dir, dtype=torch.float32).state_dict())
    lm = lm_from_hf(LlamaForCausalLM.from_pretrained(llama_dir, dtype=torch.float32).state_dict())
    image_id = tokenizer.convert_tokens_to_ids(IMAGE)
    if image_id >= lm_cfg.vocab_size:
        lm_cfg.vocab_size = image_id + 1
        for key in ("embed_tokens.weight", "lm_head.weight"):
            if key in lm:
                rows = lm[key].mean(0).expand(lm_cfg.vocab_size - len(lm[key]), -1)  # (new, dim)
                lm[key] = torch.cat([lm[key], rows])
    pad, eos = _ids(text, tokenizer)
    torch.manual_seed(seed)
    return _build(vision_cfg, vision, lm_cfg, lm, image_id, pad, eos, projector), tokenizer
