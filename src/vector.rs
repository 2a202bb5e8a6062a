//! Vectors: the BLOB encoding, validation, and the exact distance functions.
//!
//! A vector is stored as a BLOB of `dim` little-endian IEEE-754 float32 values
//! (`4 * dim` bytes), the same layout as sqlite-vec's `float[N]` columns.

use crate::error::{Error, Result};

/// Distance metric of a `memories` table.
///
/// Distances follow usearch's definitions so that HNSW results and exact scans agree:
/// * `Cosine`: `1 - a.b / (|a| |b|)`, in `[0, 2]`.
/// * `L2`: Euclidean distance `sqrt(sum((a_i - b_i)^2))` (usearch works on the square,
///   which orders identically).
/// * `Ip`: `1 - a.b` (inner product; meaningful for unit-norm vectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Cosine distance.
    Cosine,
    /// Euclidean distance.
    L2,
    /// Inner-product distance.
    Ip,
}

impl Metric {
    /// Parses `cosine`, `l2` or `ip` (case-insensitive).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the accepted values.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" | "cos" => Ok(Metric::Cosine),
            "l2" | "euclidean" => Ok(Metric::L2),
            "ip" | "dot" => Ok(Metric::Ip),
            _ => Err(Error::invalid(format!(
                "metric: expected one of cosine, l2, ip; got '{s}'"
            ))),
        }
    }

    /// The name used in options and in `subcog_info()`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Ip => "ip",
        }
    }

    /// Exact distance between `a` and `b` (same length) under this metric.
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => {
                let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
                for (x, y) in a.iter().zip(b) {
                    dot += x * y;
                    na += x * x;
                    nb += y * y;
                }
                let denom = (na * nb).sqrt();
                if denom == 0.0 { 1.0 } else { 1.0 - dot / denom }
            }
            Metric::L2 => a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt(),
            Metric::Ip => 1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(),
        }
    }
}

/// Decodes a vector BLOB of `dim` little-endian float32 values.
///
/// `what` names the value in error messages (e.g. `"column embedding"`).
///
/// # Errors
/// [`Error::Invalid`] if the length is not `4 * dim` bytes or a value is NaN or infinite.
pub fn decode(blob: &[u8], dim: usize, what: &str) -> Result<Vec<f32>> {
    if blob.len() != dim * 4 {
        return Err(Error::invalid(format!(
            "{what}: expected a BLOB of {dim} float32 ({} bytes), got {} bytes{}",
            dim * 4,
            blob.len(),
            if blob.len().is_multiple_of(4) {
                format!(" ({} float32)", blob.len() / 4)
            } else {
                String::new()
            }
        )));
    }
    let v: Vec<f32> = blob
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::invalid(format!(
            "{what}: element {i} is {}, expected a finite float32",
            v[i]
        )));
    }
    Ok(v)
}

/// Decodes a stored vector BLOB without re-validating finiteness (it was validated on
/// insert). Returns `None` if the length is wrong.
pub fn decode_stored(blob: &[u8], dim: usize) -> Option<Vec<f32>> {
    if blob.len() != dim * 4 {
        return None;
    }
    Some(
        blob.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Encodes a vector as a BLOB of little-endian float32.
pub fn encode(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Parses a JSON array of numbers (`'[0.1, 0.2]'`) into a vector.
///
/// # Errors
/// [`Error::Invalid`] if the text is not a JSON array of finite numbers.
pub fn from_json(text: &str) -> Result<Vec<f32>> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid(format!("vector JSON: {e}; got '{}'", clip(text))))?;
    let arr = value.as_array().ok_or_else(|| {
        Error::invalid(format!(
            "vector JSON: expected an array of numbers, got '{}'",
            clip(text)
        ))
    })?;
    arr.iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_f64()
                .map(|f| f as f32)
                .filter(|f| f.is_finite())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "vector JSON: element {i} is {x}, expected a finite number"
                    ))
                })
        })
        .collect()
}

/// L2 norm of `v`.
pub fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// Shortens long user text for error messages.
pub fn clip(s: &str) -> String {
    if s.chars().count() <= 60 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(60).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = vec![1.0, -2.5, 3.25];
        assert_eq!(decode(&encode(&v), 3, "x").ok(), Some(v));
    }

    #[test]
    fn wrong_size_names_sizes() {
        let e = decode(&[0u8; 8], 3, "column embedding")
            .err()
            .map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(e.contains("column embedding") && e.contains("12 bytes") && e.contains("got 8"));
    }

    #[test]
    fn nan_rejected() {
        let e = decode(&encode(&[1.0, f32::NAN]), 2, "v")
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("element 1"));
        assert!(decode(&encode(&[f32::INFINITY]), 1, "v").is_err());
    }

    #[test]
    fn distances() {
        let a = [1.0, 0.0];
        let b = [0.0, 1.0];
        assert!((Metric::Cosine.distance(&a, &b) - 1.0).abs() < 1e-6);
        assert!((Metric::Cosine.distance(&a, &[2.0, 0.0])).abs() < 1e-6);
        assert!((Metric::L2.distance(&a, &b) - 2f32.sqrt()).abs() < 1e-6);
        assert!((Metric::Ip.distance(&a, &a)).abs() < 1e-6);
    }

    #[test]
    fn json_vectors() {
        assert_eq!(from_json("[1, 2.5]").ok(), Some(vec![1.0, 2.5]));
        assert!(from_json("{\"a\":1}").is_err());
        assert!(from_json("[1, \"x\"]").is_err());
        assert!(from_json("not json").is_err());
    }

    #[test]
    fn metric_parse() {
        assert_eq!(Metric::parse("L2").ok(), Some(Metric::L2));
        assert!(Metric::parse("manhattan").is_err());
    }
}
