"""Transfer learning as users write it: a pretrained-style base (here small and random) frozen with
`base.trainable = False`, a new head on top. The fine-tuning what-ifs apply (full fine-tuning, LoRA rank 4)
and the footprint separates the frozen weights. Used by tests/test_finetune_whatifs.py."""
import keras

batch_size = 16


def build_model():
    base = keras.Sequential([keras.Input((64,)), keras.layers.Dense(512, activation="relu"),
                             keras.layers.Dense(512, activation="relu")], name="base")
    base.trainable = False
    inputs = keras.Input((64,))
    model = keras.Model(inputs, keras.layers.Dense(10, name="head")(base(inputs)))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
