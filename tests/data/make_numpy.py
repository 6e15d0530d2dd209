"""Writes the NumPy fixtures of tests/numpy.rs with NumPy itself (2.4.6 wrote the
committed files): values are arange-based so that the test can recompute them."""
import numpy as np

# Pixels: uint8 [N, H, W] = (i·7) mod 251, labels int64 i mod 3; np.savez (stored).
x = (np.arange(6 * 4 * 3) * 7 % 251).astype(np.uint8)
np.savez(
    "numpy_u8.npz",
    x_train=x.reshape(6, 4, 3),
    y_train=np.arange(6, dtype=np.int64) % 3,
    x_test=x[:24].reshape(2, 4, 3),
    y_test=np.array([2, 0], dtype=np.int64),
)

# Floats, channels first: float32 [N, C, H, W] = i/8 − 3, labels uint8 i mod 2;
# np.savez_compressed (deflate).
v = np.arange(5 * 2 * 3 * 4, dtype=np.float32) / 8 - 3
np.savez_compressed(
    "numpy_f32_nchw.npz",
    x_train=v.reshape(5, 2, 3, 4),
    y_train=(np.arange(5) % 2).astype(np.uint8),
    x_test=v[:48].reshape(2, 2, 3, 4),
    y_test=np.array([1, 0], dtype=np.uint8),
)
