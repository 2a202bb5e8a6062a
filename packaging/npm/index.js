'use strict';
// subcog for Node: the SQLite extension, the `subcog` binary, the all-MiniLM-L6-v2 model,
// its tokenizer and ONNX Runtime, all inside this package (native/, staged by `make npm`).
//
//   const Database = require('better-sqlite3');
//   const db = new Database('memory.db');
//   require('subcog').load(db);
//   db.exec('CREATE VIRTUAL TABLE IF NOT EXISTS mem USING memories()');
//
// load() points the extension at the bundled model and runtime through the environment
// variables it reads when it loads the model (SUBCOG_MODEL_DIR, SUBCOG_ORT_LIB); a variable
// that is already set is kept.

const fs = require('node:fs');
const path = require('node:path');

const NATIVE = path.join(__dirname, 'native');
const ORT_LIB_NAME = 'libonnxruntime.so.1.31.1';

/** Throws when this platform is not the one the native files are built for. */
function checkPlatform() {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`subcog ships native files for linux/x64 only (this is ${process.platform}/${process.arch})`);
  }
}

/** Absolute path of the loadable extension libsubcog.so (entry point sqlite3_subcog_init). */
function getLoadablePath() {
  return path.join(NATIVE, 'libsubcog.so');
}

/** Absolute path of the bundled `subcog` binary (`subcog mcp` serves MCP over stdio). */
function getBinaryPath() {
  return path.join(NATIVE, 'bin', 'subcog');
}

/** Absolute path of the folder holding model.onnx and tokenizer.json. */
function getModelDir() {
  return path.join(NATIVE, 'model');
}

/** Absolute path of the bundled ONNX Runtime library. */
function getOrtLibrary() {
  return path.join(NATIVE, 'lib', ORT_LIB_NAME);
}

/**
 * Sets SUBCOG_MODEL_DIR and SUBCOG_ORT_LIB in `env` (default process.env, which the
 * extension reads in this process) to the bundled files, unless they (or ORT_DYLIB_PATH)
 * already hold a non-empty value. Returns `env`.
 */
function configureEnvironment(env = process.env) {
  if (!env.SUBCOG_MODEL_DIR) env.SUBCOG_MODEL_DIR = getModelDir();
  if (!env.SUBCOG_ORT_LIB && !env.ORT_DYLIB_PATH) env.SUBCOG_ORT_LIB = getOrtLibrary();
  return env;
}

/**
 * Loads the extension into `db`: a better-sqlite3 Database (`db.loadExtension(path)`), or a
 * node:sqlite DatabaseSync opened with `allowExtension: true`. Throws a TypeError when `db`
 * cannot load extensions, and SQLite's error when it refuses the file.
 */
function load(db) {
  checkPlatform();
  if (!db || typeof db.loadExtension !== 'function') {
    throw new TypeError('subcog.load(db): db must be a better-sqlite3 Database (or a node:sqlite ' +
      'DatabaseSync opened with allowExtension: true); it has no loadExtension method');
  }
  configureEnvironment();
  const toggle = typeof db.enableLoadExtension === 'function';
  if (toggle) db.enableLoadExtension(true);
  try {
    db.loadExtension(getLoadablePath());
  } finally {
    if (toggle) db.enableLoadExtension(false);
  }
  return db;
}

module.exports = {
  load,
  getLoadablePath,
  getBinaryPath,
  getModelDir,
  getOrtLibrary,
  configureEnvironment,
  missingFiles,
};

/** The files load() and the binary need that are not installed ([] when the install is whole). */
function missingFiles() {
  return [getLoadablePath(), getBinaryPath(), path.join(getModelDir(), 'model.onnx'),
    path.join(getModelDir(), 'tokenizer.json'), getOrtLibrary()].filter((f) => !fs.existsSync(f));
}
