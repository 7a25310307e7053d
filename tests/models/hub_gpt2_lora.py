"""A keras-hub GPT-2 (tiny config) fine-tuned with rank-4 LoRA, as a user writes it: token ids of no fixed
length, so the report measures the sequence length like the batch (--seq-len), and the fine-tuning what-ifs
(freeze the backbone, another LoRA rank, full fine-tuning) apply. Needs keras-hub (preflight[hub])."""
import keras
import keras_hub

batch_size = 4


def build_model():
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=1000, num_layers=2, num_heads=2, hidden_dim=64,
                                             intermediate_dim=128, max_sequence_length=128)
    backbone.enable_lora(rank=4)
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
