"""A keras-hub GPT2CausalLM built from its classes (no preset download), a reduced GPT-2 (4 layers, hidden
256), LoRA rank 4 on the backbone as keras-io's "Parameter-efficient fine-tuning of GPT-2 with LoRA" does;
sequence 128 token ids fed directly (no preprocessor), sparse cross-entropy on the next token."""
import numpy as np
import keras
import keras_hub

VOCAB = 8_000
SEQ_LEN = 128


def build_model():
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=VOCAB, num_layers=4, num_heads=4, hidden_dim=256,
                                             intermediate_dim=1024, max_sequence_length=SEQ_LEN)
    backbone.enable_lora(rank=4)
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=5e-5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), weighted_metrics=[])
    return model


def get_dataset():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, VOCAB, size=(256, SEQ_LEN + 1)).astype("int32")
    x = {"token_ids": tokens[:, :-1], "padding_mask": np.ones((256, SEQ_LEN), dtype="int32")}
    return x, tokens[:, 1:]


batch_size = 8
