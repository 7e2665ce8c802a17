// The benchmark databases: built once per size and journal mode, cached in bench/.cache/, reused by every run.
import { existsSync, renameSync, rmSync, copyFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { CACHE_DIR, ensureDirs } from './paths.mjs'

// About 4 rows of 1000 bytes fit a 4 KiB page, so 1000 rows make about 1 MB.
const ROWS_PER_MB = 1000
const ROWS_PER_STATEMENT = 100_000

export function databasePath (sizeMb, mode) {
  return join(CACHE_DIR, `db-${sizeMb}mb-${mode}.sqlite`)
}

/** The cached database of about `sizeMb` MB in `mode` ('wal' or 'delete'), built when missing. */
export function ensureDatabase (sizeMb, mode, log = () => {}) {
  ensureDirs()
  const path = databasePath(sizeMb, mode)
  if (existsSync(path)) return path
  if (mode === 'wal') {
    log(`building the ${sizeMb} MB WAL database (cached for later runs)`)
    build(path, sizeMb)
  } else {
    // Same content as the WAL one; only the journal mode differs.
    const wal = ensureDatabase(sizeMb, 'wal', log)
    const temp = `${path}.building`
    copyFileSync(wal, temp)
    const db = new Database(temp)
    db.pragma('journal_mode = DELETE')
    db.close()
    renameSync(temp, path)
  }
  return path
}

function build (path, sizeMb) {
  // Built under a temp name and renamed: an interrupted build never looks like a finished one.
  const temp = `${path}.building`
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(temp + suffix, { force: true })
  const db = new Database(temp)
  db.pragma('journal_mode = WAL')
  db.exec(`
    CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE pairs (id INTEGER PRIMARY KEY, txn INTEGER NOT NULL, payload BLOB NOT NULL);
    CREATE INDEX pairs_txn ON pairs (txn);
  `)
  const insert = db.prepare(`
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
    INSERT INTO blobs (data) SELECT randomblob(1000) FROM n
  `)
  db.transaction(() => {
    for (let left = sizeMb * ROWS_PER_MB; left > 0; left -= ROWS_PER_STATEMENT) {
      insert.run(Math.min(left, ROWS_PER_STATEMENT))
    }
  })()
  db.pragma('wal_checkpoint(TRUNCATE)')
  db.close()
  renameSync(temp, path)
}

/**
 * Empties the writer's table and folds the WAL back into the file, so that every measurement starts from the same
 * state: the file does not grow run after run (freed pages are reused) and the WAL starts empty.
 */
export function resetDatabase (path) {
  const db = new Database(path, { fileMustExist: true })
  db.pragma('busy_timeout = 5000')
  db.exec('DELETE FROM pairs')
  if (db.pragma('journal_mode', { simple: true }) === 'wal') db.pragma('wal_checkpoint(TRUNCATE)')
  db.close()
}

export function fileSize (path) {
  return statSync(path).size
}
