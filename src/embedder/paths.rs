//! Where the model, the tokenizer and ONNX Runtime are installed ([`ModelPaths`]).

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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
///
/// Installed packages (packaging/): when a variable is unset and the files exist next to
/// the loaded `libsubcog.so` (folder `D`), they win over the `$SUBCOG_HOME` defaults:
/// `D/model/` (holding `model.onnx`) is the model folder; `D/lib/libonnxruntime.so.1.31.1`
/// (the npm package) or `D/../onnxruntime/capi/libonnxruntime.so.1.31.1` (the Python wheel
/// next to the `onnxruntime` wheel in site-packages) the runtime. So any host loading the
/// packaged extension (`sqlite-utils --load-extension`, `.load`) finds the packaged model.
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

/// The folder of the shared object (or executable) holding this code, from `dladdr`,
/// with symbolic links resolved; `None` when the dynamic linker does not say.
fn own_dir() -> Option<PathBuf> {
    // SAFETY: `Dl_info` is plain C data (pointers and integers); all zeroes is valid.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let addr = own_dir as fn() -> Option<PathBuf> as *const libc::c_void;
    // SAFETY: `addr` is the address of a function of this object and `info` is a valid,
    // writable `Dl_info`; dladdr only reads the linker's tables and fills `info`.
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: `dli_fname` is non-null and points to a NUL-terminated string owned by the
    // dynamic linker, valid while this object stays loaded (it is running this code).
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let file = Path::new(OsStr::from_bytes(name.to_bytes()))
        .canonicalize()
        .ok()?;
    file.parent().map(Path::to_path_buf)
}

/// The packaged files next to this library, when present: (model folder, runtime).
fn sibling_files() -> (Option<PathBuf>, Option<PathBuf>) {
    match own_dir() {
        Some(dir) => sibling_files_in(&dir),
        None => (None, None),
    }
}

/// The packaged files next to a library in `dir`, when present: (`dir/model` if it holds
/// `model.onnx`; `dir/lib/` or `dir/../onnxruntime/capi/` `libonnxruntime.so.1.31.1`).
fn sibling_files_in(dir: &Path) -> (Option<PathBuf>, Option<PathBuf>) {
    let model = Some(dir.join("model")).filter(|d| d.join("model.onnx").is_file());
    let mut runtimes = vec![dir.join("lib").join(ORT_LIB_NAME)];
    if let Some(site) = dir.parent() {
        runtimes.push(site.join("onnxruntime/capi").join(ORT_LIB_NAME));
    }
    let runtime = runtimes.into_iter().find(|p| p.is_file());
    (model, runtime)
}

impl ModelPaths {
    /// Resolves the paths from the environment and the packaged files next to this
    /// library (read on every call).
    pub(crate) fn from_env() -> Self {
        let home = subcog_home();
        let env = env_path;
        let (sibling_model, sibling_runtime) = sibling_files();
        let model_dir = env("SUBCOG_MODEL_DIR")
            .or(sibling_model)
            .unwrap_or_else(|| home.join("models/all-MiniLM-L6-v2"));
        let runtime = env("SUBCOG_ORT_LIB")
            .or_else(|| env("ORT_DYLIB_PATH"))
            .or(sibling_runtime)
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
    fn own_dir_is_the_folder_of_this_object() {
        let dir = own_dir().expect("dladdr names this test binary");
        let exe = std::env::current_exe().expect("current_exe");
        assert_eq!(
            Some(dir.as_path()),
            exe.canonicalize().expect("exe").parent()
        );
    }

    #[test]
    fn sibling_files_are_the_package_layouts() {
        let root = std::env::temp_dir().join(format!("subcog-siblings-{}", std::process::id()));
        let pkg = root.join("site-packages/subcog");
        std::fs::create_dir_all(pkg.join("model")).expect("mkdir");
        assert_eq!(sibling_files_in(&pkg), (None, None), "nothing there yet");
        std::fs::write(pkg.join("model/model.onnx"), b"x").expect("write");
        let wheel_rt = root.join("site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&wheel_rt).expect("mkdir");
        std::fs::write(wheel_rt.join(ORT_LIB_NAME), b"x").expect("write");
        assert_eq!(
            sibling_files_in(&pkg),
            (Some(pkg.join("model")), Some(wheel_rt.join(ORT_LIB_NAME)))
        );
        // The npm layout (lib/ next to the library) comes first.
        std::fs::create_dir_all(pkg.join("lib")).expect("mkdir");
        std::fs::write(pkg.join("lib").join(ORT_LIB_NAME), b"x").expect("write");
        assert_eq!(
            sibling_files_in(&pkg).1,
            Some(pkg.join("lib").join(ORT_LIB_NAME))
        );
        std::fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn paths_follow_environment() {
        // Only reads the environment; SUBCOG_MODEL_DIR wins over SUBCOG_HOME.
        let p = ModelPaths::from_env();
        assert!(p.model.ends_with("model.onnx"));
        assert!(p.tokenizer.ends_with("tokenizer.json"));
    }
}
