"""Tiny random models with the real architectures (Qwen3, Qwen3-VL, GPT-OSS) and a tokenizer trained offline.

They load and generate through exactly the code paths real checkpoints use, in seconds on a CPU:
what tests, benchmarks and the demo run on where no weights can be downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHATML_TEMPLATE = (
    "{%- for m in messages %}"
    "{%- if m['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}{{ m['content'] }}"
    "{{ '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{%- endif %}"
)
# The shape of GPT-OSS's harmony format: replies come in an analysis channel, then a final channel.
# GPT-OSS's template in small: a system message that names the model ChatGPT and carries the reasoning effort,
# whatever the conversation holds; a conversation's own system prompt becomes the developer message.
HARMONY_TEMPLATE = (
    "{%- if model_identity is not defined %}"
    "{%- set model_identity = 'You are ChatGPT, a large language model trained by OpenAI.' %}{%- endif %}"
    "<|start|>system<|message|>{{ model_identity }}\nReasoning: {{ reasoning_effort | default('medium') }}<|end|>"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'assistant' %}<|start|>assistant<|channel|>final<|message|>{% generation %}"
    "{{ m['content'] }}<|return|>{% endgeneration %}"
    "{%- elif m['role'] == 'system' %}<|start|>developer<|message|># Instructions\n\n{{ m['content'] }}<|end|>"
    "{%- else %}<|start|>{{ m['role'] }}<|message|>{{ m['content'] }}<|end|>{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}<|start|>assistant{%- endif %}"
)
CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
HARMONY_SPECIALS = ["<|endoftext|>", "<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>", "<|call|>"]


def corpus() -> list[str]:
    """Text to train the tokenizer on: the Skippy pack's prompts and responses."""
    from ..harness.character import load_character

    pack = load_character("skippy")
    texts = [p.prompt for p in pack.personality_prompts + pack.identity_prompts + pack.math_probes]
    for pair in pack.character_pairs + pack.antipole_pairs:
        texts += [pair.prompt, pair.response]
    return texts


def train_tokenizer(harmony: bool = False, vocab_size: int = 512, texts: list[str] | None = None) -> Any:
    """Byte-level BPE trained in milliseconds, wrapped with a chat template that marks assistant tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = HARMONY_SPECIALS if harmony else CHATML_SPECIALS
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts or corpus(), trainer)
    eos = "<|return|>" if harmony else "<|im_end|>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token="<|endoftext|>",
                                   additional_special_tokens=[s for s in specials if s not in (eos, "<|endoftext|>")])
    fast.chat_template = HARMONY_TEMPLATE if harmony else CHATML_TEMPLATE
    return fast


def _save(model: Any, tokenizer: Any, out: Path) -> Path:
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def tiny_qwen3(out: str | Path, seed: int = 0, layers: int = 4, hidden: int = 64, texts: list[str] | None = None,
               vocab_size: int = 512) -> Path:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    tok = train_tokenizer(vocab_size=vocab_size, texts=texts)
    config = Qwen3Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=hidden // 4, max_position_embeddings=1024, tie_word_embeddings=True,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return _save(Qwen3ForCausalLM(config), tok, Path(out))


def tiny_gpt_oss(out: str | Path, seed: int = 0, layers: int = 4, hidden: int = 64, experts: int = 4,
                 router_scale: float = 1.0) -> Path:
    """`router_scale` multiplies the routers' weights: at the default init their logits spread ~0.16 and routing
    hardly depends on the text; ×20 gives GPT-OSS-like spreads (a few units), where experts specialise."""
    import torch
    from transformers import GptOssConfig, GptOssForCausalLM

    torch.manual_seed(seed)
    tok = train_tokenizer(harmony=True)
    config = GptOssConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden,
                          num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=hidden // 4, num_local_experts=experts, num_experts_per_tok=2,
                          max_position_embeddings=1024, sliding_window=128,
                          layer_types=["sliding_attention", "full_attention"] * (layers // 2),
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config._attn_implementation = "eager"
    model = GptOssForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.router.weight.mul_(router_scale)
    return _save(model, tok, Path(out))


def tiny_qwen3_vl(out: str | Path, seed: int = 0, layers: int = 4, hidden: int = 64) -> Path:
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    torch.manual_seed(seed)
    tok = train_tokenizer()
    head_dim = hidden // 4
    text = dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, head_dim=head_dim, max_position_embeddings=1024,
                rope_scaling={"rope_type": "default", "mrope_section": [head_dim // 4, head_dim // 8, head_dim // 8],
                              "mrope_interleaved": True},
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden,
                  patch_size=16, spatial_merge_size=2, temporal_patch_size=2, deepstack_visual_indexes=[0])
    config = Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True)
    return _save(Qwen3VLForConditionalGeneration(config), tok, Path(out))


BUILDERS = {"qwen3": tiny_qwen3, "gpt_oss": tiny_gpt_oss, "qwen3_vl": tiny_qwen3_vl}
