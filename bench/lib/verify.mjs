// Is a copy a correct backup? Intact, not torn between two commits, and holding everything committed before it began.
import { rmSync } from 'node:fs'
import Database from 'better-sqlite3'

/**
 * `lastId` is the id of the last pair the writer had committed before the backup started. The writer inserts
 * its rows two per transaction, so an odd count means a copy that caught half of a transaction.
 */
export function verifyCopy (copyPath, sourcePath, lastId) {
  const expected = countUpTo(sourcePath, lastId)
  let check
  try {
    // Read-write: a copy whose header still says WAL cannot be opened read-only without its -shm file.
    const copy = new Database(copyPath, { fileMustExist: true })
    try {
      const problems = copy.pragma('integrity_check').map((row) => row.integrity_check).filter((line) => line !== 'ok')
      const rows = copy.prepare('SELECT count(*) AS n FROM pairs').get().n
      const upTo = copy.prepare('SELECT count(*) AS n FROM pairs WHERE id <= ?').get(lastId).n
      check = {
        integrity: problems.length === 0 ? 'ok' : problems.slice(0, 2).join('; '),
        rows,
        evenRows: rows % 2 === 0,
        missing: expected - upTo
      }
    } finally {
      copy.close()
    }
  } catch (err) {
    check = { integrity: `cannot read the copy: ${err.message}`, rows: null, evenRows: false, missing: expected }
  } finally {
    for (const suffix of ['-wal', '-shm', '-journal']) rmSync(copyPath + suffix, { force: true })
  }
  check.correct = check.integrity === 'ok' && check.evenRows && check.missing === 0
  return check
}

function countUpTo (path, lastId) {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    return db.prepare('SELECT count(*) AS n FROM pairs WHERE id <= ?').get(lastId).n
  } finally {
    db.close()
  }
}
