/** Loads the subcog extension into a better-sqlite3 Database (or a node:sqlite DatabaseSync
 * opened with allowExtension: true) and points it at the bundled model. Returns `db`. */
export function load<T extends { loadExtension(path: string): unknown }>(db: T): T;
/** Absolute path of libsubcog.so (entry point sqlite3_subcog_init). */
export function getLoadablePath(): string;
/** Absolute path of the bundled `subcog` binary. */
export function getBinaryPath(): string;
/** Absolute path of the folder holding model.onnx and tokenizer.json. */
export function getModelDir(): string;
/** Absolute path of the bundled ONNX Runtime library. */
export function getOrtLibrary(): string;
/** Sets SUBCOG_MODEL_DIR / SUBCOG_ORT_LIB in `env` (default process.env) unless set. */
export function configureEnvironment<E extends Record<string, string | undefined>>(env?: E): E;
/** Needed files that are not installed ([] when the install is whole). */
export function missingFiles(): string[];
