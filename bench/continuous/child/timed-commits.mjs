// The timed workload of the overhead benchmark, run by the writer process and by the app alike: one small row per
// transaction, `rate` commits a second on a timer, each commit timed with process.hrtime. Missed slots (the event
// loop blocked, a commit that waited for a lock) are skipped, not caught up in a burst, so a stall shows as one long
// commit rather than as a run of fast ones. Only the commits that end inside the measured window are kept.
import Database from 'better-sqlite3'
import { percentile, max } from '../../lib/stats.mjs'

// Bytes of random payload per row: a small row, not compressible.
const PAYLOAD_BYTES = 48

/** A connection as an app opens one: WAL, the connection's default synchronous, busy_timeout 5000. */
export function openConnection (dbPath) {
  const db = new Database(dbPath, { fileMustExist: true })
  db.pragma('journal_mode = WAL')
  db.pragma('busy_timeout = 5000')
  return db
}

/** The table both writers commit to, created by the benchmark in each round's copy of the database. */
export const TABLE_SQL = 'CREATE TABLE IF NOT EXISTS overhead (id INTEGER PRIMARY KEY, source INTEGER NOT NULL, t REAL NOT NULL, payload BLOB NOT NULL)'

/**
 * Starts committing at once; `source` tells the rows of the two processes apart. Returns the controls:
 * startWindow() forgets what came before, endWindow() returns the window's figures (and keeps committing).
 */
export function startTimedCommits (db, { rate, source }) {
  const insert = db.prepare(`INSERT INTO overhead (source, t, payload) VALUES (${Number(source)}, ?, randomblob(${PAYLOAD_BYTES}))`)
  const intervalMs = 1000 / rate
  let latencies = []
  let errors = 0
  let lastError = null
  let windowStarted = null
  let stopped = false
  let timer = null
  let next = performance.now()

  function tick () {
    if (stopped) return
    const started = process.hrtime.bigint()
    try {
      // Autocommit: the INSERT is its own transaction.
      insert.run(Date.now())
    } catch (err) {
      // A commit that gave up (SQLITE_BUSY after busy_timeout) counts as an error, and its wait as its latency.
      errors++
      lastError = err.code ?? err.message
    }
    latencies.push(Number(process.hrtime.bigint() - started) / 1e6)
    next += intervalMs
    const now = performance.now()
    if (next < now) next = now
    timer = setTimeout(tick, next - now)
  }
  tick()

  return {
    synchronous: db.pragma('synchronous', { simple: true }),
    startWindow () {
      latencies = []
      errors = 0
      lastError = null
      windowStarted = performance.now()
    },
    endWindow () {
      const seconds = (performance.now() - windowStarted) / 1000
      return {
        commits: latencies.length,
        seconds,
        commitsPerSec: latencies.length / seconds,
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        p999: percentile(latencies, 99.9),
        max: max(latencies),
        over10ms: latencies.filter((ms) => ms > 10).length,
        errors,
        lastError
      }
    },
    stop () {
      stopped = true
      clearTimeout(timer)
    }
  }
}
