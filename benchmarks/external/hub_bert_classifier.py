"""A keras-hub BertTextClassifier built from its classes (no preset download): a small BERT (4 layers,
hidden 256, 4 heads), sequence 128, 2 classes, token ids fed directly (no preprocessor)."""
import numpy as np
import keras
import keras_hub

VOCAB = 8_000
SEQ_LEN = 128


def build_model():
    backbone = keras_hub.models.BertBackbone(vocabulary_size=VOCAB, num_layers=4, num_heads=4, hidden_dim=256,
                                             intermediate_dim=1024, max_sequence_length=SEQ_LEN)
    model = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None)
    model.compile(optimizer=keras.optimizers.Adam(5e-5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def get_dataset():
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, VOCAB, size=(256, SEQ_LEN)).astype("int32"),
         "segment_ids": np.zeros((256, SEQ_LEN), dtype="int32"),
         "padding_mask": np.ones((256, SEQ_LEN), dtype="int32")}
    return x, rng.integers(0, 2, size=(256,))


batch_size = 16
