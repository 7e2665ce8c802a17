// What was committed, and what came back. The original files are read once after the kill, only to measure:
// copied first (database and -wal, not the -shm, so SQLite rebuilds its index from the WAL itself), the copy opened.
import { copyFileSync, existsSync } from 'node:fs'
import Database from 'better-sqlite3'

export function createDatabase (path) {
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.exec('CREATE TABLE commits (n INTEGER PRIMARY KEY, t REAL NOT NULL)')
  db.close()
}

/** Every committed row: t by n (Float64Array, index 0 unused), from a copy of the killed app's files. */
export function committedRows (dbPath, copyPath) {
  copyFileSync(dbPath, copyPath)
  if (existsSync(`${dbPath}-wal`)) copyFileSync(`${dbPath}-wal`, `${copyPath}-wal`)
  const db = new Database(copyPath, { fileMustExist: true })
  try {
    return readRows(db)
  } finally {
    db.close()
  }
}

function readRows (db) {
  const rows = db.prepare('SELECT n, t FROM commits ORDER BY n').raw().all()
  const last = rows.length ? rows.at(-1)[0] : 0
  const t = new Float64Array(last + 1).fill(NaN)
  for (const [n, time] of rows) t[n] = time
  return { count: rows.length, last, t, first: rows.length ? rows[0][0] : null }
}

/**
 * Is the restored database intact, and exactly the committed rows 1..m? Then how much is lost: the commits after m,
 * and the time between the last committed row and the last restored one (from the first commit when none came back).
 */
export function checkRestored (restoredPath, committed) {
  const problems = []
  if (committed.count !== committed.last || (committed.count && committed.first !== 1)) {
    problems.push(`the original itself has gaps (${committed.count} rows, last n ${committed.last})`)
  }
  let integrity = null
  let restored = null
  try {
    // Read-write: a restored file may say WAL in its header and have no -shm yet.
    const db = new Database(restoredPath, { fileMustExist: true })
    try {
      const lines = db.pragma('integrity_check').map((row) => row.integrity_check)
      integrity = lines.every((line) => line === 'ok') ? 'ok' : lines.slice(0, 3).join('; ')
      if (integrity !== 'ok') problems.push(`integrity_check: ${integrity}`)
      restored = readRows(db)
    } finally {
      db.close()
    }
  } catch (err) {
    problems.push(`cannot read the restored database: ${err.message}`)
  }
  if (!restored) return { ok: false, problems, integrity }

  const m = restored.last
  if (restored.count !== m || (m > 0 && restored.first !== 1)) problems.push(`not a prefix: ${restored.count} rows with n from ${restored.first} to ${m}`)
  if (m > committed.last) problems.push(`restored rows up to n ${m}, but only ${committed.last} were committed`)
  let differing = 0
  for (let n = 1; n <= Math.min(m, committed.last); n++) {
    if (!Number.isNaN(restored.t[n]) && restored.t[n] !== committed.t[n]) differing++
  }
  if (differing) problems.push(`${differing} restored rows differ from the committed ones`)

  const lastCommittedT = committed.last ? committed.t[committed.last] : null
  const lastRestoredT = m > 0 ? restored.t[m] : (committed.last ? committed.t[1] : null)
  return {
    ok: problems.length === 0,
    problems,
    integrity,
    restoredRows: restored.count,
    restoredLast: m,
    lastRestoredT: m > 0 ? restored.t[m] : null,
    lostCommits: committed.last - m,
    lostMs: lastCommittedT !== null && lastRestoredT !== null ? lastCommittedT - lastRestoredT : null
  }
}
