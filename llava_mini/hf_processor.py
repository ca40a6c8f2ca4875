"""The text-and-pixels side of the transformers export: the `LlavaProcessor` and the tokenizer check.

transformers' `LlavaProcessor` does what llava-mini's `conversation` and `world.pixel_values` do:
- the chat template renders llava-mini's Vicuna-v1 layout (`conversation.render_chat`), structured content
  (`[{"type": "image"}, {"type": "text", "text": ...}]`) included;
- the `CLIPImageProcessor` resizes the shortest edge to the model's size (bicubic) and centre-crops, as CLIP's
  does (`chat.read_image` does the same), then rescales and normalises: at the model's size, the same pixels
  bit for bit;
- each `<image>` becomes (H/p)·(W/p) + 1 (CLS) tokens, minus 1 with "default" (CLS dropped): N placeholders.

`check_tokenizer` guards imports: `conversation` builds labels segment by segment, which is only right when
segment ids equal the joint tokenization of the rendered chat.
"""

from __future__ import annotations

from PIL import Image

from llava_mini.conversation import build_chat, render_chat
from llava_mini.tokenizer import EOS, IMAGE, chat_template, encode
from llava_mini.vision import VisionConfig
from llava_mini.world import PIXEL_MEAN, PIXEL_STD

SELECT_TO_HF = {"patch": "default", "cls_patch": "full"}  # VisionConfig.select -> vision_feature_select_strategy

# The processor's template: the tokenizer's Vicuna-v1 layout without `<s>`, which the tokenizer adds when the
# processor tokenizes the prompt (llava-hf's convention: `processor(text=rendered)` gets one `<s>`). The export's
# tokenizer shares this template, so `tokenizer.apply_chat_template(tokenize=True)`, which adds no special tokens,
# lacks the `<s>`: tokenize through the processor.
CHAT_TEMPLATE = chat_template(bos=False)

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


def build_processor(tokenizer, vision: VisionConfig):
    """The `LlavaProcessor`: our tokenizer, pixels (x/255 - PIXEL_MEAN)/PIXEL_STD as `world.pixel_values`,
    and one `<image>` -> (H/p)·(W/p) + 1 (CLS), minus 1 for "default", tokens."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor  # saved as "CLIPImageProcessor"

    size = vision.image_size
    images = CLIPImageProcessorPil(
        do_resize=True, resample=Image.Resampling.BICUBIC, do_center_crop=True, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=list(PIXEL_MEAN), image_std=list(PIXEL_STD), do_convert_rgb=True,
        size={"shortest_edge": size}, crop_size={"height": size, "width": size},
    )
    return LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=vision.patch_size,
                          vision_feature_select_strategy=SELECT_TO_HF[vision.select],
                          num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE)


def check_tokenizer(tokenizer, chats=SAMPLE_CHATS) -> None:
    """Raise ValueError unless `tokenizer` can build llava-mini's chats segment by segment.

    `conversation.build_chat` tokenizes each segment (system, " USER: ...", " ASSISTANT:", " answer", "</s>")
    alone, to know which ids are answers. That is only right when the concatenated segment ids equal the
    ids of the whole rendered chat. A SentencePiece-style tokenizer that prefixes every encoded text with
    a space marker, or merges across a boundary, breaks it (LLaVA's "tokenization mismatch" warnings).
    """
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError(f"the tokenizer needs bos and eos tokens, got {tokenizer.bos_token!r} and "
                         f"{tokenizer.eos_token!r}")
    for token, want in ((IMAGE, None), (EOS, tokenizer.eos_token_id)):
        ids = encode(token, tokenizer)
        if len(ids) != 1 or want not in (None, ids[0]):
            expected = "one token" if want is None else f"the eos token (id {want})"
            raise ValueError(f"{token!r} must encode as {expected}, got ids {ids}")
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
