"""A notebook downloaded as .py: it trains at import (issue 23). The fit(...) call is the plan preflight
checks: batch 32, 200 epochs, one checkpoint per epoch. Nothing after it runs."""
import keras
import numpy as np

EPOCHS = 200

x = np.random.rand(512, 20).astype("float32")
y = np.random.rand(512, 1).astype("float32")

model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)],
                         name="fit_at_import")
model.compile(optimizer="adam", loss="mse")
model.fit(x, y, epochs=EPOCHS, batch_size=32,
          callbacks=[keras.callbacks.ModelCheckpoint("ckpt/model-{epoch:03d}.keras"),
                     keras.callbacks.BackupAndRestore("backup")])

raise SystemExit("training finished")  # never reached in a dry run
