"""A tiny, randomly initialised FLUX pipeline in the real diffusers layout.

It has every part FLUX.1-dev has (transformer with double and single blocks and guidance
embedding, VAE, CLIP and T5 text encoders with their tokenizers, flow-matching scheduler) at a
size that trains on a CPU in seconds, and it loads through the same `FluxPipeline.from_pretrained`
call as the real model. Tokenizers are built here from a character vocabulary, since none can
be downloaded (transformers 5 tokenizers, which take their vocabulary directly).
"""

import string
from pathlib import Path

import torch

from fluxlora_trainer.quiet import library_bars_off

CLIP_MAX_LENGTH = 77
T5_MAX_LENGTH = 128
WIDTH = 32  # hidden size of the text encoders and the transformer's text projections


def _clip_tokenizer():
    from transformers import CLIPTokenizer

    # Byte-level BPE with single characters only (no merges): enough to tokenise any caption.
    symbols = [c for c in string.printable if not c.isspace()] + ["Ġ"]
    vocab: dict[str, int] = {}
    for symbol in symbols:
        vocab.setdefault(symbol, len(vocab))
        vocab.setdefault(symbol + "</w>", len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_MAX_LENGTH)


def _t5_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    pieces = [(token, 0.0) for token in specials]
    characters = [c for c in string.printable if not c.isspace()]
    pieces += [(c, -1.0) for c in characters] + [("▁" + c, -1.0) for c in characters]
    pieces.append(("▁", -2.0))
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_ids=0,
        model_max_length=T5_MAX_LENGTH,
    )


# FLUX.1-dev's transformer in miniature (its own config: architecture.py).
TINY_LATENT_CHANNELS = 4
TINY_TRANSFORMER = {
    "patch_size": 1,
    "in_channels": TINY_LATENT_CHANNELS * 4,  # latents are packed 2x2, as in FLUX.1-dev
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": WIDTH,
    "pooled_projection_dim": WIDTH,
    "axes_dims_rope": [4, 6, 6],
    "guidance_embeds": True,
}


def build_tiny_pipeline(seed: int = 0):
    """A FluxPipeline with random weights."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tokenizer = _clip_tokenizer()
    latent_channels = TINY_LATENT_CHANNELS
    transformer = FluxTransformer2DModel(**TINY_TRANSFORMER)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        # Four blocks: 8x downsampling, as in the FLUX.1-dev VAE.
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[4, 8, 8, 16],
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=256,
            hidden_size=WIDTH,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=CLIP_MAX_LENGTH,
            projection_dim=WIDTH,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(vocab_size=256, d_model=WIDTH, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    return FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=_t5_tokenizer(),
        transformer=transformer,
    )


def write_tiny_model(directory: Path, seed: int = 0) -> Path:
    """Save the tiny pipeline to `directory` in the diffusers layout (model_index.json, ...)."""
    directory.mkdir(parents=True, exist_ok=True)
    with library_bars_off():  # a bar per part for what takes no time
        build_tiny_pipeline(seed).save_pretrained(directory)
    return directory
