//! The shape of one sample: an image or a flat feature vector, and every activation
//! of a network after it (height × width × channels, channels fastest).

use serde::{Deserialize, Serialize};

/// One sample's activation: height × width × channels, channels fastest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl Shape {
    /// An H × W × C image.
    pub fn image(height: usize, width: usize, channels: usize) -> Shape {
        Shape {
            height,
            width,
            channels,
        }
    }

    /// A flat vector of `features` (1 × 1 × features).
    pub fn flat(features: usize) -> Shape {
        Shape::image(1, 1, features)
    }

    /// Values per sample.
    pub fn len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Whether the shape holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pixels per channel.
    pub fn spatial(&self) -> usize {
        self.height * self.width
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.height == 1 && self.width == 1 {
            write!(f, "{} features", self.channels)
        } else {
            write!(f, "{}×{}×{}", self.height, self.width, self.channels)
        }
    }
}
