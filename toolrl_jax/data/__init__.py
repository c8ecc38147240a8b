"""Task data: generators, TFDS builders (array_record) + grain loaders, tokenizer, SFT synthesis.

Layer L2: never imports JAX itself (``import grain`` does, so only ``pipeline`` pulls it in).
The pure modules import nothing heavy and can be used alone:

    splits        deterministic train / held-out assignment and seeded sampling
    expressions   exact calculator evaluation and the number format of tool results
    records       the task record and the user JSONL reader (errors name file:line)
    arithmetic    easy (memorisable) and hard (tool-needing) arithmetic items
    lookup        a generated world + corpus and one-/two-hop search questions
    gsm8k         GSM8K rows with <<a*b=c>> annotations as calculator trajectories
    synthetic     the task mix for a DataConfig; the corpus file for the search tool
    trajectories  completion segments (model / tool_result), modes, labelling policy
    prompts       the system prompt and chat messages every task is asked with
    sft           SFT examples and their token ids + loss mask
    tokenizer     the demo byte-level BPE as an HF tokenizer dir; loading any HF tokenizer

With heavier imports:

    builders      TFDS builders (tensorflow_datasets, no TensorFlow) and TaskSource
    pipeline      grain loaders for RL prompts, SFT batches and evaluation
    prepare       one-call set-up of a run's dataset, tokenizer and corpus
"""
