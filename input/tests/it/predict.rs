//! Predictor evaluation over the corpus (being written).
