//! The five shipped styles, embedded in the binary so that every rank of a cluster job has them
//! without a shared filesystem, and the lookup of `--style NAME|PATH`.

use super::{ModelError, TransformerNet};
use std::path::Path;

/// A shipped style: its name and its safetensors weights.
pub struct ShippedStyle {
    pub name: &'static str,
    pub description: &'static str,
    pub weights: &'static [u8],
}

pub static SHIPPED: [ShippedStyle; 5] = [
    ShippedStyle {
        name: "candy",
        description: "candy (bright, colourful glass)",
        weights: include_bytes!("../../models/candy.safetensors"),
    },
    ShippedStyle {
        name: "mosaic",
        description: "mosaic (tiled stained glass)",
        weights: include_bytes!("../../models/mosaic.safetensors"),
    },
    ShippedStyle {
        name: "rain_princess",
        description: "rain princess (Leonid Afremov)",
        weights: include_bytes!("../../models/rain_princess.safetensors"),
    },
    ShippedStyle {
        name: "udnie",
        description: "udnie (Francis Picabia)",
        weights: include_bytes!("../../models/udnie.safetensors"),
    },
    ShippedStyle {
        name: "pointilism",
        description: "pointillism (dots of pure colour)",
        weights: include_bytes!("../../models/pointilism.safetensors"),
    },
];

/// The bytes of `--style`'s weights: a shipped style's, or the file's, to send to other ranks.
pub fn style_bytes(style: &str) -> Result<Vec<u8>, ModelError> {
    if let Some(shipped) = SHIPPED.iter().find(|s| s.name == style) {
        return Ok(shipped.weights.to_vec());
    }
    let path = Path::new(style);
    if !path.exists() {
        return Err(unknown(style));
    }
    std::fs::read(path).map_err(|source| ModelError::Io {
        path: style.to_string(),
        source,
    })
}

fn unknown(style: &str) -> ModelError {
    ModelError::UnknownStyle {
        name: style.to_string(),
        known: SHIPPED
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Loads `--style`: a shipped style's name, or else the path of a weights file.
pub fn load_style(style: &str) -> Result<TransformerNet, ModelError> {
    TransformerNet::from_bytes(&style_bytes(style)?, style)
}
