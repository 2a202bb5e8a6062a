#!/usr/bin/env node
'use strict';
// `npx subcog ARGS`: runs the bundled binary with the bundled model and runtime
// (`npx subcog mcp` serves MCP over stdio). Arguments, stdio and exit status pass through;
// SIGINT/SIGTERM/SIGHUP are forwarded to the binary.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const subcog = require('..');

const exe = subcog.getBinaryPath();
try {
  fs.accessSync(exe, fs.constants.X_OK);
} catch {
  try {
    fs.chmodSync(exe, 0o755); // an extractor that dropped the mode bits
  } catch (e) {
    console.error(`subcog: ${exe} is missing or not executable (${e.message}); reinstall the package`);
    process.exit(1);
  }
}
const child = spawn(exe, process.argv.slice(2), {
  stdio: 'inherit',
  env: subcog.configureEnvironment({ ...process.env }),
});
const forward = (sig) => () => child.kill(sig);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, forward(sig));
child.on('error', (e) => {
  console.error(`subcog: could not start ${exe}: ${e.message}`);
  process.exit(1);
});
child.on('exit', (code, signal) => {
  if (signal) {
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  } else {
    process.exit(code ?? 1);
  }
});
