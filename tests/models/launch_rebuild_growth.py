"""Launch checks: a plain build_model() with 4 MiB of weights and no clear_session(); rebuilt in a loop,
dropped models linger until the garbage collector runs (rebuild-ram-growth with --rebuilds)."""
import keras

batch_size = 16


def build_model():
    model = keras.Sequential([keras.Input((1024,)), keras.layers.Dense(1024, name="wide"),
                              keras.layers.Dense(1, name="head")], name="rebuild_growth")
    model.compile(optimizer="adam", loss="mse")
    return model
