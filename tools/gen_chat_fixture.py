#!/usr/bin/env python3
"""gen_chat_fixture.py - write the chat-template fixture that tests/test_chat_template.c checks.

Renders a set of conversations with each template's Jinja source through jinja2, configured as
transformers' apply_chat_template configures it (sandboxed, trim_blocks, lstrip_blocks), with and
without add_generation_prompt. The templates: SmolLM2-135M-Instruct's own (read from the GGUF),
plain ChatML, Qwen2's ChatML with a default system prompt, and Llama 3's.

Usage: python3 tools/gen_chat_fixture.py [model.gguf] [out.json]
"""
import json
import sys

from gguf import GGUFReader
from jinja2.sandbox import ImmutableSandboxedEnvironment

MODEL = sys.argv[1] if len(sys.argv) > 1 else "models/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/tokenizer/chat.json"

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")

QWEN2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
         "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
         "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}"
          "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
          "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
          "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
          "{% endif %}")

CONVERSATIONS = [
    [],
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Only a system message."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke.\n"},
     {"role": "assistant", "content": "  Why did the chicken cross the road?  \n"}],
    [{"role": "system", "content": "Answer in French.\n\n"},
     {"role": "user", "content": "\tWhat is 2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3\u00d73? \u00e9\u00e8 \U0001f600 \u3000"}],
    [{"role": "user", "content": ""}, {"role": "assistant", "content": " "}],
    [{"role": "user", "content": "line one\nline two\r\n"}],
]


def render(source, messages, add_gen, bos):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(source).render(messages=messages, add_generation_prompt=add_gen,
                                          bos_token=bos, eos_token="")


def main():
    reader = GGUFReader(MODEL)
    smollm = reader.fields["tokenizer.chat_template"].contents()
    templates = [
        {"id": "smollm2", "source": smollm, "name": "chatml",
         "default_system": "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
         "bos": "<|im_start|>"},
        {"id": "chatml", "source": CHATML, "name": "chatml", "default_system": None, "bos": ""},
        {"id": "qwen2", "source": QWEN2, "name": "chatml",
         "default_system": "You are a helpful assistant.", "bos": ""},
        {"id": "llama3", "source": LLAMA3, "name": "llama3", "default_system": None,
         "bos": "<|begin_of_text|>"},
    ]
    cases = []
    for t in templates:
        for ci, conv in enumerate(CONVERSATIONS):
            for add_gen in (False, True):
                cases.append({"template": t["id"], "conversation": ci, "add_generation_prompt": add_gen,
                              "text": render(t["source"], conv, add_gen, t["bos"])})
    fixture = {"templates": templates, "conversations": CONVERSATIONS, "cases": cases}
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print(f"{OUT}: {len(templates)} templates, {len(CONVERSATIONS)} conversations, {len(cases)} cases")


if __name__ == "__main__":
    main()
