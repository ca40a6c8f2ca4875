"""Interoperability with transformers: LlavaMini <-> `LlavaForConditionalGeneration`, number for number.

What maps onto what (LLAVA_FACTS §4):

| LlavaMini                    | transformers                                                          |
|------------------------------|-----------------------------------------------------------------------|
| g = `VisionTower`            | `CLIPVisionModel` (`vision_config`, `vision_feature_layer`)           |
| select "patch" / "cls_patch" | `vision_feature_select_strategy` "default" / "full"                   |
| W, linear                    | `LlavaMultiModalProjector`, act "linear", linear_2 = (I, 0)           |
| W, mlp2x_gelu                | `LlavaMultiModalProjector`, act "gelu" (erf)                          |
| f_φ = `LanguageModel`        | `LlamaForCausalLM` (`text_config`, untied lm_head)                    |
| N copies of `<image>`        | `LlavaProcessor`: one `<image>` -> N tokens (see `hf_processor`)      |

`export_hf` writes config.json and model.safetensors (float32) in the *legacy* key layout
(`vision_tower.vision_model.*`, `multi_modal_projector.*`, `language_model.model.*`,
`language_model.lm_head.weight`), which transformers 4.5x and 5.x both load (5.x's own layout loads in 4.57
with a silently re-initialised vision tower), plus the processor (`hf_processor`) and generation_config.json.
`import_hf` reads such a model back; `from_pretrained_parts` builds a LlavaMini from separate CLIP-vision and
Llama checkpoints. Both refuse what LlavaMini cannot represent, and any tokenizer for which segment-by-segment
ids (how `conversation` builds labels) differ from the joint tokenization of the rendered chat
(`hf_processor.check_tokenizer`): the source of LLaVA's "tokenization mismatch".

On the same weights LlavaMini and transformers agree to float32 rounding (|Δlogit| ~ 2e-6), and exactly in
float64: the differences are the order of float32 operations, not the computation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from llava_mini.hf_processor import SELECT_TO_HF, build_processor, check_tokenizer
from llava_mini.llava import LlavaConfig, LlavaMini
from llava_mini.lm import LMConfig
from llava_mini.tokenizer import IMAGE
from llava_mini.vision import VisionConfig

# ---- weights: our state dicts <-> transformers' -------------------------------------------------------------

# Our VisionTower keys -> CLIPVisionModel's (5.x: no `vision_model.` level); the encoder blocks add "encoder.".
VISION_KEYS = {"patch_embedding.proj.weight": "embeddings.patch_embedding.weight",
               "class_embedding": "embeddings.class_embedding",
               "position_embedding": "embeddings.position_embedding.weight"}


def vision_to_hf(state: dict[str, torch.Tensor], cfg: VisionConfig) -> dict[str, torch.Tensor]:
    """Our VisionTower state dict -> CLIPVisionModel's; the patch projection becomes the Conv2d it is."""
    out = {VISION_KEYS.get(k, "encoder." + k if k.startswith("layers.") else k): v for k, v in state.items()}
    conv = "embeddings.patch_embedding.weight"
    out[conv] = out[conv].reshape(cfg.width, cfg.channels, cfg.patch_size, cfg.patch_size)  # (D, 3, p, p)
    return out


def vision_from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIPVisionModel's state dict (with or without the 4.x `vision_model.` level) -> our VisionTower's."""
    ours = {v: k for k, v in VISION_KEYS.items()}
    state = {k.removeprefix("vision_model."): v for k, v in state.items()}
    state.pop("embeddings.position_ids", None)  # a buffer (arange), not a weight
    out = {ours.get(k, k.removeprefix("encoder.")): v for k, v in state.items()}
    out["patch_embedding.proj.weight"] = out["patch_embedding.proj.weight"].flatten(1)  # (D, 3·p·p)
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
        layer = {"0": "linear_1", "2": "linear_2"}
        return "gelu", {layer[k[0]] + k[1:]: v for k, v in state.items()}
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

# (our field, transformers' field): VisionConfig <-> CLIPVisionConfig, LMConfig <-> LlamaConfig.
VISION_FIELDS = (("image_size", "image_size"), ("patch_size", "patch_size"), ("channels", "num_channels"),
                 ("width", "hidden_size"), ("layers", "num_hidden_layers"), ("heads", "num_attention_heads"),
                 ("intermediate", "intermediate_size"), ("act", "hidden_act"), ("eps", "layer_norm_eps"))
LM_FIELDS = (("vocab_size", "vocab_size"), ("dim", "hidden_size"), ("layers", "num_hidden_layers"),
             ("heads", "num_attention_heads"), ("kv_heads", "num_key_value_heads"), ("hidden", "intermediate_size"),
             ("norm_eps", "rms_norm_eps"), ("max_seq_len", "max_position_embeddings"))


def vision_config_from_hf(d: dict, feature_layer: int = -2, select: str = "default") -> VisionConfig:
    """VisionConfig from a CLIP vision config dict (of a `CLIPModel`: its `vision_config`)."""
    d = d["vision_config"] if d.get("model_type") == "clip" else d
    if d.get("model_type") != "clip_vision_model":
        raise ValueError(f"the vision tower must be a CLIP ViT (clip_vision_model), got {d.get('model_type')!r}")
    if not isinstance(feature_layer, int):
        raise ValueError(f"vision_feature_layer must be one int (LlavaMini reads one layer), got {feature_layer!r}")
    if select not in SELECT_TO_HF.values():
        raise ValueError(f"vision_feature_select_strategy must be 'default' or 'full', got {select!r}")
    return VisionConfig(**{ours: d[theirs] for ours, theirs in VISION_FIELDS if theirs in d},
                        feature_layer=feature_layer, select="patch" if select == "default" else "cls_patch")


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
    bad = [f"{name}={got!r} (needs {want!r})" for name, (got, want) in problems.items() if got != want]
    if bad:
        raise ValueError("LlavaMini's Llama decoder cannot represent " + ", ".join(bad))
    return LMConfig(**{ours: d[theirs] for ours, theirs in LM_FIELDS if theirs in d},
                    rope_theta=float(rope.get("rope_theta", d.get("rope_theta", 10000.0))))


# ---- export ------------------------------------------------------------------------------------------------------


def hf_config(model: LlavaMini, tokenizer) -> dict:
    """config.json of `LlavaForConditionalGeneration` for `model` (no transformers class involved)."""
    cfg = model.config
    eos = tokenizer.eos_token_id if cfg.eos_token_id is None else cfg.eos_token_id
    return {
        "architectures": ["LlavaForConditionalGeneration"], "model_type": "llava", "dtype": "float32",
        "vision_config": {"model_type": "clip_vision_model",
                          **{theirs: getattr(cfg.vision, ours) for ours, theirs in VISION_FIELDS}},
        "text_config": {  # rope_theta is what 4.x reads, rope_parameters what 5.x reads
            "model_type": "llama", **{theirs: getattr(cfg.lm, ours) for ours, theirs in LM_FIELDS},
            "head_dim": cfg.lm.head_dim, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
            "rope_theta": cfg.lm.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": cfg.lm.rope_theta},
            "tie_word_embeddings": False, "bos_token_id": tokenizer.bos_token_id, "eos_token_id": eos,
            "pad_token_id": cfg.pad_token_id},
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

    if not isinstance(model, LlavaMini):
        raise ValueError(f"export_hf exports a LlavaMini, got a {type(model).__name__}")
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
