// A writer in its own process: commits one transaction of two rows after another, ~1 ms apart, and times each.
// The parent switches phases (idle, backup, ...) by message; every commit is counted in the phase it ended in.
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import { percentile, max } from '../lib/stats.mjs'

const [path] = process.argv.slice(2)
// A writer is never meant to run for long; this bounds it if the parent forgets it.
const LIFETIME_MS = 15 * 60_000
const bornAt = Date.now()

const db = new Database(path, { fileMustExist: true })
db.pragma('busy_timeout = 5000')
// The usual pairing with WAL; in rollback mode NORMAL still syncs each commit.
db.pragma('synchronous = NORMAL')
const insert = db.prepare('INSERT INTO pairs (txn, payload) VALUES (?, randomblob(64))')
const commitPair = db.transaction((txn) => {
  insert.run(txn)
  return Number(insert.run(txn).lastInsertRowid)
}).immediate

let txn = 0
let lastId = 0
// An object, so the loop condition sees the message handler's change.
const control = { stopping: false }
let phase = newPhase('warmup')
const phases = [phase]

function newPhase (name) {
  return { name, startedAt: process.hrtime.bigint(), endedAt: null, latencies: [], errors: 0, lastError: null, worst: 0, worstEndedAt: null }
}

function summary (p) {
  const durationMs = Number((p.endedAt ?? process.hrtime.bigint()) - p.startedAt) / 1e6
  return {
    name: p.name,
    durationMs,
    commits: p.latencies.length,
    commitsPerSec: durationMs > 0 ? p.latencies.length / (durationMs / 1000) : null,
    p50: percentile(p.latencies, 50),
    p99: percentile(p.latencies, 99),
    max: max(p.latencies),
    // How long before the phase's end the worst commit ended (ms): whether it came with the backup's last moments.
    worstBeforeEndMs: p.worstEndedAt === null ? null : Number((p.endedAt ?? process.hrtime.bigint()) - p.worstEndedAt) / 1e6,
    errors: p.errors,
    lastError: p.lastError
  }
}

function noteCommit (started) {
  const ended = process.hrtime.bigint()
  const ms = Number(ended - started) / 1e6
  phase.latencies.push(ms)
  if (ms > phase.worst) {
    phase.worst = ms
    phase.worstEndedAt = ended
  }
}

process.on('message', (message) => {
  if (message.type === 'phase') {
    // Handled between two commits, so lastId is exactly the last pair committed before this point.
    phase.endedAt = process.hrtime.bigint()
    phase = newPhase(message.name)
    phases.push(phase)
    process.send({ type: 'phase', name: message.name, lastId })
  } else if (message.type === 'stop') {
    control.stopping = true
  }
})
process.on('disconnect', () => process.exit(0))

process.send({ type: 'ready' })
while (!control.stopping && Date.now() - bornAt < LIFETIME_MS) {
  const started = process.hrtime.bigint()
  try {
    lastId = commitPair(++txn)
    noteCommit(started)
  } catch (err) {
    // A commit that gave up (SQLITE_BUSY after busy_timeout) counts as an error, and its wait as its latency.
    phase.errors++
    phase.lastError = err.code ?? err.message
    noteCommit(started)
  }
  await sleep(1)
}
phase.endedAt = process.hrtime.bigint()
db.close()
process.send({ type: 'stats', phases: phases.map(summary) }, () => process.exit(0))
