"""Launch checks: build_model() keeps every model it built in a module-level list, so host RAM grows
with each call even after clear_session() (rebuild-ram-leak with --rebuilds)."""
import keras

batch_size = 16
_built = []


def build_model():
    model = keras.Sequential([keras.Input((1024,)), keras.layers.Dense(1024, name="wide"),
                              keras.layers.Dense(1, name="head")], name="rebuild_leak")
    model.compile(optimizer="adam", loss="mse")
    _built.append(model)  # a "cache" of every model: none is ever freed
    return model
