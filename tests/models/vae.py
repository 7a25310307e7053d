"""Issue 17: a VAE with its own train_step (as in the Keras example) and unlabelled data `(x, None)`."""
import keras
import numpy as np
import tensorflow as tf

batch_size = 32


class Sampling(keras.layers.Layer):
    def call(self, inputs):
        z_mean, z_log_var = inputs
        return z_mean + tf.exp(0.5 * z_log_var) * keras.random.normal(tf.shape(z_mean))


class VAE(keras.Model):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder

    def call(self, inputs):
        return self.decoder(self.encoder(inputs)[2])

    def train_step(self, data):
        # fit(x) hands over x itself, which is what the Keras VAE example encodes.
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            reconstruction_loss = tf.reduce_mean(tf.reduce_sum(
                keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)))
            kl_loss = -0.5 * tf.reduce_mean(tf.reduce_sum(
                1 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var), axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return {"loss": total_loss}


def build_model():
    images = keras.Input((28, 28, 1))
    hidden = keras.layers.Dense(64, activation="relu")(keras.layers.Flatten()(images))
    z_mean, z_log_var = keras.layers.Dense(2)(hidden), keras.layers.Dense(2)(hidden)
    encoder = keras.Model(images, [z_mean, z_log_var, Sampling()([z_mean, z_log_var])], name="encoder")
    latent = keras.Input((2,))
    pixels = keras.layers.Dense(28 * 28, activation="sigmoid")(keras.layers.Dense(64, activation="relu")(latent))
    decoder = keras.Model(latent, keras.layers.Reshape((28, 28, 1))(pixels), name="decoder")
    model = VAE(encoder, decoder, name="vae")
    model.compile(optimizer="adam")
    return model


def get_dataset():
    images = np.random.default_rng(0).random((256, 28, 28, 1), dtype=np.float32)
    return images, None
