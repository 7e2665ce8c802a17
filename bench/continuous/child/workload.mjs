// The workload both methods run: one row per transaction, `rate` commits a second, each row (n, t) with t the
// commit time. Missed slots (the event loop blocked) are skipped, not caught up in a burst. The last committed
// (n, t) goes to the parent every 10 ms. With `checkpointEveryMs`, the same connection also calls
// PRAGMA wal_checkpoint(TRUNCATE) that long after each previous call returned, and reports how long each call took and what it returned.
import Database from 'better-sqlite3'

const REPORT_MS = 10

/** The app's own connection, as the benchmark asks for it: WAL, default synchronous, busy_timeout 5000. */
export function openAppDatabase (dbPath) {
  const db = new Database(dbPath, { fileMustExist: true })
  db.pragma('journal_mode = WAL')
  db.pragma('busy_timeout = 5000')
  return db
}

export function runWorkload (db, { rate, checkpointEveryMs }) {
  const insert = db.prepare('INSERT INTO commits (n, t) VALUES (?, ?)')
  const intervalMs = 1000 / rate
  // Resumes after the rows already there (none in a fresh database).
  let n = db.prepare('SELECT coalesce(max(n), 0) AS n FROM commits').get().n
  let t = null
  let errors = 0
  let lastError = null
  let lastCommitAt = null
  let maxGapMs = 0
  let reported = -1
  let next = performance.now()

  function commit () {
    const now = Date.now()
    try {
      // Autocommit: the INSERT is its own transaction.
      insert.run(n + 1, now)
      n++
      t = now
      const at = performance.now()
      if (lastCommitAt !== null) maxGapMs = Math.max(maxGapMs, at - lastCommitAt)
      lastCommitAt = at
    } catch (err) {
      // Not committed; the same n is tried again at the next slot, so the committed rows never have a gap.
      errors++
      lastError = err.code ?? err.message
    }
  }

  function tick () {
    commit()
    next += intervalMs
    const now = performance.now()
    if (next < now) next = now
    setTimeout(tick, next - now)
  }

  function report () {
    if (n === reported) return
    reported = n
    process.send({ type: 'progress', n, t, errors, lastError, maxGapMs })
  }

  const synchronous = db.pragma('synchronous', { simple: true })
  setInterval(report, REPORT_MS)
  tick()

  if (checkpointEveryMs) {
    // A timeout chain, not setInterval: the next call comes 2 s after the previous one returned. With setInterval a
    // call that blocks longer than the period is followed by the next one right away, and nothing else would run.
    const checkpoint = () => {
      const at = Date.now()
      const started = performance.now()
      let row = null
      let error = null
      try {
        row = db.prepare('PRAGMA wal_checkpoint(TRUNCATE)').raw().get()
      } catch (err) {
        error = err.code ?? err.message
      }
      const ms = performance.now() - started
      // Columns: busy (1 when it could not finish), WAL frames, frames checkpointed.
      process.send({ type: 'checkpoint', at, ms, busy: row ? row[0] : null, log: row ? row[1] : null, checkpointed: row ? row[2] : null, error })
      report()
      setTimeout(checkpoint, checkpointEveryMs)
    }
    setTimeout(checkpoint, checkpointEveryMs)
  }
  return { synchronous }
}
