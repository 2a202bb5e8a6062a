#!/usr/bin/env node
// Store and search memories from Node with the subcog extension, through better-sqlite3's
// loadExtension (better-sqlite3 bundles its own SQLite; subcog needs >= 3.37).
//
//   cd examples/node && npm ci && node example.js [path/to/libsubcog.so]
//
// Needs `make build` (the extension) and `make setup` (the embedding model). Exits non-zero
// if a search does not find what it should, so `make test` runs it as a test.
'use strict';

const path = require('path');
const os = require('os');
const fs = require('fs');
const Database = require('better-sqlite3');

const ext = process.argv[2] || path.resolve(__dirname, '../../target/release/libsubcog.so');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'subcog-node-'));
const db = new Database(path.join(dir, 'memory.db'));

try {
  db.loadExtension(ext);
  console.log(`SQLite ${db.prepare('SELECT sqlite_version() AS v').get().v}, subcog ` +
              JSON.parse(db.prepare('SELECT subcog_info() AS i').get().i).version);

  db.exec('CREATE VIRTUAL TABLE IF NOT EXISTS memories USING memories()');
  const insert = db.prepare('INSERT INTO memories(content, namespace, tags) VALUES (?, ?, ?)');
  db.transaction((rows) => rows.forEach((r) => insert.run(...r)))([
    ['The user prefers tabs, width 4, in every Go project.', 'user', '["style"]'],
    ['Deploy the shop with `make deploy-prod` after CI is green.', 'project:shop', '["ops"]'],
    ['Alice owns the billing service and reviews Stripe changes.', 'team', '["people"]'],
  ]);

  const checks = [
    ['how do I ship the shop?',
      'SELECT id, content, score FROM memories WHERE memories MATCH ? AND k = 3', 'Deploy the shop'],
    ['indentation',
      'SELECT id, content, distance AS score FROM memories WHERE embedding MATCH embed(?) AND k = 3',
      'The user prefers tabs'],
    ['who owns payments?',
      'SELECT id, content, score FROM memories WHERE memories MATCH ? AND k = 2 AND namespace = \'team\'',
      'Alice owns'],
  ];
  let ok = true;
  for (const [query, sql, want] of checks) {
    const rows = db.prepare(sql).all(query);
    console.log(`${JSON.stringify(query)}:`);
    for (const r of rows) console.log(`  ${r.score.toFixed(4)}  ${r.content}`);
    if (!rows.length || !rows[0].content.startsWith(want)) {
      console.error(`  expected first: ${want}...`);
      ok = false;
    }
  }
  process.exitCode = ok ? 0 : 1;
} finally {
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
