// Is a restored database the live one? Its integrity, and a sha256 over its schema and every row of every table,
// in rowid order, each value tagged with its type and length so that no two different contents hash alike.
import { createHash } from 'node:crypto'
import Database from 'better-sqlite3'

function hashValue (hash, value) {
  if (value === null) {
    hash.update('n;')
  } else if (Buffer.isBuffer(value)) {
    hash.update(`b${value.length}:`)
    hash.update(value)
  } else {
    const text = String(value)
    hash.update(`${typeof value === 'string' ? 's' : 'v'}${Buffer.byteLength(text)}:${text}`)
  }
}

/**
 * { sha256, tables: { name: rows }, blobBytes (sum(length(data)) of the blobs table, when there is one),
 * integrity ('ok' or the first problems), journalMode, pageCount }.
 */
export function contentOf (path, { integrity = false } = {}) {
  // Read-write: a file whose header says WAL cannot be opened read-only without its -shm.
  const db = new Database(path, { fileMustExist: true })
  try {
    const result = { journalMode: db.pragma('journal_mode', { simple: true }), pageCount: db.pragma('page_count', { simple: true }), tables: {} }
    if (integrity) {
      const lines = db.pragma('integrity_check').map((row) => row.integrity_check)
      result.integrity = lines.every((line) => line === 'ok') ? 'ok' : lines.slice(0, 3).join('; ')
    }
    const hash = createHash('sha256')
    const schema = db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").raw().all()
    for (const row of schema) for (const value of row) hashValue(hash, value)
    for (const [type, name] of schema) {
      if (type !== 'table') continue
      const quoted = `"${name.replace(/"/g, '""')}"`
      let rows = 0
      hash.update(`t:${name};`)
      for (const row of db.prepare(`SELECT * FROM ${quoted} ORDER BY rowid`).raw().iterate()) {
        for (const value of row) hashValue(hash, value)
        hash.update('\n')
        rows++
      }
      result.tables[name] = rows
    }
    if (schema.some(([type, name]) => type === 'table' && name === 'blobs')) {
      result.blobBytes = db.prepare('SELECT sum(length(data)) AS n FROM blobs').get().n
    }
    result.sha256 = hash.digest('hex')
    return result
  } finally {
    db.close()
  }
}
