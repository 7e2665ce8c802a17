// A benchmark's own copy of a cached database, so that the cache is never written to.
import { copyFileSync, existsSync, statSync } from 'node:fs'
import Database from 'better-sqlite3'

/**
 * Copies `source` to `target` (a plain file copy), or through SQLite when someone has the cached database open with
 * changes still in its WAL, which a file copy of the main file alone would miss.
 */
export function copyDatabase (source, target) {
  if (existsSync(`${source}-wal`) && statSync(`${source}-wal`).size > 0) {
    const db = new Database(source, { readonly: true, fileMustExist: true })
    try {
      db.prepare('VACUUM INTO ?').run(target)
    } finally {
      db.close()
    }
  } else {
    copyFileSync(source, target)
  }
}
