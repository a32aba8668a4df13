//! From a HU volume to the clinical result: model loading (tract), preprocessing,
//! inference, post-processing, quantification, classification, previews and masks.

pub mod report;
