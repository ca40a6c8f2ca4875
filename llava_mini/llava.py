"""LlavaMini: vision encoder g, projection W and language model f_φ (LLaVA paper §4.1, Figure 1).

For an image X_v: Z_v = g(X_v) (`vision.features`), H_v = W·Z_v (`projector`), and the LLM reads H_v where
the prompt has its image placeholders, followed by the instruction X_q, and predicts the answer X_a:
p(X_a | X_v, X_instruct) = Π_i p_θ(x_i | X_v, X_instruct,<i, X_a,<i) (eq. 3), trained on X_a only.

Image-token convention (transformers' `LlavaForConditionalGeneration`, not the original repo's single
-200 id): the tokenizer side already expanded each `<image>` into `num_image_tokens` copies of
`image_token_id`. A sample may hold 0, 1 or several images; `pixel_values` lists the images of the whole
batch in order of appearance, row by row, and image i's H_v fills the i-th run of placeholders.

Freezing is the trainer's job (`requires_grad_(False)`): nothing here runs under `torch.no_grad()`, so in
stage 1 the loss gradient flows through the frozen f_φ back to W. A frozen tower costs no autograd memory:
when neither X_v nor the tower's weights require gradients, no graph is recorded for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from llava_mini.lm import IGNORE_INDEX, KVCache, LanguageModel, LMConfig
from llava_mini.projector import build_projector
from llava_mini.vision import VisionConfig, VisionTower


@dataclass(kw_only=True)
class LlavaConfig:
    """The three parts and the special ids the model needs (keyword-only)."""

    lm: LMConfig
    image_token_id: int  # the placeholder id, `image_token_index` in transformers' LlavaConfig
    pad_token_id: int  # written after a row's end in generate()
    eos_token_id: int | None = None  # default end token for generate()
    vision: VisionConfig = field(default_factory=VisionConfig)
    projector: str = "linear"  # a kind from projector.PROJECTOR_KINDS
    projector_args: dict = field(default_factory=dict)  # e.g. {"num_queries": 8} for the resampler

    def __post_init__(self):
        for name in ("image_token_id", "pad_token_id", "eos_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.lm.vocab_size:
                raise ValueError(f"{name} must be in [0, {self.lm.vocab_size}), got {value}")
        if self.projector == "cls" and self.vision.select != "cls_patch":
            raise ValueError(
                "the 'cls' projector reads the CLS token: set VisionConfig(select='cls_patch'), "
                f"got select={self.vision.select!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LlavaConfig:
        d = dict(d)
        return cls(vision=VisionConfig(**d.pop("vision")), lm=LMConfig(**d.pop("lm")), **d)


@dataclass
class LlavaOutput:
    logits: torch.Tensor  # (B, T, vocab)
    loss: torch.Tensor | None = None  # summed answer-token loss / (num_items_in_batch or n_supervised)
    n_supervised: torch.Tensor | None = None  # supervised tokens in this batch (after the shift)
    past_kv: KVCache | None = None  # with use_cache=True


class LlavaMini(nn.Module):
    """g (`.vision`), W (`.projector`) and f_φ (`.lm`). At the defaults (64-wide 4-layer ViT, 128-wide
    4-layer LM, vocabulary 300, linear W) they hold 213,632 + 8,320 + 880,768 = 1,102,720 parameters."""

    def __init__(self, cfg: LlavaConfig):
        super().__init__()
        self.config = cfg
        self.vision = VisionTower(cfg.vision)  # g
        self.projector = build_projector(cfg.projector, cfg.vision.width, cfg.lm.dim, **cfg.projector_args)  # W
        self.lm = LanguageModel(cfg.lm)  # f_φ

    @property
    def num_image_tokens(self) -> int:
        """Placeholder positions per image: N patches (+1 CLS), or the projector's k (resampler, pooling)."""
        return self.projector.num_tokens(self.vision.num_image_tokens)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """X_v (n_img, 3, H, W) -> H_v = W·g(X_v) (n_img, num_image_tokens, lm dim)."""
        return self.projector(self.vision.features(pixel_values))

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with every image placeholder replaced by its image's H_v: (B, T, lm dim)."""
        embeds = self.lm.embed_tokens(input_ids)  # (B, T, D)
        is_image = input_ids == self.config.image_token_id  # (B, T)
        n_img = 0 if pixel_values is None else pixel_values.shape[0]
        per_image = self.num_image_tokens
        # The count check reads a tensor value; under torch.compile it is skipped (as in transformers).
        if not torch.compiler.is_compiling() and (n_slots := int(is_image.sum())) != n_img * per_image:
            raise ValueError(
                f"input_ids hold {n_slots} image placeholder tokens (id {self.config.image_token_id}) but "
                f"{n_img} images were given, which need {n_img} x {per_image} = {n_img * per_image} "
                f"({per_image} tokens per image): expand each <image> to {per_image} placeholders, "
                "one image per <image>"
            )
        if n_img == 0:
            return embeds
        h_v = self.encode_images(pixel_values).to(embeds.dtype)  # (n_img, N, D)
        # masked_scatter fills the True slots in row-major order: image i lands in the i-th run.
        return embeds.masked_scatter(is_image[..., None].expand_as(embeds), h_v)  # (B, T, D)

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        past_kv: KVCache | None = None,
        use_cache: bool = False,
    ) -> LlavaOutput:
        """input_ids (B, T) with placeholders; labels (B, T) with -100 wherever no loss is taken.

        The loss sums the token losses and divides by `num_items_in_batch` (the supervised tokens of the
        whole optimizer step, over all gradient-accumulation micro-batches) or, when not given, by this
        batch's own count. Image positions never take loss, whatever `labels` holds there. With
        `past_kv`, `attention_mask` covers cache + input_ids (see `LanguageModel.forward`).
        """
        embeds = self.embed(input_ids, pixel_values)  # (B, T, D)
        if labels is not None:
            labels = labels.masked_fill(input_ids == self.config.image_token_id, IGNORE_INDEX)  # (B, T)
        out = self.lm(inputs_embeds=embeds, attention_mask=attention_mask, past_kv=past_kv, use_cache=use_cache,
                      labels=labels, num_items_in_batch=num_items_in_batch)
        return LlavaOutput(out.logits, out.loss, out.n_supervised, out.past_kv)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_kv: KVCache | None = None,
        max_new_tokens: int = 32,
        eos_token_id: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Answer the prompt(s): new token ids (B, ≤ max_new_tokens), `pad_token_id` after each row's end.

        Batched prompts must be left-padded. Each image is encoded once, at the prefill. To continue a
        conversation on its cache, pass `past_kv` from `forward(..., use_cache=True)` on the earlier turns
        and an attention_mask covering cache + input_ids.
        """
        eos = self.config.eos_token_id if eos_token_id is None else eos_token_id
        return self.lm.generate(
            inputs_embeds=self.embed(input_ids, pixel_values),
            attention_mask=attention_mask,
            past_kv=past_kv,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos,
            pad_token_id=self.config.pad_token_id,
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            generator=generator,
            use_cache=use_cache,
        )
