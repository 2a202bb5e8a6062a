//! Where the model, the tokenizer and ONNX Runtime are installed ([`ModelPaths`]).

use std::path::PathBuf;

use crate::error::{Error, Result};

/// File name of the ONNX Runtime shared library installed by `make setup`.
pub(crate) const ORT_LIB_NAME: &str = "libonnxruntime.so.1.31.1";

/// Where the model and the runtime are looked for.
///
/// * `SUBCOG_HOME` (default `$XDG_DATA_HOME/subcog`, else `~/.local/share/subcog`) is the
///   install root of `make setup`;
/// * `SUBCOG_MODEL_DIR` (default `$SUBCOG_HOME/models/all-MiniLM-L6-v2`) holds
///   `model.onnx` and `tokenizer.json`;
/// * `SUBCOG_ORT_LIB`, then `ORT_DYLIB_PATH` (default
///   `$SUBCOG_HOME/lib/libonnxruntime.so.1.31.1`) is the ONNX Runtime library.
#[derive(Debug, Clone)]
pub(crate) struct ModelPaths {
    /// `model.onnx`.
    pub model: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// ONNX Runtime shared library.
    pub runtime: PathBuf,
}

/// A non-empty environment variable as a path.
fn env_path(k: &str) -> Option<PathBuf> {
    std::env::var_os(k)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The per-user directory of `make setup` (and of the `subcog` binary's default database):
/// `$SUBCOG_HOME`, else `$XDG_DATA_HOME/subcog`, else `~/.local/share/subcog`.
pub fn subcog_home() -> PathBuf {
    env_path("SUBCOG_HOME").unwrap_or_else(|| {
        env_path("XDG_DATA_HOME")
            .or_else(|| env_path("HOME").map(|h| h.join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."))
            .join("subcog")
    })
}

impl ModelPaths {
    /// Resolves the paths from the environment (read on every call).
    pub(crate) fn from_env() -> Self {
        let home = subcog_home();
        let env = env_path;
        let model_dir =
            env("SUBCOG_MODEL_DIR").unwrap_or_else(|| home.join("models/all-MiniLM-L6-v2"));
        let runtime = env("SUBCOG_ORT_LIB")
            .or_else(|| env("ORT_DYLIB_PATH"))
            .unwrap_or_else(|| home.join("lib").join(ORT_LIB_NAME));
        ModelPaths {
            model: model_dir.join("model.onnx"),
            tokenizer: model_dir.join("tokenizer.json"),
            runtime,
        }
    }

    /// Checks that every file exists.
    ///
    /// # Errors
    /// [`Error::Model`] naming the first missing file and the command that installs it.
    pub(crate) fn check(&self) -> Result<()> {
        for (what, p) in [
            ("the embedding model", &self.model),
            ("the tokenizer", &self.tokenizer),
            ("the ONNX Runtime library", &self.runtime),
        ] {
            if !p.is_file() {
                return Err(Error::Model(format!(
                    "{what} is not installed: {} not found. Run `make setup` in the subcog \
                     repository (scripts/setup.sh), or point SUBCOG_MODEL_DIR / SUBCOG_ORT_LIB \
                     at existing files",
                    p.display()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_environment() {
        // Only reads the environment; SUBCOG_MODEL_DIR wins over SUBCOG_HOME.
        let p = ModelPaths::from_env();
        assert!(p.model.ends_with("model.onnx"));
        assert!(p.tokenizer.ends_with("tokenizer.json"));
    }
}
