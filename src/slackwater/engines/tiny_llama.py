"""Build a tiny random-weight Llama with a real byte-level BPE tokenizer, saved locally.

It lets the generative path (chat template, batched generation, the whole queue) run
end to end on a machine with no model downloads. Its answers are gibberish; point
`options.path` at any Hugging Face model directory for real ones.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]


def _corpus() -> list[str]:
    """Real English to train the tokenizer on, taken from the standard library's docs."""
    import argparse
    import collections
    import json as json_module
    import pathlib

    texts: list[str] = []
    for module in (argparse, collections, json_module, pathlib, inspect):
        for _, member in inspect.getmembers(module):
            doc = inspect.getdoc(member)
            if doc:
                texts.append(doc)
    return texts


def build_tiny_llama(
    target: Path, *, vocab_size: int = 1024, seed: int = 0, head_dim: int = 16, context: int = 512
) -> Path:
    """Write a tiny Llama (4 heads of `head_dim`: ~0.1M parameters at 16, as transformers
    runs it; vLLM's CPU attention wants 32 or more) of `context` positions and its
    tokenizer to `target`; returns the path."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    target.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=SPECIAL[4:],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = context
    tokenizer.save_pretrained(target)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=4 * head_dim,
        intermediate_size=8 * head_dim,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(target)
    (target / "slackwater.json").write_text(json.dumps({"built_by": "slackwater", "seed": seed}))
    return target
